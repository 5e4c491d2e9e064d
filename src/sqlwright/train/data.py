"""Training records from a built dataset, in trl's conversational prompt–completion form.

Every record becomes ``{"prompt": [system?, user], "completion": [assistant]}``: trl applies
the tokenizer's chat template and computes the loss on the completion (the assistant's
tokens) only. ``prompt-completion`` datasets become a user turn and an assistant turn, which
is exactly how ``sqlwright predict`` presents their prompts, so training and prediction see
the same text.
"""

from __future__ import annotations

import random
from pathlib import Path

from sqlwright.errors import UserError
from sqlwright.files import read_jsonl


def read_split(data: str | Path, split: str) -> list[dict]:
    path = Path(data) / f"{split}.jsonl"
    records = read_jsonl(path, what="dataset split")
    if not records:
        raise UserError(f"{path}: no examples")
    return records


def to_conversation(record: dict, where: str = "") -> dict:
    """``{"prompt": [...], "completion": [...]}`` for one dataset record."""
    if "messages" in record:
        msgs = record["messages"]
        if not msgs or msgs[-1].get("role") != "assistant":
            raise UserError(f"{where}: the last message must be the assistant's answer (the training target)")
        return {"prompt": msgs[:-1], "completion": [msgs[-1]]}
    if "prompt" in record and "completion" in record:
        return {"prompt": [{"role": "user", "content": record["prompt"]}],
                "completion": [{"role": "assistant", "content": record["completion"]}]}
    raise UserError(f"{where}: a record needs 'messages' or 'prompt' and 'completion'")


def sft_dataset(data: str | Path, split: str, tokenizer, max_length: int,
                max_examples: int | None = None, seed: int = 0):
    """(a ``datasets.Dataset`` of conversational prompt–completion pairs, examples dropped).

    Examples longer than ``max_length`` tokens (chat template included) are left out rather
    than truncated: a cut example would teach half a query, or none."""
    from datasets import Dataset

    records = read_split(data, split)
    path = Path(data) / f"{split}.jsonl"
    rows = [to_conversation(r, f"{path} record {i + 1}") for i, r in enumerate(records)]
    if max_examples and len(rows) > max_examples:
        rows = random.Random(seed).sample(rows, max_examples)
    kept = [r for r in rows if conversation_tokens(tokenizer, r) <= max_length]
    if not kept:
        raise UserError(f"{path}: every example is longer than max_length {max_length} tokens; raise max_length")
    return Dataset.from_list(kept), len(rows) - len(kept)


def conversation_tokens(tokenizer, row: dict) -> int:
    ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers >= 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return len(ids)


def dev_subset(data: str | Path, split: str, n: int, seed: int) -> list[dict]:
    """A fixed sample of ``n`` records of ``split`` (the same sample every time)."""
    records = read_split(data, split)
    if len(records) > n:
        records = random.Random(seed).sample(records, n)
    return records

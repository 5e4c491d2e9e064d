"""The ``sqlwright`` command line: one table of commands, each a config dataclass and the
function that runs it (``COMMANDS``).

A command's options are generated from its dataclass: each field's help, short flag and
whether it is a positional argument live in the field (``sqlwright.config.opt``); a nested
dataclass's fields become flags too (``--model`` is ``backend.model``, ``--lora-r`` is
``lora.r``). Every command also takes ``--config FILE.yaml`` (the dataclass's shape, nested)
and ``--set key=value`` (repeatable, dotted keys). Precedence, lowest first: the dataclass
defaults < the ``--config`` file < flags given on the command line < ``--set``. Every
problem (unknown key with "did you mean", wrong type, bad value, missing value) is reported
at once on one line, exit code 2; so is every usage error (unknown command or option).
``resolve(command, argv)`` gives the resolved config without running anything.

The table names dataclasses and run functions as ``"module:name"`` strings, imported when a
command runs or shows its own ``--help``: ``sqlwright --help`` imports no heavy module.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import typer
from typer.core import TyperCommand, TyperGroup

from sqlwright import __version__
from sqlwright.errors import UserError


@dataclass(frozen=True)
class Command:
    config: str  # "module:Dataclass": the command's options
    run: str  # "module:function": takes the config, returns what ``show`` prints
    help: str
    show: Callable[[Any, Any], None] | None = None  # (config, result) -> prints the summary line
    config_short: str | None = None  # a short flag for --config, where it does not clash


# -- what each command prints when it is done ----------------------------------------------------
def _show_eval(cfg: Any, run: Any) -> None:
    from sqlwright.eval.console import render_summary

    render_summary(run.summary, run.out_dir)
    if "embedding" in run.summary:  # secondary: printed after, never instead of, execution accuracy
        e = run.summary["embedding"]
        typer.echo(f"embedding distance (secondary, weaker than EX): mean {e['mean_distance']} over {e['count']} predictions "
                   f"(correct {e['mean_distance_correct']}, wrong {e['mean_distance_wrong']}; {e['model']})")  # fmt: skip


def _show_report(cfg: Any, r: Any) -> None:
    vs = f" vs {r.other_ex:.2f}% ({r.fixed} wrong → right, {r.broken} right → wrong)" if r.other_ex is not None else ""
    ex = "-" if r.ex is None else f"{r.ex:.2f}%"
    typer.echo(f"report written to {r.out} (EX {ex}{vs}{'; training curves from ' + str(r.training) if r.training else ''})")


def _show_build(cfg: Any, result: Any) -> None:
    from rich.console import Console

    s = result.stats
    Console().print(
        f"wrote {', '.join(f'{k}: {v}' for k, v in s['splits'].items())} examples to {result.out} "
        f"({sum(s['dropped'].values())} dropped: {s['dropped'] or 'none'}; schema cut in {s['schema_cut']} prompts; "
        f"median length {', '.join(str(v.get('p50')) for v in s['lengths'].values())} {s['length_unit']})"
    )


def _show_download(cfg: Any, folder: Path) -> None:
    typer.echo(f"{cfg.name} is ready: sqlwright eval PREDICTIONS --benchmark {folder}")


def _show_cot(cfg: Any, s: Any) -> None:
    typer.echo(f"kept {s.kept} of {s.total} examples in {Path(cfg.out)} (dropped: {s.dropped or 'none'}; {s.retried} needed retries, "
               f"{s.kept_after_retry} kept after one; teacher tokens: {s.teacher_prompt_tokens} prompt + "
               f"{s.teacher_completion_tokens} completion; {s.done_now} done now in {s.seconds} s, {s.already_done} before)")  # fmt: skip


def _show_synth(cfg: Any, s: Any) -> None:
    out = Path(cfg.out)
    made = "questions.jsonl" if s.mode == "database" else "triplets.jsonl"
    typer.echo(f"wrote {s.written} verified pairs to {out / made} ({s.triplets} triplets; {s.kept} kept of {s.candidates} "
               f"candidates from {s.requests} requests; rejected: {s.rejected or 'none'}; shapes: {s.by_shape or 'none'}; "
               f"teacher tokens: {s.teacher_prompt_tokens} prompt + {s.teacher_completion_tokens} completion)")  # fmt: skip
    if s.mode == "database":
        typer.echo(f"make a dataset: sqlwright data build sqlite {Path(cfg.databases)} --questions {out / 'questions.jsonl'}")


def _show_predict(cfg: Any, s: dict) -> None:
    out = Path(cfg.out)
    if "seconds" not in s:  # nothing was left to do (a fast run can take 0.0 s)
        typer.echo(f"all {s['total']} questions already predicted in {out}")
        return
    retried = f", {s['retried']} failed before and were retried" if s.get("retried") else ""
    typer.echo(f"{s['written']} predictions written to {out} ({s['already_done']} were already there{retried}, {s['errors']} failed) "
               f"in {s['seconds']} s, {s['tokens_per_second']} tokens/s. Score: sqlwright eval {out} --benchmark ...")  # fmt: skip
    if g := s.get("guided"):
        by = ", ".join(f"{k} {v}" for k, v in g["selected_by"].items())
        typer.echo(f"execution-guided: {g['selected']} selected{f' ({by})' if by else ''}, {g['refined']} refined in "
                   f"{g['rounds']} rounds; failed to run: {g['failed_to_run_before']} before, {g['failed_to_run_after']} after refinement; "
                   f"0 rows: {g['empty_before']} before, {g['empty_after']} after")  # fmt: skip


def _show_load(cfg: Any, r: Any) -> None:
    rows = sum(d["rows"] for d in r.loaded)
    skipped = sum(d["skipped"] for d in r.loaded)
    typer.echo(f"copied {len(r.loaded) - skipped} databases ({rows} rows; {skipped} already there) into {r.loaded[0]['target'] if r.loaded else cfg.url}; "
               f"report in {r.out}")  # fmt: skip
    if r.parity is not None:
        p = r.parity
        typer.echo(f"gold parity on {p['dialect']}: {p['same']} of {p['questions']} ({p['parity']}%) give the same result; "
                   f"the rest: {p['not_same'] or 'none'} (parity.jsonl). Score: sqlwright eval PREDICTIONS --questions "
                   f"{r.questions_file} --db-url '{p['url']}'")  # fmt: skip


def _show_sft(cfg: Any, r: Any) -> None:
    acc = f"; dev execution accuracy {r.dev_accuracy[-1][1]:.3f}" if r.dev_accuracy else ""
    tps = f", {r.tokens_per_second} tokens/s" if r.tokens_per_second else ""
    typer.echo(f"trained {r.global_step} steps (loss {r.train_loss:.4f}{tps}){acc}; model in {r.output_dir}. "
               f"Predict: sqlwright predict --model {r.output_dir} --data {cfg.data} --out preds.jsonl")


def _show_grpo(cfg: Any, r: Any) -> None:
    reward = f"; mean reward {r.reward[0][1]:.3f} at step {r.reward[0][0]} -> {r.reward[-1][1]:.3f} at step {r.reward[-1][0]}" if r.reward else ""
    acc = f"; dev execution accuracy {r.dev_accuracy[-1][1]:.3f}" if r.dev_accuracy else ""
    share = f" ({r.reward_seconds / r.train_seconds:.0%} of it in rewards)" if r.train_seconds else ""
    typer.echo(f"trained {r.global_step} GRPO steps in {r.train_seconds:.0f} s{share}{reward}{acc}; model in {r.output_dir}. "
               f"Predict: sqlwright predict --model {r.output_dir} --data {cfg.data} --out preds.jsonl")


def _show_merge(cfg: Any, path: Path) -> None:
    adapter = Path(cfg.adapter)
    note = "" if (path / "prompt.json").is_file() else f" (no prompt.json in {adapter}: pass --prompt when predicting)"
    typer.echo(f"merged {adapter} into {path}{note}; use it: sqlwright predict --backend hf --model {path}  or  vllm serve {path}")


# -- the table -----------------------------------------------------------------------------------
COMMANDS: dict[str, Command] = {
    "eval": Command("sqlwright.eval.evaluate:EvalConfig", "sqlwright.eval.evaluate:evaluate",
                    "Score predicted SQL by executing it and the gold SQL on the benchmark's databases.", _show_eval),
    "report": Command("sqlwright.report:ReportConfig", "sqlwright.report:write_report",
                      "Write one self-contained HTML report of an eval run (opens offline in any browser).", _show_report),
    "data build": Command("sqlwright.data.build:BuildConfig", "sqlwright.data.build:build_dataset",
                          "Turn benchmark questions or your own databases into a fine-tuning dataset.", _show_build),
    "data download": Command("sqlwright.data.download:DownloadConfig", "sqlwright.data.download:run_download",
                             "Fetch an official benchmark archive (resumable, verified) and unpack it.", _show_download),
    "data cot": Command("sqlwright.data.cot:CotConfig", "sqlwright.data.cot:run_cot",
                        "Verified chain-of-thought: a teacher explains each gold SQL; kept only when its final SQL gives the gold's result.",
                        _show_cot),
    "data synth": Command("sqlwright.data.synth:SynthConfig", "sqlwright.data.synth:run_synth",
                          "New (question, SQL) pairs for your own databases, kept only when they run and return rows; or self-contained triplets.",
                          _show_synth),
    "predict": Command("sqlwright.predict.run:PredictConfig", "sqlwright.predict.run:predict",
                       "Generate SQL for every question with a local model, vLLM or an OpenAI-compatible API.", _show_predict),
    "train sft": Command("sqlwright.train.config:TrainConfig", "sqlwright.train.sft:sft",
                         "Supervised fine-tuning (full, LoRA, QLoRA) on a dataset from `sqlwright data build`.", _show_sft,
                         config_short="-c"),
    "train grpo": Command("sqlwright.train.grpo_config:GRPOTrainConfig", "sqlwright.train.grpo:grpo",
                          "Reinforcement learning (GRPO) with an execution reward, from a base model, an SFT run or an adapter.",
                          _show_grpo, config_short="-c"),
    "merge": Command("sqlwright.train.merge:MergeConfig", "sqlwright.train.merge:merge",
                     "Merge a LoRA adapter into its base model: a plain model folder for vllm serve or predict.", _show_merge),
    "db load": Command("sqlwright.data.move:LoadConfig", "sqlwright.data.move:run_load",
                       "Copy SQLite benchmark databases into PostgreSQL, MySQL/MariaDB or DuckDB; --transpile-gold checks the golds there.",
                       _show_load),
    "quickstart": Command("sqlwright.quickstart.run:QuickstartConfig", "sqlwright.quickstart.run:quickstart",
                          "Fine-tune a small model on a slice of Spider shipped with sqlwright and see the before/after, in minutes."),
}  # fmt: skip
GROUPS = {"data": "Build fine-tuning datasets and fetch benchmarks.", "db": "Move benchmark databases to other engines.", "train": "Fine-tune models: supervised (sft) or reinforcement learning with an execution reward (grpo)."}
CONFIG_HELP = "YAML file of options, in the config's nested shape (e.g. a config.yaml a run wrote); flags given here win over it."
SET_HELP = "Override a key, after the file and the flags (repeat): --set key=value, --set backend.model=x, --set splits=[train,dev]."


def _load(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(import_module(module), name)


# -- options from a dataclass --------------------------------------------------------------------
@dataclass
class _Flag:
    path: str  # dotted field path in the config: backend.model
    param: str  # the Python parameter name
    decls: tuple[str, ...]  # ("--model", "-m"); () for an argument
    annotation: Any
    default: Any
    help: str
    metavar: str | None = None  # arguments

    @property
    def label(self) -> str:
        return f"argument {self.metavar}" if self.metavar else f"option {self.decls[0].split('/')[0]!r}"


def _field_default(f: dataclasses.Field, base: Any) -> Any:
    if base is not None:
        return getattr(base, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _cli_type(tp: Any) -> Any:
    """The type a flag parses for field type ``tp`` (None in it dropped), or None: YAML/--set only."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _cli_type(rest[0]) if len(rest) == 1 else None
    if origin is typing.Literal:
        return str if all(isinstance(a, str) for a in args) else None
    if origin is list and args and args[0] in (str, int, float):
        return list[args[0]]
    return tp if tp in (str, int, float, bool) else None


def flags_of(cls: type, prefix: str = "", flag_prefix: str = "", helps: dict | None = None, base: Any = None) -> list[_Flag]:
    """The command-line options of dataclass ``cls``, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    out: list[_Flag] = []
    for f in dataclasses.fields(cls):
        md = f.metadata
        if not f.init or md.get("cli") is False:
            continue
        default = _field_default(f, base)
        path, tp = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub = flag_prefix if md.get("flatten") else f"{flag_prefix}{f.name.replace('_', '-')}-"
            out += flags_of(tp, f"{path}.", sub, md.get("helps"), None if default is dataclasses.MISSING else default)
            continue
        kind = _cli_type(tp)
        if kind is None:
            continue
        required = default is dataclasses.MISSING
        text = (helps or {}).get(f.name) or md.get("help", "")
        text += " (required)" if required else ""
        param = "f_" + path.replace(".", "__")
        value = None if required else default
        if md.get("argument"):
            out.append(_Flag(path, param, (), Optional[kind], value, text, md.get("metavar") or f.name.upper()))  # noqa: UP045
            continue
        long = md.get("flag") or f"--{flag_prefix}{f.name.replace('_', '-')}"
        decls = (f"{long}/--no-{long[2:]}",) if kind is bool else (long,)
        out.append(_Flag(path, param, decls + ((md["short"],) if md.get("short") else ()), Optional[kind], value, text))  # noqa: UP045
    return out


@dataclass
class _Spec:
    cls: type
    flags: list[_Flag]
    command: TyperCommand


_SPECS: dict[str, _Spec] = {}


def _spec(key: str) -> _Spec:
    if key not in _SPECS:
        _SPECS[key] = _make_command(key)
    return _SPECS[key]


def _make_command(key: str) -> _Spec:
    entry = COMMANDS[key]
    cls = _load(entry.config)
    flags = flags_of(cls)
    names = ["--help", "--config", "--set", *([entry.config_short] if entry.config_short else [])]
    for fl in flags:
        for d in fl.decls:
            names += d.split("/")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuntimeError(f"sqlwright {key}: flags {', '.join(dupes)} come from two fields of {cls.__name__}")
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ctx", kw, annotation=typer.Context)]
    for fl in flags:
        show = fl.default is not None and fl.default != []
        info = (typer.Argument(help=fl.help, metavar=fl.metavar, show_default=show) if fl.metavar
                else typer.Option(*fl.decls, help=fl.help, show_default=show))  # fmt: skip
        params.append(inspect.Parameter(fl.param, kw, annotation=Annotated[fl.annotation, info], default=fl.default))
    config_decls = ("--config", entry.config_short) if entry.config_short else ("--config",)
    params.append(inspect.Parameter("config_file", kw, default=None, annotation=Annotated[
        Optional[str], typer.Option(*config_decls, help=CONFIG_HELP, metavar="FILE.yaml")]))  # noqa: UP045
    params.append(inspect.Parameter("set_values", kw, default=None, annotation=Annotated[
        Optional[list[str]], typer.Option("--set", help=SET_HELP, metavar="KEY=VALUE")]))  # noqa: UP045

    def callback(ctx: typer.Context, **_: Any) -> None:
        cfg = _resolve_ctx(key, ctx)  # every problem at once, before anything heavy is imported
        try:
            result = _load(entry.run)(cfg)
        except KeyboardInterrupt:
            raise _Interrupted from None
        if entry.show is not None:
            entry.show(cfg, result)

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command(key.split()[-1], help=entry.help)(callback)
    return _Spec(cls, flags, typer.main.get_command(one))


def _resolve_ctx(key: str, ctx: typer.Context) -> Any:
    from sqlwright.config import resolve_config

    spec = _spec(key)
    given: dict[str, Any] = {}
    for fl in spec.flags:
        source = ctx.get_parameter_source(fl.param)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):  # given on the command line
            value = ctx.params[fl.param]
            given[fl.path] = list(value) if isinstance(value, tuple) else value
    labels = {fl.path: fl.label for fl in spec.flags}
    return resolve_config(spec.cls, ctx.params.get("config_file"), given, list(ctx.params.get("set_values") or []), labels)


def resolve(command: str, argv: list[str] | None = None) -> Any:
    """The config ``sqlwright <command> <argv>`` would run with (checked), without running it."""
    if command not in COMMANDS:
        from sqlwright.errors import did_you_mean

        raise UserError(f"unknown command {command!r}{did_you_mean(command, COMMANDS)}")
    ctx = _spec(command).command.make_context(f"sqlwright {command}", list(argv or []))
    return _resolve_ctx(command, ctx)


# -- the app -------------------------------------------------------------------------------------
class _Stub(TyperCommand):
    """A table command in a group's --help listing: its name and help, nothing imported."""

    def __init__(self, key: str) -> None:
        super().__init__(key.split()[-1], help=COMMANDS[key].help)
        self.key = key


class _Group(TyperGroup):
    """A group whose table commands are built when first invoked (or asked for their --help)."""

    def __init__(self, *, name: str | None = None, commands: Any = None, **attrs: Any) -> None:
        super().__init__(name=name, commands=commands, **attrs)
        prefix = "" if name == app.info.name else f"{name} "
        ordered: dict[str, Any] = {}
        for key in COMMANDS:
            if key.startswith(prefix):
                word = key[len(prefix):].split()[0]
                if word not in ordered:
                    ordered[word] = self.commands[word] if word in self.commands else _Stub(key)
        self.commands = {**ordered, **self.commands}
        self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = self.commands.get(cmd_name)
        if isinstance(cmd, _Stub) and not self._listing:
            cmd = self.commands[cmd_name] = _spec(cmd.key).command
        return cmd

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


class _Interrupted(Exception):
    """Ctrl-C inside a command (typer would turn a KeyboardInterrupt into a silent exit 130)."""


app = typer.Typer(
    name="sqlwright",
    help="Build, fine-tune and evaluate text-to-SQL models you can trust.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Group,
)
for _name, _help in GROUPS.items():
    app.add_typer(typer.Typer(help=_help, no_args_is_help=True, cls=_Group), name=_name)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sqlwright {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,  # noqa: UP045
                                                    help="Show the version and exit.")] = None,  # fmt: skip
) -> None:
    """Build, fine-tune and evaluate text-to-SQL models you can trust."""


def _usage_error(e: Exception) -> int | None:
    """A usage error (unknown command or option, missing or bad value) as one line: exit 2.

    typer >= 0.20 raises the exceptions of the click it bundles (typer._click), not click's."""
    kinds: list[type] = [typer.TyperException]
    if "click" in sys.modules:
        kinds.append(sys.modules["click"].ClickException)
    if not isinstance(e, tuple(kinds)):
        return None
    if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: its help
        e.show()
        return 2
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(str(e.format_message()).split())
    print(f"error: {message}{hint}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user mistakes print one line and exit 2."""
    try:
        rv = app(args=argv, prog_name="sqlwright", standalone_mode=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except (KeyboardInterrupt, _Interrupted):
        rv = 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return 1
    except Exception as e:
        code = _usage_error(e)
        if code is None:
            raise
        return code
    if rv == 130:
        print("interrupted: finished work is saved; run the same command again to continue", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Typed configs from YAML files, command-line flags and ``--set key=value`` overrides.

Every command's options are one dataclass (see ``sqlwright.cli``: the command table). A field's
help, short flag and whether it is a positional argument live in the field itself
(``opt(default, help, short="-o")``); its checks live in the dataclass's ``check(self)``,
which returns every problem as a list of one-line messages.

``resolve_config(cls, path, flags, overrides)`` fills a (possibly nested) dataclass, later
sources winning: the dataclass defaults < the YAML file ``path`` (``--config``, nested
shape: ``backend: {model: x}``) < ``flags`` (the options given on the command line, by
dotted path) < ``overrides`` (``--set backend.model=x``; values are parsed as YAML, so
``true``, ``2e-4`` and ``[q_proj, v_proj]`` mean what they look like). Every problem — an
unknown key (with a "did you mean"), a value of the wrong type, a malformed override, a
missing required value, and what the dataclasses' ``check`` methods find — is collected and
reported at once in a single ``UserError``, before anything heavy happens.

``validate(cfg)`` runs the same checks for a Python caller that filled the dataclass itself
(every command's run function calls it); ``write_config`` writes the resolved config as YAML
that ``--config`` reads back, to repeat a run. ``load_config(cls, path, overrides)`` and
``parse_config`` are the file-and-overrides part alone (no ``check``).

This module imports no command-line library: the dataclasses stay plain.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

from sqlwright.errors import UserError, did_you_mean
from sqlwright.files import atomic_write_text

T = TypeVar("T")
MISSING = dataclasses.MISSING


def opt(default: Any = MISSING, help: str = "", *, short: str | None = None, flag: str | None = None,
        argument: bool = False, metavar: str | None = None, factory: Any = None, flatten: bool = False,
        cli: bool = True, helps: dict[str, str] | None = None) -> Any:
    """A dataclass field that is also a command-line option.

    ``help``: the option's help text. ``short``: a short flag (``-o``). ``flag``: the long flag
    when it is not ``--field-name`` (``--split`` for ``splits``). ``argument``: a positional
    argument instead (``metavar`` names it). ``factory``: a default factory (lists, nested
    dataclasses). For a nested dataclass: ``flatten`` gives its fields flags without a prefix
    (``--model`` for ``backend.model``; otherwise ``--lora-r`` for ``lora.r``) and ``helps``
    replaces some of their help texts. ``cli=False``: no flag (YAML and ``--set`` only).
    """
    md = {"help": help, "short": short, "flag": flag, "argument": argument, "metavar": metavar,
          "flatten": flatten, "cli": cli, "helps": helps or {}}  # fmt: skip
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=md)
    return dataclasses.field(default=default, metadata=md)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """An instance of dataclass ``cls`` from YAML ``path`` (optional) and ``key=value`` overrides."""
    obj, problems = parse_config(cls, path, overrides)
    if problems:
        raise UserError(_join(problems))
    return obj


def parse_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> tuple[T, list[str]]:
    """(the config with every bad key left at its default, the problems), for callers that
    check more before reporting everything at once."""
    obj, problems = _gather(cls, path, None, overrides, None, check=False)
    return (obj if obj is not None else cls()), problems


def resolve_config(cls: type[T], path: str | Path | None = None, flags: dict[str, Any] | None = None,
                   overrides: list[str] | None = None, labels: dict[str, str] | None = None) -> T:
    """Defaults < YAML ``path`` < ``flags`` ({dotted path: value}) < ``overrides`` (``key=value``),
    type-checked and ``check``-ed; every problem at once in one ``UserError``. ``labels`` names
    the flag of a dotted path ({"backend.model": "option '--model'"}) for the messages."""
    obj, problems = _gather(cls, path, flags, overrides, labels, check=True)
    if problems or obj is None:
        raise UserError(_join(problems or [f"{cls.__name__}: no config"]))
    return obj


def check_problems(obj: Any) -> list[str]:
    """What the ``check`` methods of ``obj`` and of its nested dataclasses find."""
    problems: list[str] = []
    if callable(getattr(obj, "check", None)):
        problems += obj.check()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            problems += check_problems(value)
    return problems


def validate(obj: Any) -> None:
    """Raise one ``UserError`` with every problem ``check_problems`` finds (for Python callers)."""
    problems = check_problems(obj)
    if problems:
        raise UserError(_join(problems))


def join_problems(problems: list[str]) -> str:
    return _join(problems)


def to_dict(obj: Any) -> dict:
    return _plain(dataclasses.asdict(obj))


def write_config(obj: Any, path: str | Path) -> Path:
    """``obj`` as YAML at ``path`` (atomically), in the shape ``--config`` reads back."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True))
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _gather(cls: type, path, flags: dict[str, Any] | None, overrides: list[str] | None,
            labels: dict[str, str] | None, check: bool) -> tuple[Any, list[str]]:
    data: dict = {}
    where = str(path) if path else "config"
    if path is not None:
        data = _read_yaml(Path(path))
    problems: list[str] = []
    origins: dict[str, str] = {}  # dotted path -> where its value came from, for the messages
    for key, value in (flags or {}).items():
        _set_path(data, key.split("."), value)
        origins[key] = (labels or {}).get(key, key)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected key=value, e.g. --set learning_rate=1e-4")
            continue
        _set_path(data, key.strip().split("."), _parse_value(raw))
        origins[key.strip()] = "--set"
    ctx = _Ctx(where, origins, labels or {}, problems)
    obj = _build(cls, data, "", ctx, None)
    if check and obj is not None:
        problems += check_problems(obj)
    return obj, problems


def _join(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in the config: " + "; ".join(problems)


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config must be a mapping of keys to values, not a {type(data).__name__}")
    return data


def _parse_value(raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set_path(data: dict, keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        if not isinstance(data.get(k), dict):
            data[k] = {}
        data = data[k]
    data[keys[-1]] = value


@dataclasses.dataclass
class _Ctx:
    where: str  # the YAML file, or "config"
    origins: dict[str, str]  # dotted path -> the flag or "--set" that gave it
    labels: dict[str, str]  # dotted path -> how the command line names it
    problems: list[str]

    def origin(self, name: str) -> str:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if found := self.origins.get(".".join(parts[:i])):
                return found
        return self.where


def _default(f: dataclasses.Field, base: Any) -> Any:
    if base is not None:
        return getattr(base, f.name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _build(cls: type, data: Any, prefix: str, ctx: _Ctx, base: Any):
    """An instance of ``cls`` from mapping ``data``, keys it lacks from ``base`` (a nested
    field's default) or the dataclass's defaults; None when a required value is missing or the
    dataclass refused the values. Bad keys are reported and left at their defaults."""
    here = prefix.rstrip(".")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        ctx.problems.append(f"{ctx.origin(here)}: {here or 'config'} must be a mapping, not {data!r}")
        data = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    bad: set[str] = set()
    failed = False
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            hint = did_you_mean(str(key), fields) or (f" (keys: {', '.join(fields)})" if len(fields) <= 10 else "")
            ctx.problems.append(f"{ctx.origin(name)}: unknown key {name!r}{hint}")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            default = _default(fields[key], base)
            sub = _build(tp, value, f"{name}.", ctx, None if default is MISSING else default)
            if sub is not None:
                kwargs[key] = sub
            else:
                bad.add(key)
                failed |= default is MISSING
            continue
        ok, converted = _check(tp, value)
        if not ok:
            origin = ctx.origin(name)
            what = origin if origin.startswith(("option ", "argument ")) else f"{origin}: {name}"  # a flag, or a key
            ctx.problems.append(f"{what} must be {_describe(tp)}, not {value!r}")
            bad.add(key)
            continue
        kwargs[key] = converted
    for key, f in fields.items():
        if key in kwargs:
            continue
        if base is not None:
            kwargs[key] = getattr(base, key)
        elif f.default is MISSING and f.default_factory is MISSING:
            if dataclasses.is_dataclass(hints[key]) and key not in bad:  # filled from its own keys
                sub = _build(hints[key], {}, f"{prefix}{key}.", ctx, None)
                if sub is not None:
                    kwargs[key] = sub
                    continue
            elif key not in bad:
                name = f"{prefix}{key}"
                label = ctx.labels.get(name)
                ctx.problems.append(f"missing {label}" if label else f"{ctx.where}: missing required key {name!r}")
            failed = True
    if failed:
        return None
    try:
        return cls(**kwargs)
    except UserError as e:  # the dataclass's own checks (__post_init__)
        ctx.problems.append(f"{ctx.where}: {e}" if ctx.where != "config" else str(e))
    except TypeError as e:
        ctx.problems.append(f"{ctx.where}: {e}")
    return None


def _check(tp: Any, value: Any) -> tuple[bool, Any]:
    """(value fits type ``tp``, the value converted: int -> float where a float is wanted)."""
    if tp is Any:
        return True, value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _check(arg, value)
            if ok:
                return True, v
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if tp is type(None):
        return value is None, value
    if origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            (arg,) = typing.get_args(tp)[:1] or (Any,)
            checked = [_check(arg, v) for v in value]
            return all(ok for ok, _ in checked), [v for _, v in checked]
        return False, value
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                pass
        return False, value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_describe(args[0])}" if args else "a list"
    if tp is type(None):
        return "null"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))

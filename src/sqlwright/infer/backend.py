"""One interface for every way of running a model, and the registry of backends.

A backend turns chat prompts into completions. ``generate`` takes all requests and yields
each result as soon as it is done (in any order), so the caller can append it to the
output file at once: an interrupted run loses only what was in flight.

Backends are looked up by name in ``BACKENDS`` and import their heavy library
(transformers, vllm, openai) only when constructed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from typing import Protocol

from sqlwright.config import opt
from sqlwright.errors import UserError, did_you_mean

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}]


@dataclass
class GenerationConfig:
    max_new_tokens: int = opt(512, "Most tokens to generate.")
    temperature: float = opt(0.0, "0 for greedy.")
    top_p: float = opt(1.0, "Nucleus sampling.")
    n: int = opt(1, "Samples per question.")
    seed: int = opt(0, "Sampling seed.")


@dataclass
class Request:
    id: str
    messages: Messages
    # constrained decoding: the llguidance (Lark) grammar the answer must follow
    # (``sqlwright.infer.constrain.grammar_for``); None: unconstrained
    grammar: str | None = None


@dataclass
class Completion:
    id: str
    texts: list[str]  # n samples
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0  # seconds for this request (or its batch share)
    error: str | None = None  # a permanent failure, recorded instead of crashing the run
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def generate(self, requests: list[Request], config: GenerationConfig) -> Iterator[Completion]: ...

    def close(self) -> None: ...


@dataclass
class BackendConfig:
    model: str = opt(help="Hub id, local folder, LoRA adapter folder, .gguf file, alias (smollm2-135m) or API model name.", short="-m")
    backend: str = opt("hf", "hf, vllm or openai.", short="-b")
    device: str | None = opt(None, "hf: cuda, mps or cpu (default: the best available).")
    dtype: str | None = opt(None, "hf/vllm: auto, bfloat16, float16, float32.")
    batch_size: int = opt(8, "hf: prompts per batch.")
    share_prefix: bool = opt(True, "hf: run a prompt prefix shared within a batch (system prompt + schema) once, from one KV cache.")
    tensor_parallel: int = opt(1, "vllm: GPUs per model.")
    lora: str | None = opt(None, "vllm: LoRA adapter folder.")
    base_url: str | None = opt(None, "openai: endpoint, e.g. http://localhost:8000/v1.")
    api_key_env: str = opt("OPENAI_API_KEY", "openai: environment variable with the key.")
    concurrency: int = opt(8, "openai: requests in flight.")
    max_retries: int = opt(6, "openai: retries of a failed request.")
    timeout: float = opt(120.0, "openai: seconds per request.")
    constrained: bool = opt(False, "vllm: start the engine with llguidance structured outputs (predict --constrain sets it).", cli=False)


# the help of a teacher's model and backend flags (data cot, data synth): the same BackendConfig
TEACHER_HELP = {"model": "Teacher: API model name, hub id, local folder or alias.",
                "backend": "Teacher backend: openai, vllm or hf."}  # fmt: skip

BACKENDS: dict[str, str] = {
    "hf": "sqlwright.infer.hf:HFBackend",
    "vllm": "sqlwright.infer.vllm_backend:VLLMBackend",
    "openai": "sqlwright.infer.openai_api:OpenAIBackend",
}


def load_backend(cfg: BackendConfig) -> Backend:
    if cfg.backend not in BACKENDS:
        raise UserError(f"unknown backend {cfg.backend!r}{did_you_mean(cfg.backend, BACKENDS)}; choose one of: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[cfg.backend].split(":")
    return getattr(import_module(module), cls)(cfg)


def chunked(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

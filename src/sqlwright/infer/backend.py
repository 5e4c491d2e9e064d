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

from sqlwright.errors import UserError, did_you_mean

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}]


@dataclass
class GenerationConfig:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt
    seed: int = 0


@dataclass
class Request:
    id: str
    messages: Messages


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
    model: str  # hub id, local directory, adapter directory, GGUF file, alias, or API model name
    backend: str = "hf"
    device: str | None = None  # hf: cuda / mps / cpu (default: best available)
    dtype: str | None = None  # hf/vllm: auto / bfloat16 / float16 / float32
    batch_size: int = 8  # hf: prompts per batch
    share_prefix: bool = True  # hf: run a prompt prefix shared within a batch once and reuse its KV cache
    tensor_parallel: int = 1  # vllm
    lora: str | None = None  # vllm: adapter directory
    base_url: str | None = None  # openai: endpoint
    api_key_env: str = "OPENAI_API_KEY"  # openai: environment variable holding the key
    concurrency: int = 8  # openai: requests in flight
    max_retries: int = 6  # openai
    timeout: float = 120.0  # openai: seconds per request


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

"""vLLM offline engine: tensor parallelism, LoRA adapters, ``n`` samples per prompt."""

from __future__ import annotations

import time
from collections.abc import Iterator

from sqlwright.errors import UserError
from sqlwright.infer.backend import BackendConfig, Completion, GenerationConfig, Request


class VLLMBackend:
    name = "vllm"

    def __init__(self, cfg: BackendConfig) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("the vllm backend needs vLLM (Linux + CUDA): pip install 'sqlwright[vllm]'") from None
        from sqlwright.infer.models import resolve_model

        resolved = resolve_model(cfg.model)
        self.lora = None
        kwargs = {"tensor_parallel_size": cfg.tensor_parallel, "dtype": cfg.dtype or "auto"}
        model = resolved.base or resolved.path_or_id
        if resolved.adapter or cfg.lora:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, resolved.adapter or cfg.lora)
            kwargs["enable_lora"] = True
        if resolved.gguf_file:
            model = f"{resolved.path_or_id}/{resolved.gguf_file}"
        if cfg.constrained:  # structured outputs through llguidance, which reads our grammars' Lark
            from sqlwright.infer.constrain import vllm_engine_kwargs

            kwargs.update(vllm_engine_kwargs())
        self.llm = LLM(model=model, **kwargs)

    def generate(self, requests: list[Request], config: GenerationConfig) -> Iterator[Completion]:
        from vllm import SamplingParams

        common = dict(n=config.n, temperature=config.temperature, top_p=config.top_p,
                      max_tokens=config.max_new_tokens, seed=config.seed)  # fmt: skip
        if any(r.grammar for r in requests):  # one SamplingParams per request: each its database's grammar
            from sqlwright.infer.constrain import vllm_sampling_kwargs

            params = [SamplingParams(**common, **vllm_sampling_kwargs(r.grammar)) for r in requests]
        else:
            params = SamplingParams(**common)
        t0 = time.monotonic()
        outputs = self.llm.chat([r.messages for r in requests], params, lora_request=self.lora, use_tqdm=False)
        share = (time.monotonic() - t0) / max(1, len(requests))
        for req, out in zip(requests, outputs, strict=True):
            yield Completion(
                req.id, [o.text for o in out.outputs], prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=sum(len(o.token_ids) for o in out.outputs), latency=share,
            )  # fmt: skip

    def close(self) -> None:
        del self.llm

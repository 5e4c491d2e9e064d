"""The transformers backend: batched local generation on CUDA, MPS or CPU.

Prompts are rendered with the tokenizer's chat template, sorted longest first (so a batch
holds prompts of similar length and little padding), left-padded and generated in batches of
``BackendConfig.batch_size``; each request's ``Completion`` is yielded as soon as its batch is
done. ``batch_size=1`` (or ``generate_one_at_a_time``) runs the requests one by one in order.

Shared prefixes (``BackendConfig.share_prefix``, on by default). Text-to-SQL prompts on one
database share the system prompt and the schema; only the question at the end differs. Prompts
that share a long token prefix with another prompt (at least ``min_shared_prefix`` tokens and
``min_shared_fraction`` of the longer prompt) are sorted together (token order, so one
database's questions land in the same batches); the others follow, longest first, as above.
In a batch, the rows are split into segments of a common prefix (``_prefix_plan`` picks the
split that processes the fewest prompt tokens); each segment's prefix runs once, at batch 1,
and its KV cache is copied to the segment's rows. The batch then goes to ``generate`` as
``[prefix | pad ... | suffix]`` rows with the cache of the prefix part: the attention mask is 0
on the pads, so position ids (the mask's running count) are exactly those of the unpadded
prompt, and only the suffixes are run in the batched prompt pass. Rows that share nothing
with the others keep the tail that fits the batch's suffix width there and run the rest of
their prompt as a prefix of their own. Batches where sharing does not pay (or models whose
cache is not a plain ``DynamicCache``, e.g. sliding-window layers) use ordinary left padding.

The KV cache (``grow_cache_in_place``, for models whose cache is all plain ``DynamicLayer``s)
keeps spare room for ``max_new_tokens`` and writes each step's keys and values in place;
transformers' ``DynamicLayer`` concatenates, copying the whole cache at every step.

Greedy decoding when ``temperature == 0`` (``n`` > 1 then repeats the single greedy text),
otherwise sampling with ``temperature``/``top_p`` (no top-k) and ``n`` samples per prompt,
seeded with ``torch.manual_seed(seed)`` before each batch. Generation stops at the model's own
end-of-turn tokens (the tokenizer's eos plus ``<|im_end|>``, ``<|eot_id|>``, ``<|end|>``,
``<end_of_turn>`` where the vocabulary has them).

Models come from ``resolve_model``: hub ids, local directories, GGUF files (dequantized by
transformers; needs the ``gguf`` package), aliases, and LoRA adapters (applied with peft, not
merged). ``load_tokenizer`` and ``load_causal_lm`` are the loading steps on their own, shared
with ``sqlwright merge``.
"""

from __future__ import annotations

import functools
import gc
import sys
import time
from collections.abc import Iterator
from itertools import pairwise

from sqlwright.errors import UserError, first_line
from sqlwright.infer.backend import BackendConfig, Completion, GenerationConfig, Request, chunked
from sqlwright.infer.models import ResolvedModel, resolve_model

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
DTYPES = {
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "float32": "float32", "fp32": "float32", "float": "float32",
}


class HFBackend:
    name = "hf"
    share_prefix = True  # reuse a prefix's KV cache within a batch (BackendConfig.share_prefix)
    min_shared_prefix = 32  # tokens: a shorter common prefix is not worth a separate pass
    min_shared_fraction = 0.3  # of the longest prompt sharing the prefix
    grow_cache_in_place = True  # KV cache with spare room, written in place (see _growing_layer_class)
    _cache_unshareable = False  # set when a prefix pass returned a cache that cannot be shared

    def __init__(self, cfg: BackendConfig):
        try:
            import torch
            import transformers  # noqa: F401  (checked here, used by load_tokenizer / load_causal_lm)
        except ImportError:
            raise UserError("the hf backend needs transformers and torch: pip install 'sqlwright[train]'") from None
        self.torch = torch
        self.cfg = cfg
        self.batch_size = max(1, int(cfg.batch_size or 1))
        self.share_prefix = bool(cfg.share_prefix)
        self.resolved: ResolvedModel = resolve_model(cfg.model)
        self.device = self._pick_device(cfg.device)
        self.dtype = self._pick_dtype(cfg.dtype)
        self.tokenizer = self._load_tokenizer()
        self.model = self._load_model()
        self.eos_ids = self._end_of_turn_ids()
        self._warned_template = False

    @classmethod
    def from_loaded(cls, model, tokenizer, batch_size: int = 8, name: str = "model") -> HFBackend:
        """A backend over a model already in memory (e.g. one being trained), on its own device."""
        import torch

        self = cls.__new__(cls)
        self.torch, self.cfg = torch, BackendConfig(model=name, backend="hf", batch_size=batch_size)
        self.batch_size = max(1, int(batch_size))
        self.resolved = ResolvedModel(name)
        self.model, self.tokenizer = model, tokenizer
        self.device = str(next(model.parameters()).device)
        self.dtype = next(model.parameters()).dtype
        self.eos_ids = self._end_of_turn_ids()
        self._warned_template = False
        return self

    # ------------------------------------------------------------------ loading

    def _pick_device(self, wanted: str | None) -> str:
        torch = self.torch
        if wanted and wanted != "auto":
            kind = wanted.split(":")[0]
            if kind == "cuda" and not torch.cuda.is_available():
                raise UserError(f"--device {wanted}: CUDA is not available on this machine; use cpu")
            if kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
                raise UserError(f"--device {wanted}: MPS is not available on this machine; use cpu")
            if kind not in ("cuda", "mps", "cpu"):
                raise UserError(f"--device {wanted}: unknown device; choose cuda, mps or cpu")
            return wanted
        if torch.cuda.is_available():
            return "cuda"
        if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def _pick_dtype(self, wanted: str | None):
        torch = self.torch
        if wanted and wanted != "auto":
            if wanted.lower() not in DTYPES:
                raise UserError(f"--dtype {wanted}: unknown dtype; choose auto, bfloat16, float16 or float32")
            return getattr(torch, DTYPES[wanted.lower()])
        if self.device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def _load_tokenizer(self):
        tok = load_tokenizer(self.resolved, self.cfg.model, padding_side="left")
        tok.padding_side = "left"
        if tok.pad_token is None:
            if tok.eos_token is not None:
                tok.pad_token = tok.eos_token
            elif tok.unk_token is not None:
                tok.pad_token = tok.unk_token
        return tok

    def _load_model(self):
        model = load_causal_lm(self.resolved, self.dtype, self.cfg.model, vocab_size=len(self.tokenizer))
        model.to(device=self.device, dtype=self.dtype)
        model.eval()
        return model

    def _end_of_turn_ids(self) -> list[int]:
        tok = self.tokenizer
        ids: list[int] = []
        if tok.eos_token_id is not None:
            ids.append(int(tok.eos_token_id))
        vocab = tok.get_vocab()
        ids += [int(vocab[t]) for t in END_OF_TURN_TOKENS if t in vocab]
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            ids += [int(i) for i in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])]
        return list(dict.fromkeys(ids))

    # --------------------------------------------------------------- generation

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for ``messages``: the chat template with the assistant turn opened."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if not self._warned_template:
            print(f"sqlwright: {self.cfg.model} has no chat template; joining the messages as plain text",
                  file=sys.stderr)
            self._warned_template = True
        return "".join(m["content"].rstrip() + "\n\n" for m in messages)

    def encode(self, request: Request) -> list[int]:
        return self.tokenizer(self.render(request.messages), add_special_tokens=False)["input_ids"]

    def generate(self, requests: list[Request], config: GenerationConfig) -> Iterator[Completion]:
        yield from self._generate(requests, config, self.batch_size, sort=True)

    def generate_one_at_a_time(self, requests: list[Request], config: GenerationConfig) -> Iterator[Completion]:
        """One request per ``model.generate`` call, in the given order (the unbatched baseline)."""
        yield from self._generate(requests, config, 1, sort=False)

    def _generate(self, requests, config: GenerationConfig, batch_size: int, sort: bool) -> Iterator[Completion]:
        encoded: list[tuple[Request, list[int]]] = []
        for req in requests:
            try:
                encoded.append((req, self.encode(req)))
            except Exception as e:  # a malformed conversation fails that request only
                yield Completion(req.id, [], error=f"cannot render the prompt: {first_line(e)}")
        if sort and self.share_prefix and batch_size > 1:
            order = _shared_prefix_order([ids for _, ids in encoded], self._worth_sharing)
            encoded = [encoded[i] for i in order]
        elif sort:
            encoded.sort(key=lambda item: len(item[1]), reverse=True)
        for batch in chunked(encoded, batch_size):
            yield from self._run_batch(batch, config)

    def _worth_sharing(self, prefix_len: int, longest: int) -> bool:
        return prefix_len >= max(1, self.min_shared_prefix) and prefix_len >= self.min_shared_fraction * longest

    def _run_batch(self, batch: list[tuple[Request, list[int]]], config: GenerationConfig) -> Iterator[Completion]:
        torch = self.torch
        try:
            results = self._generate_batch([ids for _, ids in batch], config, [req.grammar for req, _ in batch])
        except torch.cuda.OutOfMemoryError:
            gc.collect()
            torch.cuda.empty_cache()
            if len(batch) > 1:  # halve the batch and try again
                half = len(batch) // 2
                yield from self._run_batch(batch[:half], config)
                yield from self._run_batch(batch[half:], config)
                return
            req, _ = batch[0]
            yield Completion(req.id, [], error="CUDA out of memory for a single prompt; lower max_new_tokens")
            return
        for (req, ids), (texts, n_tokens, latency, shared, accepted) in zip(batch, results, strict=True):
            extra = {"batch_size": len(batch), "shared_prefix_tokens": shared}
            if accepted is not None:  # constrained: did each sample end where its grammar accepts?
                extra["constrained"] = accepted
            yield Completion(req.id, texts, prompt_tokens=len(ids), completion_tokens=n_tokens, latency=latency, extra=extra)

    def _generate_batch(self, prompts: list[list[int]], config: GenerationConfig,
                        grammars: list[str | None] | None = None) -> list[tuple[list[str], int, float, int, list[bool] | None]]:
        """``(texts, completion tokens, latency, shared prefix tokens, grammar accepted per sample)``
        per prompt; ``grammars[i]`` constrains prompt ``i`` (all or none of a batch)."""
        torch = self.torch
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self.eos_ids[0] if self.eos_ids else 0)
        sample = config.temperature > 0
        n = max(1, int(config.n))
        gen_kwargs = dict(max_new_tokens=int(config.max_new_tokens), eos_token_id=self.eos_ids or None,
                          pad_token_id=pad_id)
        if sample:
            gen_kwargs.update(do_sample=True, temperature=float(config.temperature), top_p=float(config.top_p),
                              top_k=0, num_return_sequences=n)
        else:
            gen_kwargs.update(do_sample=False, num_beams=1)

        start = time.perf_counter()
        with torch.inference_mode():
            shared = self._shared_prefix_inputs(prompts, pad_id, n if sample else 1) if self.share_prefix else None
            if shared is None:
                input_ids, attention = _left_padded(torch, prompts, pad_id)
                prefix_lens, kv = [0] * len(prompts), None
            else:  # rows already repeated n times, in the order num_return_sequences gives
                input_ids, attention, kv, prefix_lens = shared
                gen_kwargs.pop("num_return_sequences", None)
            cache = self._make_cache(kv, input_ids.shape[1] + int(config.max_new_tokens))
            cache_kw = {} if cache is None else {"past_key_values": cache}
            gen_config = _generation_config(self.model, gen_kwargs)
            if sample:
                torch.manual_seed(int(config.seed))
            constraint = self._constraint(grammars)
            if constraint is not None:
                from transformers import LogitsProcessorList

                cache_kw["logits_processor"] = LogitsProcessorList([constraint])
            hook = None
            if constraint is not None:  # the next masks are computed while each decoding step's forward runs
                target = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
                hook = target.register_forward_pre_hook(_prefetch_hook(constraint), with_kwargs=True)
            try:
                out = self.model.generate(input_ids=input_ids.to(self.device),
                                          attention_mask=attention.to(self.device),
                                          generation_config=gen_config, **cache_kw)
            finally:
                if hook is not None:
                    hook.remove()
        width = input_ids.shape[1]
        new = out[:, width:].tolist()
        latency = (time.perf_counter() - start) / len(prompts)

        eos = set(self.eos_ids)
        per_prompt = n if sample else 1
        accepted = constraint.texts_accepted() if constraint is not None else None
        results = []
        for i in range(len(prompts)):
            texts, n_tokens = [], 0
            for seq in new[i * per_prompt:(i + 1) * per_prompt]:
                stop = next((j for j, t in enumerate(seq) if t in eos), None)
                kept = seq if stop is None else seq[:stop]
                n_tokens += len(seq) if stop is None else stop + 1
                texts.append(tok.decode(kept, skip_special_tokens=True))
            ok = accepted[i * per_prompt:(i + 1) * per_prompt] if accepted is not None else None
            if not sample and n > 1:  # greedy: every sample is the same text
                texts, n_tokens, ok = texts * n, n_tokens * n, ok * n if ok is not None else None
            results.append((texts, n_tokens, latency, prefix_lens[i], ok))
        return results

    def _constraint(self, grammars: list[str | None] | None):
        """The grammar logits processor for one ``generate`` call, or None (unconstrained)."""
        if not grammars or not any(grammars):
            return None
        if not all(grammars):
            raise ValueError("a batch mixes constrained and unconstrained requests; constrain all or none")
        from sqlwright.infer.constrain import logits_processor

        return logits_processor(self.tokenizer, grammars, self.eos_ids)

    def _shared_prefix_inputs(self, prompts: list[list[int]], pad_id: int, repeat: int):
        """``(input_ids, attention_mask, [(keys, values) per layer], prefix lengths)`` for generating
        ``prompts`` on top of the KV cache of their shared prefixes, each row repeated ``repeat`` times; ``None``
        when sharing does not pay for this batch or the model's cache cannot be shared.

        Row ``i`` is ``prompt[:P_i] + pads + prompt[P_i:]`` with ``P_i`` = its prefix length
        (0: none); the cache holds each prefix's keys and values at positions ``[0, P_i)``
        (zeros, masked, up to the longest prefix). Each distinct prefix runs once, at batch 1."""
        if self._cache_unshareable:
            return None
        plan = _prefix_plan(prompts, self._worth_sharing)
        if plan is None:
            return None
        torch = self.torch
        rows = len(prompts)
        cached = max(plan)
        width = cached + max(len(p) - k for p, k in zip(prompts, plan, strict=True))
        input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        segments: dict[tuple[int, ...], list[int]] = {}
        for i, (p, k) in enumerate(zip(prompts, plan, strict=True)):
            input_ids[i, :k] = torch.tensor(p[:k], dtype=torch.long)
            attention[i, :k] = 1
            input_ids[i, width - (len(p) - k):] = torch.tensor(p[k:], dtype=torch.long)
            attention[i, width - (len(p) - k):] = 1
            if k:
                segments.setdefault(tuple(p[:k]), []).append(i)

        layers = None
        for prefix, members in segments.items():
            out = self.model(input_ids=torch.tensor([prefix], dtype=torch.long, device=self.device),
                             use_cache=True, **self._prefix_forward_kwargs)
            kv = _dynamic_cache_tensors(out.past_key_values, len(prefix))
            if kv is None:
                print("sqlwright: prompt prefixes cannot be shared with this model's KV cache (it needs a plain "
                      "DynamicCache, transformers >= 4.56); generating without prefix sharing", file=sys.stderr)
                self._cache_unshareable = True
                return None
            if layers is None:
                layers = [(k.new_zeros((rows, k.shape[1], cached, k.shape[3])),
                           v.new_zeros((rows, v.shape[1], cached, v.shape[3]))) for k, v in kv]
            index = torch.tensor(members, dtype=torch.long, device=kv[0][0].device)
            for (keys, values), (k, v) in zip(layers, kv, strict=True):
                keys[index, :, :len(prefix)] = k
                values[index, :, :len(prefix)] = v
        if repeat > 1:
            layers = [(k.repeat_interleave(repeat, dim=0), v.repeat_interleave(repeat, dim=0)) for k, v in layers]
            input_ids = input_ids.repeat_interleave(repeat, dim=0)
            attention = attention.repeat_interleave(repeat, dim=0)
        return input_ids, attention, layers, plan

    def _make_cache(self, kv, capacity: int):
        """The cache to generate with: holding ``kv`` (``[(keys, values)]`` per layer, or ``None``:
        empty) in layers that write new positions in place (``_growing_layer``) for models whose
        cache is all plain ``DynamicLayer``s; else a ``DynamicCache`` of ``kv``, or ``None`` (generate
        makes its own)."""
        from transformers import DynamicCache

        if not (self.grow_cache_in_place and self._plain_layers and (kv is None or len(kv) == self._plain_layers)):
            return None if kv is None else DynamicCache(ddp_cache_data=kv)
        cache = DynamicCache()
        cache.layers = [_growing_layer(capacity) for _ in range(self._plain_layers)]
        for layer, (k, v) in zip(cache.layers, kv or [], strict=False):
            layer.update(k, v)
        return cache

    @functools.cached_property
    def _plain_layers(self) -> int:
        return _plain_dynamic_layers(self.model)

    @functools.cached_property
    def _prefix_forward_kwargs(self) -> dict:
        """Keep only the last position's logits in a prefix pass where the model allows it."""
        import inspect

        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        try:
            keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            keep = False
        return {"logits_to_keep": 1} if keep else {}

    def close(self) -> None:
        torch = self.torch
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _prefetch_hook(constraint):
    """A forward pre-hook that hands a decoding step's new tokens to the grammar processor."""

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else (args[0] if args else None)
        if ids is not None and ids.dim() == 2 and ids.shape[1] == 1:
            constraint.prefetch(ids[:, 0].tolist())

    return hook


def load_tokenizer(resolved: ResolvedModel, label: str, **kwargs):
    """The tokenizer for ``resolved``: the adapter's own when one was saved with it (training
    may have added tokens or a chat template), else the base model's. ``label`` names the
    model in error messages; ``kwargs`` go to ``AutoTokenizer.from_pretrained``."""
    import transformers

    source, extra = resolved.path_or_id, {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
    if resolved.adapter and _has_tokenizer(resolved.adapter):
        source, extra = resolved.adapter, {}
    try:
        return transformers.AutoTokenizer.from_pretrained(source, **extra, **kwargs)
    except (OSError, ValueError) as e:
        raise UserError(f"{label}: cannot load the tokenizer ({first_line(e)})") from None


def load_causal_lm(resolved: ResolvedModel, dtype, label: str, vocab_size: int | None = None):
    """The causal LM for ``resolved`` on the CPU, in ``dtype`` (a torch dtype, or ``"auto"`` for
    the checkpoint's own), with its LoRA adapter applied by peft and not merged (a ``PeftModel``).

    ``vocab_size``: the tokenizer's length; the base embeddings are grown to it before the
    adapter is loaded, for adapters trained with added tokens."""
    import transformers
    from packaging.version import Version  # a dependency of transformers

    kwargs = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
    # transformers >= 4.56 calls it ``dtype``; older versions ``torch_dtype`` (a 4.56 dev build counts as 4.56)
    dtype_kw = "dtype" if Version(transformers.__version__).release >= (4, 56) else "torch_dtype"
    kwargs[dtype_kw] = dtype
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(resolved.path_or_id, **kwargs)
    except (OSError, ValueError) as e:
        raise UserError(f"{label}: cannot load the model ({first_line(e)})") from None
    if resolved.gguf_file:
        forget_gguf_quantization(model)
    if not resolved.adapter:
        return model
    try:
        from peft import PeftModel
    except ImportError:
        raise UserError(f"{label} is a LoRA adapter: loading it needs peft: pip install 'sqlwright[train]'") from None
    if vocab_size and vocab_size > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(vocab_size)
    try:
        return PeftModel.from_pretrained(model, resolved.adapter, is_trainable=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{resolved.adapter}: cannot load the adapter on {resolved.base} ({first_line(e)})") from None


def forget_gguf_quantization(model) -> None:
    """A GGUF checkpoint is dequantized on load (plain float tensors), but transformers still
    marks the model as GGUF-quantized and the Trainer then refuses to train it
    and ``save_pretrained`` to save it (after ``sqlwright merge``). Drop the marker."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _left_padded(torch, prompts: list[list[int]], pad_id: int):
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p):] = 1
    return input_ids, attention


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _shared_prefix_order(prompts: list[list[int]], worth) -> list[int]:
    """The order to batch ``prompts`` in: those sharing a prefix worth sharing (``worth(length,
    longest prompt)``) with a neighbour, in token order (so prompts of one database are
    adjacent), then the rest longest first (the order without sharing)."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    grouped = [False] * len(prompts)
    for a, b in pairwise(order):
        pa, pb = prompts[a], prompts[b]
        common = min(_common_prefix_len(pa, pb), len(pa) - 1, len(pb) - 1)
        if worth(common, max(len(pa), len(pb))):
            grouped[a] = grouped[b] = True
    rest = sorted((i for i in range(len(prompts)) if not grouped[i]), key=lambda i: len(prompts[i]), reverse=True)
    return [i for i in order if grouped[i]] + rest


def _prefix_plan(prompts: list[list[int]], worth, overhead: int = 8) -> list[int] | None:
    """How many leading tokens of each prompt to run as a shared prefix, or ``None`` when plain
    left padding processes no more tokens.

    In token order, the common prefix of a run of prompts is the smallest common prefix of
    neighbours, so each threshold on neighbours' common prefixes gives one split into
    segments. A segment of two or more prompts whose common prefix is ``worth`` sharing runs
    it once; every other prompt keeps the tail that fits the batch's suffix width and runs the
    rest as a prefix of its own. Cost: prefix tokens (+ ``overhead`` per prefix pass) + rows x
    suffix width; the cheapest split wins if it beats rows x longest prompt."""
    n = len(prompts)
    if n < 2 or any(not p for p in prompts):
        return None
    lens = [len(p) for p in prompts]
    order = sorted(range(n), key=lambda i: prompts[i])
    adjacent = [_common_prefix_len(prompts[a], prompts[b]) for a, b in pairwise(order)]
    best, best_cost = None, n * max(lens)
    for threshold in sorted(set(adjacent)):
        segments, members, common = [], [order[0]], None
        for k, nxt in enumerate(order[1:]):
            if adjacent[k] >= threshold:
                members.append(nxt)
                common = adjacent[k] if common is None else min(common, adjacent[k])
            else:
                segments.append((members, common))
                members, common = [nxt], None
        segments.append((members, common))
        plan, cost, loose = [0] * n, 0, []
        for members, common in segments:
            if common is not None:
                length = min(common, min(lens[i] for i in members) - 1)
                if worth(length, max(lens[i] for i in members)):
                    for i in members:
                        plan[i] = length
                    cost += length + overhead
                    continue
            loose += members
        if len(loose) == n:
            continue
        width = max(lens[i] - plan[i] for i in range(n) if plan[i])
        for i in loose:
            if lens[i] > width:
                plan[i] = lens[i] - width
                cost += plan[i] + overhead
        cost += n * width
        if cost < best_cost:
            best, best_cost = plan, cost
    return best


def _plain_dynamic_layers(model) -> int:
    """The number of layers of ``model``'s default cache when they are all plain ``DynamicLayer``s
    (no sliding window, linear attention or shared layers), else 0."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        layers = DynamicCache(config=model.config).layers
    except Exception:  # older transformers, or a config the cache cannot read
        return 0
    return len(layers) if layers and all(type(layer) is DynamicLayer for layer in layers) else 0


@functools.cache
def _growing_layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A ``DynamicLayer`` that keeps spare room after its positions and writes new ones in place.

        ``DynamicLayer`` concatenates the whole cache with each new token: a copy of every layer's
        keys and values per decoding step (measured: 4% of the end-to-end time of SmolLM2-135M at
        batch 16 on two CPU cores, bench/RESULTS.md). ``keys`` and ``values`` here are views of the first ``length`` positions of buffers of ``capacity``."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self._buffers = None
            self._view = None

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:  # (lazy_initialization's signature differs between versions)
                self.dtype, self.device = key_states.dtype, key_states.device
                self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
                self.is_initialized = True
            old = self.keys.shape[-2] if self.keys is not None and self.keys.dim() == 4 else 0
            new = old + key_states.shape[-2]
            stale = self._buffers is None or self.keys is not self._view  # crop, batch_select_indices, ...
            if stale or new > self._buffers[0].shape[-2] or self._buffers[0].shape[0] != key_states.shape[0]:
                room = max(new, self.capacity, 2 * old)
                keys = key_states.new_empty((*key_states.shape[:-2], room, key_states.shape[-1]))
                values = value_states.new_empty((*value_states.shape[:-2], room, value_states.shape[-1]))
                if old:
                    keys[..., :old, :] = self.keys
                    values[..., :old, :] = self.values
                self._buffers = (keys, values)
            keys, values = self._buffers
            keys[..., old:new, :] = key_states
            values[..., old:new, :] = value_states
            self.keys, self.values = keys[..., :new, :], values[..., :new, :]
            self._view = self.keys
            return self.keys, self.values

    return GrowingLayer


def _growing_layer(capacity: int):
    return _growing_layer_class()(capacity)


def _dynamic_cache_tensors(cache, length: int):
    """Each layer's ``(keys, values)`` of a plain ``DynamicCache`` holding ``length`` positions,
    or ``None`` for any other cache (sliding windows, linear attention, older transformers)."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:
        return None
    layers = getattr(cache, "layers", None)
    if type(cache) is not DynamicCache or not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    kv = [(layer.keys, layer.values) for layer in layers]
    if any(k is None or v is None or k.dim() != 4 or k.shape[2] != length or v.shape[2] != length for k, v in kv):
        return None
    return kv


def _generation_config(model, kwargs: dict):
    """A fresh GenerationConfig holding only ``kwargs`` (the model's sampling defaults, such as a
    checkpoint's temperature or top_k, must not leak into greedy or plain top-p decoding)."""
    from transformers import GenerationConfig as HFGenerationConfig

    base = getattr(model, "generation_config", None)
    extra = {}
    if base is not None and getattr(base, "bos_token_id", None) is not None:
        extra["bos_token_id"] = base.bos_token_id
    return HFGenerationConfig(**extra, **kwargs)


def _has_tokenizer(folder: str) -> bool:
    from pathlib import Path

    return any((Path(folder) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))

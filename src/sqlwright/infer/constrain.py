"""Schema-constrained decoding: only SQL that parses and names the database's tables and columns.

``sqlwright.prompts.grammar.sql_grammar`` writes the grammar (text only); this module compiles
it with llguidance (the ``[guided]`` extra; the library vLLM's ``guidance`` backend uses) and
hands it to a backend:

* ``grammar_for(schema, constrain, answer)``: the grammar text for ``--constrain schema``
  (the database's names), ``grammar`` (syntax only) or ``none`` (``None``).
* ``logits_processor(tokenizer, grammars)``: a transformers ``LogitsProcessor`` for the hf
  backend. Batched: one llguidance matcher per row, each row with its own request's grammar
  (``grammars[i]`` for request ``i``; with ``num_return_sequences=n`` the ``n`` rows of a
  request share it). Masks are computed in parallel (``LLExecutor``) and applied as ``-inf``;
  a row may end (end-of-sequence token) only where its grammar accepts. Pass it in
  ``model.generate(logits_processor=LogitsProcessorList([proc]))``: transformers runs custom
  processors before temperature/top-p, so sampling only ever sees grammar-allowed tokens.
  One processor serves one ``generate`` call, greedy or sampled (not beam search: beams
  reorder rows between steps).
* ``vllm_sampling_kwargs(grammar)`` / ``vllm_engine_kwargs()`` / ``openai_extra_body(grammar)``:
  the arguments for vLLM's structured outputs (``SamplingParams(structured_outputs=
  StructuredOutputsParams(grammar=...))`` on vLLM >= 0.11, ``guided_decoding=
  GuidedDecodingParams(grammar=...)`` before), with the ``guidance`` backend (the grammar is
  llguidance Lark; vLLM's ``auto`` choice would try xgrammar first and fall back).
* ``check_sql(grammar, sql)``: does the grammar accept this text (no model, byte by byte)?
  ``None`` when it does, else the reason. Used by tests and benchmarks.

Answer shapes (``answer=``): ``"sql"`` the SQL alone, ending at the end-of-sequence token
(what the cookbook prompts make the model answer; the default); ``"fenced"`` one ```sql
block; ``"reasoning"`` free text up to a ```sql line, then the constrained SQL and the
closing fence (reasoning prompts: only the final SQL block is constrained). ``extract_sql``
reads all three.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

from sqlwright.errors import UserError
from sqlwright.prompts.grammar import ANSWER_FORMATS, sql_grammar
from sqlwright.types import Schema

__all__ = [
    "CONSTRAIN_MODES",
    "check_sql",
    "grammar_for",
    "llguidance_tokenizer",
    "logits_processor",
    "openai_extra_body",
    "vllm_engine_kwargs",
    "vllm_sampling_kwargs",
]

log = logging.getLogger(__name__)

CONSTRAIN_MODES = ("none", "grammar", "schema")
INSTALL_HINT = "pip install 'sqlwright[guided]'"


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise UserError(f"constrained decoding (--constrain) needs llguidance: {INSTALL_HINT}") from None
    return llguidance


def grammar_for(schema: Schema | None, constrain: str = "schema", answer: str = "sql") -> str | None:
    """The grammar for one request: ``constrain`` is ``schema``, ``grammar`` or ``none``."""
    if constrain not in CONSTRAIN_MODES:
        raise UserError(f"--constrain {constrain!r}: use one of {', '.join(CONSTRAIN_MODES)}")
    if answer not in ANSWER_FORMATS:
        raise UserError(f"unknown answer format {answer!r}: use one of {', '.join(ANSWER_FORMATS)}")
    if constrain == "none":
        return None
    if constrain == "schema":
        if schema is None:
            raise UserError("--constrain schema needs each question's database schema; use --constrain grammar for syntax only")
        return sql_grammar(schema, answer=answer)
    return sql_grammar(None, answer=answer)


# -- checking text without a model ------------------------------------------------------
class _ByteTokens:
    """A tokenizer of single bytes (plus an end token) for checking raw text."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
    special_token_ids = [256]

    def __call__(self, s):
        return list(s) if isinstance(s, bytes) else list(s.encode())


@functools.lru_cache(maxsize=1)
def _byte_tokenizer():
    lg = _llguidance()
    return lg.LLTokenizer(lg.TokenizerWrapper(_ByteTokens()))


@functools.lru_cache(maxsize=64)
def _byte_matcher(grammar: str):
    lg = _llguidance()
    m = lg.LLMatcher(_byte_tokenizer(), grammar, log_level=0)
    if m.is_error():
        raise ValueError(f"invalid grammar: {m.get_error()}")
    return m


def check_sql(grammar: str, text: str) -> str | None:
    """``None`` if ``grammar`` accepts the whole of ``text``, else why not (one line)."""
    m = _byte_matcher(grammar).deep_copy()
    data = list(text.encode())
    n = m.try_consume_tokens(data)
    if n < len(data):
        m.consume_token(data[n])
        err = m.get_error().split("\n", 1)[0].removeprefix("Parser Error: ")
        before = bytes(data[max(0, n - 50) : n]).decode(errors="replace")
        return f"rejected at byte {n} ({err}): ...{before}<HERE>{bytes(data[n : n + 20]).decode(errors='replace')}"
    if not m.is_accepting():
        return "incomplete: the text ends before the query does"
    return None


# -- transformers -----------------------------------------------------------------------
_TOKENIZERS: dict[int, tuple[object, object]] = {}
_LOCK = threading.Lock()


def llguidance_tokenizer(tokenizer, eos_token_ids: Sequence[int] | None = None):
    """The llguidance view of a (fast) transformers tokenizer, cached per tokenizer object
    (building it walks the whole vocabulary: about a second for 50k tokens)."""
    lg = _llguidance()
    eos = sorted(set(eos_token_ids or [tokenizer.eos_token_id]))
    key = (id(tokenizer), tuple(eos))
    with _LOCK:
        hit = _TOKENIZERS.get(key)
        if hit is not None and hit[0] is tokenizer:
            return hit[1]
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("constrained decoding needs a fast (Rust) tokenizer; this model's tokenizer is not one")
    import llguidance.hf

    llt = llguidance.hf.from_tokenizer(tokenizer, eos_token=eos if len(eos) > 1 else eos[0])
    del lg
    with _LOCK:
        _TOKENIZERS[key] = (tokenizer, llt)
    return llt


_MATCHERS: OrderedDict[tuple[int, str], tuple[object, object]] = OrderedDict()


def _compiled(llt, grammar: str):
    """A fresh matcher of ``grammar`` for ``llt``, compiled once (about 0.1 s for a database's
    grammar) and kept for the 64 most recent (tokenizer, grammar) pairs."""
    key = (id(llt), grammar)
    with _LOCK:
        hit = _MATCHERS.get(key)
        if hit is not None and hit[0] is llt:
            _MATCHERS.move_to_end(key)
            return hit[1]
    m = _llguidance().LLMatcher(llt, grammar, log_level=0)
    if m.is_error():
        raise ValueError(f"invalid grammar: {m.get_error()}")
    with _LOCK:
        _MATCHERS[key] = (llt, m)
        while len(_MATCHERS) > 64:
            _MATCHERS.popitem(last=False)
    return m


@functools.lru_cache(maxsize=1)
def _executor():
    """One thread pool for computing a batch's masks in parallel, shared by all processors."""
    return _llguidance().LLExecutor()


@functools.lru_cache(maxsize=1)
def _prefetcher():
    """One thread that computes the next step's masks while the model runs (``prefetch``)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlwright-grammar")


@functools.lru_cache(maxsize=1)
def _processor_class():
    import torch
    from transformers import LogitsProcessor

    lg = _llguidance()

    class GrammarLogitsProcessor(LogitsProcessor):
        """Masks each row's logits to the tokens its grammar allows next (see the module doc)."""

        def __init__(self, llt, grammars: Sequence[str], eos_token_ids: Sequence[int]):
            self.llt = llt
            self.grammars = list(grammars)
            self.eos = list(eos_token_ids)
            self._compiled = {g: _compiled(llt, g) for g in dict.fromkeys(self.grammars)}
            self.matchers: list | None = None
            self.failed: set[int] = set()  # rows whose matcher rejected a token (should not happen)
            self._executor = _executor()
            self._pending = None  # (tokens, future of their masks), started by prefetch()

        def _start(self, rows: int) -> None:
            if rows % len(self.grammars):
                raise ValueError(f"{rows} rows for {len(self.grammars)} grammars: rows must be a multiple")
            n = rows // len(self.grammars)
            self.matchers = [self._compiled[self.grammars[i // n]].deep_copy() for i in range(rows)]

        def _advance(self, last: list[int] | None):
            """Feed each row its last token (None: the first step), then the next masks."""
            if last is not None:
                for i, m in enumerate(self.matchers):
                    if m.is_stopped() or i in self.failed:
                        continue  # finished (transformers feeds padding from here on)
                    if not m.consume_token(last[i]):
                        self.failed.add(i)
                        log.warning("constrained decoding: row %d left its grammar (%s)", i, m.get_error()[:200])
            words = (self.llt.vocab_size + 31) // 32
            bitmask = torch.empty((len(self.matchers), words), dtype=torch.int32)
            lg.torch.fill_next_token_bitmask_par(self._executor, [(m, i) for i, m in enumerate(self.matchers)], bitmask)
            return bitmask

        def prefetch(self, last: list[int]) -> None:
            """Start the next step's masks now, from the tokens just chosen: called as the model's
            forward pass for them begins, so the masks are computed while the forward runs."""
            if self.matchers is None or len(last) != len(self.matchers) or self._pending is not None:
                return
            self._pending = (last, _prefetcher().submit(self._advance, last))

        def __call__(self, input_ids, scores):
            rows, width = scores.shape
            if self.matchers is None:
                self._start(rows)
                bitmask = self._advance(None)
            else:
                last = input_ids[:, -1].tolist()
                pending, self._pending = self._pending, None
                if pending is not None:
                    bitmask = pending[1].result()
                    if pending[0] != last:  # cannot happen with transformers' generate: the forward saw these tokens
                        raise RuntimeError("constrained decoding: the prefetched tokens are not the ones generated")
                else:
                    bitmask = self._advance(last)
            # unpack the bits with a byte lookup; token t is bit t % 8 of byte t // 8 of the
            # little-endian int32 words
            blocked = _BLOCKED_BITS[bitmask.view(torch.uint8).long()].reshape(rows, -1)
            blocked = blocked[:, :width] if blocked.shape[1] >= width else torch.nn.functional.pad(blocked, (0, width - blocked.shape[1]), value=True)
            dead = blocked.all(dim=1)
            for i in self.failed:
                dead[i] = True
            if bool(dead.any()):  # end such a row rather than sample from nothing
                idx = dead.nonzero().flatten()
                blocked[idx] = True
                blocked[idx.unsqueeze(1), torch.tensor(self.eos)] = False
            return scores.masked_fill(blocked.to(scores.device), float("-inf"))

        def texts_accepted(self) -> list[bool]:
            """Per row: does its grammar accept what was generated (ended where a query is complete)?"""
            return [m.is_accepting() and i not in self.failed for i, m in enumerate(self.matchers or [])]

    import llguidance.torch  # noqa: F401  (fill_next_token_bitmask_par)

    global _BLOCKED_BITS
    # row b: for each of the 8 bits of byte value b, True where the bit is 0 (the token is not allowed)
    _BLOCKED_BITS = torch.tensor([[not (b >> k) & 1 for k in range(8)] for b in range(256)], dtype=torch.bool)
    return GrammarLogitsProcessor


_BLOCKED_BITS = None  # set with the processor class (needs torch)


def logits_processor(tokenizer, grammars: Sequence[str], eos_token_ids: Sequence[int] | None = None):
    """A transformers ``LogitsProcessor`` constraining row ``i`` of each request to ``grammars[i]``.

    ``eos_token_ids``: the tokens that end a sequence (the hf backend's end-of-turn ids);
    default the tokenizer's eos. They are allowed exactly where the grammar accepts.
    """
    if not grammars:
        raise ValueError("logits_processor needs at least one grammar")
    eos = list(eos_token_ids or [tokenizer.eos_token_id])
    llt = llguidance_tokenizer(tokenizer, eos)
    return _processor_class()(llt, grammars, eos)


# -- vLLM -------------------------------------------------------------------------------
def vllm_sampling_kwargs(grammar: str | None) -> dict:
    """Keyword arguments for ``vllm.SamplingParams`` that constrain generation to ``grammar``.

    vLLM >= 0.11: ``structured_outputs=StructuredOutputsParams(grammar=...)``; older vLLM:
    ``guided_decoding=GuidedDecodingParams(grammar=...)``. ``None``: no constraint (``{}``).
    """
    if grammar is None:
        return {}
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        try:
            from vllm.sampling_params import GuidedDecodingParams
        except ImportError as e:
            raise UserError(f"this vLLM has no structured outputs (StructuredOutputsParams / GuidedDecodingParams): {e}") from None
        return {"guided_decoding": GuidedDecodingParams(grammar=grammar)}
    return {"structured_outputs": StructuredOutputsParams(grammar=grammar)}


def vllm_engine_kwargs() -> dict:
    """Keyword arguments for ``vllm.LLM(...)`` that select the llguidance (``guidance``) backend,
    which reads the grammar's Lark dialect (``&``/``~`` terminals, lazy lexemes)."""
    try:
        from vllm.config import StructuredOutputsConfig  # noqa: F401  (vLLM >= 0.11)
    except ImportError:
        return {"guided_decoding_backend": "guidance"}
    return {"structured_outputs_config": {"backend": "guidance"}}


def openai_extra_body(grammar: str | None, legacy: bool = False) -> dict:
    """``extra_body`` for a vLLM OpenAI-compatible server (start it with
    ``--structured-outputs-config.backend guidance``, or ``--guided-decoding-backend guidance``
    before vLLM 0.11). ``legacy``: the pre-0.12 ``guided_grammar`` field."""
    if grammar is None:
        return {}
    return {"guided_grammar": grammar} if legacy else {"structured_outputs": {"grammar": grammar}}

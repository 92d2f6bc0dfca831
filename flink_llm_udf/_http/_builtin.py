"""The built-in client behind the ``HTTPSession`` interface: ``_pool`` over ``_connection``.

Why it exists: aiohttp's client request path costs several times the CPU per request of this
one (``docs/performance.md``). It does exactly the engine's exchange (a ``Content-Length`` POST,
the reply read whole, one request at a time per kept-alive connection) on well-kept parts:
llhttp (``httptools``) parses, ``aiohappyeyeballs`` connects, ``yarl`` reads the URL. It knows
nothing of proxies or netrc: ``open_session`` uses aiohttp when the environment asks for those.
"""

from __future__ import annotations

import ssl

from ._connection import ResponseHeaders
from ._limits import DEFAULT_MAX_REPLY_BYTES, MAX_HEAD_BYTES
from ._pool import IDLE_REUSE_S, ConnectionPool
from ._reply import HTTPReply, HTTPSession, reply_of
from ._request import Headers


class BuiltinSession(HTTPSession):
    """The built-in HTTP/1.1 client: a ``ConnectionPool`` whose replies are ``HTTPReply``s."""

    def __init__(
        self,
        url: str,
        headers: Headers,
        *,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pool = ConnectionPool(
            url, headers, reply=reply_of, max_reply_bytes=max_reply_bytes, ssl_context=ssl_context
        )
        # The pool's own coroutine serves ``post``: no coroutine layer of ours per request.
        self.post = self._pool.post  # type: ignore[method-assign,assignment]

    @property
    def closed(self) -> bool:
        return self._pool.closed

    async def post(self, data: bytes, timeout_s: float) -> HTTPReply:  # replaced per instance
        return await self._pool.post(data, timeout_s)

    async def aclose(self) -> None:
        self._pool.close()

    def abandon(self) -> None:
        self._pool.close()


__all__ = ["IDLE_REUSE_S", "MAX_HEAD_BYTES", "BuiltinSession", "ConnectionPool", "ResponseHeaders"]

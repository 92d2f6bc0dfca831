"""The built-in HTTP/1.1 client behind the ``HTTPSession`` interface."""

from __future__ import annotations

from ._http11 import ConnectionPool
from ._reply import HTTPReply, HTTPSession, reply_of


class BuiltinSession(HTTPSession):
    """The lean HTTP/1.1 client of :mod:`._http11`."""

    def __init__(self, url: str, headers: tuple[tuple[str, str], ...]) -> None:
        self._pool = ConnectionPool(url, headers, reply=reply_of)
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

"""The built-in client's keep-alive connections to one endpoint, and its one exchange: ``post``.

New connections are opened with ``aiohappyeyeballs`` (RFC 8305, as aiohttp does): when a name
resolves to several addresses, the next one is tried after ``HAPPY_EYEBALLS_DELAY_S`` while the
first still hangs, families interleaved, so an address that silently drops SYNs (broken IPv6
egress, a dead node in round-robin DNS) costs that delay, not the request. The whole exchange
(resolve, connect, TLS, request, reply) fits in the request's timeout. Every failure leaves
``post`` as an ``EndpointError`` (``_failures``); cancellation passes through.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiohappyeyeballs

from .._errors import EndpointConnectionError
from ._connection import Connection, Exchange, ResponseHeaders
from ._failures import Failures, secrets_of
from ._limits import DEFAULT_MAX_REPLY_BYTES
from ._request import Headers, checked_headers, request_head
from ._target import Endpoint
from ._tls import client_context

#: A kept-alive connection idle longer than this is closed instead of reused: servers drop idle
#: connections after their own timeout (uvicorn, behind vLLM, after 5 s), and a request written
#: into a connection the server is closing fails. A ``Keep-Alive: timeout=N`` reply shortens it.
IDLE_REUSE_S = 4.0
#: How long a connection attempt may hang before the next address is tried (RFC 8305's value).
HAPPY_EYEBALLS_DELAY_S = 0.25

AddrInfo = tuple[Any, ...]


class ConnectionPool:
    """Keep-alive connections to one origin; ``post`` sends one request and reads its reply.

    The caller bounds concurrency (the engine's request slots), so the pool never waits for a free
    connection: it reuses an idle one or opens another.
    """

    def __init__(
        self,
        url: str,
        headers: Headers,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reply: Callable[[int, ResponseHeaders, bytes], Any] | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        """``reply(status, headers, body)`` makes what ``post`` returns (default: that tuple)."""
        endpoint = Endpoint.parse(url)
        sent = checked_headers(headers)
        self.endpoint = endpoint
        self.host, self.port, self.tls = endpoint.host, endpoint.port, endpoint.tls
        self._ssl = (ssl_context or client_context()) if endpoint.tls else None
        self._head = request_head(endpoint, sent)
        self._failures = Failures(endpoint.where, secrets_of(sent))
        self._max_reply_bytes = max_reply_bytes
        self._numeric = _numeric_addresses(endpoint.host, endpoint.port)
        self._idle: list[Connection] = []
        self._busy: set[Connection] = set()
        self._idle_reuse_s = IDLE_REUSE_S
        self._reply = reply
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the first post
        self.closed = False

    async def post(self, body: bytes, timeout_s: float) -> Any:
        """POST ``body``; ``(status, headers, body)`` (or what ``reply`` makes) within ``timeout_s`` s."""
        if self.closed:
            raise EndpointConnectionError("connection error: the HTTP client is closed", retryable=False)
        loop = self._loop or self._bind_loop()
        now = loop.time()
        deadline = now + timeout_s
        connection = self._checkout(now)
        try:
            if connection is None:
                connection = await self._connect(deadline, timeout_s)
            self._busy.add(connection)
            waiter = connection.send(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                status, headers, raw, keep_alive = await waiter
            finally:
                timer.cancel()
        except BaseException as exc:
            if connection is not None:
                self._busy.discard(connection)
                connection.abort()
            failure = self._failures.translated(exc, timeout_s)
        else:
            self._busy.discard(connection)
            if keep_alive and not connection.closed and not self.closed:
                reuse_s = _idle_reuse(connection.keep_alive_field, self._idle_reuse_s)
                connection.idle_deadline = loop.time() + reuse_s
                self._idle.append(connection)
            else:
                connection.close()
            return (status, headers, raw) if self._reply is None else self._reply(status, headers, raw)
        raise failure from None  # outside the handler: the error keeps no link to the original

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, kept: a pool's connections live on one loop (and asking for the
        running loop costs a ``getpid()`` system call each time)."""
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _checkout(self, now: float) -> Connection | None:
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely to be stale
            if not connection.closed and now < connection.idle_deadline:
                return connection
            connection.close()
        return None

    async def _connect(self, deadline: float, timeout_s: float) -> Connection:
        """A new connection, resolved, connected and (for https) TLS-verified by ``deadline``."""
        loop = self._loop or self._bind_loop()
        try:
            return await asyncio.wait_for(self._open(loop), max(0.0, deadline - loop.time()))
        except BaseException as exc:
            failure = self._failures.translated(exc, timeout_s, connecting=True)
        raise failure from None

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Connection:
        addresses = self._numeric or await loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        sock = await aiohappyeyeballs.start_connection(
            addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1, loop=loop
        )
        # The loop owns the socket from here, closing it if the handshake fails.
        _, connection = await loop.create_connection(
            self._new_connection, sock=sock, ssl=self._ssl, server_hostname=self.host if self.tls else None
        )
        return connection

    def _new_connection(self) -> Connection:
        return Connection(self._max_reply_bytes)

    def close(self) -> None:
        """Close every connection (in-flight requests fail); usable after the loop has stopped."""
        self.closed = True
        for connection in self._idle + list(self._busy):
            try:
                connection.abort()
            except RuntimeError:
                pass  # its loop is closed: the socket goes with the process
        self._idle.clear()
        self._busy.clear()


def _numeric_addresses(host: str, port: int) -> list[AddrInfo] | None:
    """The address of an IP literal, without a resolver round trip; None for a name."""
    try:
        return socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST
        )
    except (OSError, UnicodeError):
        return None


def _idle_reuse(keep_alive: bytes | None, default: float) -> float:
    """How long an idle connection may be reused, shortened by a ``Keep-Alive: timeout=N`` value."""
    if keep_alive:
        for part in keep_alive.decode("latin-1").split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "timeout":
                try:
                    return max(0.0, min(default, float(value) - 1.0))
                except ValueError:
                    break
    return default


def _expire(waiter: asyncio.Future[Exchange]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())

"""A lean HTTP/1.1 client for the engine's one request shape: POST a JSON body, read the reply.

Why it exists: aiohttp's client request path was most of a row's CPU cost; this client does
the same exchange in a fraction of it (``docs/performance.md``). It speaks exactly what the
engine needs: keep-alive connections (one request at a time on each), ``Content-Length``,
chunked and read-until-close bodies, interim 1xx replies, ``Connection: close``, gzip/deflate
bodies, and TLS through asyncio. It knows nothing of proxies or netrc: ``open_session`` uses
aiohttp when the environment asks for those.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from .._errors import EndpointConnectionError, EndpointTimeoutError, InvalidOptionError

#: A kept-alive connection idle longer than this is closed instead of reused: servers drop idle
#: connections after their own timeout (uvicorn, behind vLLM, after 5 s), and a request written
#: into a connection the server is closing fails. A ``Keep-Alive: timeout=N`` reply shortens it.
IDLE_REUSE_S = 4.0
MAX_HEAD_BYTES = 64 * 1024
_DIGITS = "0123456789"
#: The reply headers that frame it; the rest are parsed only on demand (``ResponseHeaders``).
_FRAMING_NAMES = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"content-encoding", b"keep-alive")
)
_LONGEST_FRAMING_NAME = max(map(len, _FRAMING_NAMES))
_HEX_DIGITS = "0123456789abcdefABCDEF"


class ResponseHeaders(Mapping[str, str]):
    """Reply headers, case-insensitive; repeated headers are joined with ``", "``.

    Parsed from the raw head on first use: the engine reads no header of a 2xx reply, and real
    endpoints send dozens (rate-limit counters, tracing ids), so most replies never pay for it.
    """

    __slots__ = ("_fields", "_raw")

    def __init__(self, raw: bytes = b"") -> None:
        self._raw = raw
        self._fields: dict[str, str] | None = None

    def _parsed(self) -> dict[str, str]:
        if self._fields is None:
            fields: dict[str, str] = {}
            for line in self._raw.split(b"\r\n") if self._raw else ():
                name, _, value = line.partition(b":")
                key, text = name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")
                fields[key] = f"{fields[key]}, {text}" if key in fields else text
            self._fields = fields
        return self._fields

    def get(self, name: str, default: Any = None) -> Any:
        return self._parsed().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._parsed()[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._parsed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._parsed()!r})"


class _ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 reply we can read."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one request at a time; parses the reply as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self.idle_deadline = 0.0
        self._waiter: asyncio.Future | None = None
        self._buffer = bytearray()
        self._status = 0
        self._headers: ResponseHeaders | None = None
        self._framing = ""  # "length", "chunked" or "close"
        self._encoding: str | None = None  # Content-Encoding, lower case
        self.keep_alive_field: str | None = None  # the last reply's Keep-Alive header
        self._length = 0
        self._chunks: list[bytes] = []
        self._chunk_pos = 0
        self._keep_alive = True

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()  # once: each call costs a getpid() system call

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self._fail(_ProtocolError("the server sent bytes no request asked for"))
            return
        self._buffer += data
        try:
            self._advance()
        except _ProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        if (
            self._waiter is not None
            and not self._waiter.done()
            and self._framing == "close"
            and self._headers is not None
        ):
            self._finish_until_close()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._framing == "close" and self._headers is not None and exc is None:
                self._finish_until_close()
            else:
                reason = exc or ConnectionResetError("the connection closed before the reply was complete")
                self._waiter.set_exception(reason)

    def _finish_until_close(self) -> None:
        try:
            self._finish(self._decoded(bytes(self._buffer)), keep_alive=False)
        except _ProtocolError as exc:
            self._fail(exc)

    # --- one exchange ----------------------------------------------------------------------
    def send(self, request: bytes) -> asyncio.Future:
        """Write a whole request; the future gets ``(status, headers, body, keep_alive)``."""
        self._waiter = waiter = self._loop.create_future()  # type: ignore[union-attr]
        self._buffer.clear()
        self._status, self._headers, self._framing, self._keep_alive = 0, None, "", True
        self._chunks, self._chunk_pos = [], 0
        self.transport.write(request)  # type: ignore[union-attr]
        return waiter

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.abort()

    def _finish(self, body: bytes, *, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._headers, body, keep_alive and self._keep_alive))

    def _advance(self) -> None:
        while self._headers is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise _ProtocolError(f"reply head longer than {MAX_HEAD_BYTES} bytes")
                return
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            if not self._parse_head(head):
                continue  # an interim 1xx reply: the real one follows
        if self._framing == "length":
            if len(self._buffer) >= self._length:
                # Bytes past Content-Length belong to no request: read the reply, drop the connection.
                extra = len(self._buffer) > self._length
                self._finish(self._decoded(bytes(self._buffer[: self._length])), keep_alive=not extra)
        elif self._framing == "chunked":
            self._advance_chunks()

    def _parse_head(self, head: bytes) -> bool:
        """Read a status line and headers; False for an interim (1xx) reply."""
        status_line, _, rest = head.partition(b"\r\n")
        version, _, reason = status_line.partition(b" ")
        code = reason[:3]
        if (
            not version.startswith(b"HTTP/1.")
            or len(code) != 3
            or not code.isdigit()
            or reason[3:4] not in (b"", b" ")
        ):
            raise _ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(code)
        if 100 <= status < 200:
            return False
        self._status, self._headers = status, ResponseHeaders(rest)
        framing = _framing_fields(rest)
        self._encoding = framing.get(b"content-encoding")
        self.keep_alive_field = framing.get(b"keep-alive")
        connection = framing.get(b"connection", "")
        self._keep_alive = "close" not in connection and (
            version != b"HTTP/1.0" or "keep-alive" in connection
        )
        length = framing.get(b"content-length")
        if "chunked" in framing.get(b"transfer-encoding", ""):
            self._framing = "chunked"
        elif length is not None:
            try:
                self._length = _number(length, 10)
            except ValueError:
                raise _ProtocolError(f"bad Content-Length {length!r}") from None
            self._framing = "length"
        elif status in (204, 304):
            self._framing, self._length = "length", 0
        else:
            self._framing, self._keep_alive = "close", False
        return True

    def _advance_chunks(self) -> None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n", self._chunk_pos)
            if line_end < 0:
                return
            size_text = bytes(buffer[self._chunk_pos : line_end]).split(b";", 1)[0].strip()
            try:
                size = _number(size_text.decode("latin-1"), 16)
            except ValueError:
                raise _ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                if buffer[line_end : line_end + 4] == b"\r\n\r\n":
                    end = line_end + 4
                else:
                    trailer_end = buffer.find(b"\r\n\r\n", line_end)
                    if trailer_end < 0:
                        return  # trailers not complete yet
                    end = trailer_end + 4
                # Bytes past the last chunk belong to no request: drop the connection after it.
                self._finish(self._decoded(b"".join(self._chunks)), keep_alive=len(buffer) == end)
                return
            data_start, data_end = line_end + 2, line_end + 2 + size
            if len(buffer) < data_end + 2:
                return
            if buffer[data_end : data_end + 2] != b"\r\n":
                raise _ProtocolError("chunk data not followed by CRLF")
            self._chunks.append(bytes(buffer[data_start:data_end]))
            self._chunk_pos = data_end + 2

    def _decoded(self, body: bytes) -> bytes:
        encoding = self._encoding
        if encoding is None or encoding in ("identity", ""):
            return body
        if encoding in ("gzip", "x-gzip", "deflate"):
            try:
                wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
                try:
                    return zlib.decompress(body, wbits)
                except zlib.error:
                    if encoding != "deflate":
                        raise
                    return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
            except zlib.error as exc:
                raise _ProtocolError(f"cannot decode the {encoding} body: {exc}") from None
        raise _ProtocolError(f"unsupported Content-Encoding {encoding!r}")


class ConnectionPool:
    """Keep-alive connections to one origin; ``post`` sends one request and reads its reply.

    The caller bounds concurrency (the engine's request slots), so the pool never waits for a free
    connection: it reuses an idle one or opens another.
    """

    def __init__(
        self,
        url: str,
        headers: tuple[tuple[str, str], ...],
        *,
        ssl_context: ssl.SSLContext | None = None,
        reply: Callable[[int, ResponseHeaders, bytes], Any] | None = None,
    ) -> None:
        """``reply(status, headers, body)`` makes what ``post`` returns (default: that tuple)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidOptionError(
                f"endpoint URL must be http(s)://host/...: {parts.scheme}://{parts.hostname}"
            )
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._head = _request_head(parts, self.host, self.port, self.tls, headers)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
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
                connection = await self._connect(timeout_s)
            self._busy.add(connection)
            waiter = connection.send(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
            timer = loop.call_at(deadline, _expire, waiter, timeout_s)
            try:
                status, headers, raw, keep_alive = await waiter
            finally:
                timer.cancel()
        except BaseException as exc:
            if connection is not None:
                self._busy.discard(connection)
                connection.abort()
            raise _translated(exc, timeout_s) from None
        self._busy.discard(connection)
        if keep_alive and not connection.closed and not self.closed:
            connection.idle_deadline = loop.time() + _idle_reuse(
                connection.keep_alive_field, self._idle_reuse_s
            )
            self._idle.append(connection)
        else:
            connection.close()
        return (status, headers, raw) if self._reply is None else self._reply(status, headers, raw)

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, kept: a pool's connections live on one loop (and asking for the
        running loop costs a ``getpid()`` system call each time)."""
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _checkout(self, now: float) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely to be stale
            if not connection.closed and now < connection.idle_deadline:
                return connection
            connection.close()
        return None

    async def _connect(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self.tls else None,
                ),
                timeout_s,
            )
        except (asyncio.TimeoutError, TimeoutError):
            raise EndpointTimeoutError(
                f"could not connect to {self.host}:{self.port} within {timeout_s:g} s", retryable=True
            ) from None
        except OSError as exc:
            raise EndpointConnectionError(
                f"connection error: cannot connect to {self.host}:{self.port}: {exc.strerror or exc}",
                retryable=True,
            ) from None
        return connection

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


def _request_head(parts: Any, host: str, port: int, tls: bool, headers: tuple[tuple[str, str], ...]) -> bytes:
    """Everything of a request before the Content-Length value, encoded once per pool."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        authority = f"{authority}:{port}"
    lines = [f"POST {target} HTTP/1.1", f"Host: {authority}"]
    names = {name.lower() for name, _ in headers}
    if "accept" not in names:
        lines.append("Accept: application/json")
    if "accept-encoding" not in names:
        lines.append("Accept-Encoding: gzip, deflate")
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("host", "content-length", "transfer-encoding", "connection"):
            continue  # the client owns the framing
        if not name or any(c in name for c in ":\r\n\0 ") or any(c in value for c in "\r\n\0"):
            raise InvalidOptionError(
                f"header {name!r} is not allowed: names and values cannot hold "
                "line breaks, NUL, and names no ':' or spaces"
            )
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    head = "\r\n".join(lines)
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError:
        return head.encode("utf-8")


def _framing_fields(rest: bytes) -> dict[bytes, str]:
    """The framing headers of a head, names and values lower-cased (repeats joined with ", ").

    Raises ``_ProtocolError`` for a line without ':'. One pass of ``split``/``partition``, which
    is several times cheaper than a regular expression over a hosted API's many headers.
    """
    framing: dict[bytes, str] = {}
    if not rest:
        return framing
    for line in rest.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            raise _ProtocolError(f"malformed header line: {line.strip()[:80]!r}")
        key = name.rstrip(b" \t")
        if len(key) <= _LONGEST_FRAMING_NAME:  # longer names (most on a hosted API) skip lower()
            key = key.lower()
            if key in _FRAMING_NAMES:
                text = value.strip().lower().decode("latin-1")
                framing[key] = f"{framing[key]}, {text}" if key in framing else text
    return framing


def _number(text: str, base: int) -> int:
    """A framing number: only digits of ``base`` (``int()`` would take signs, ``_`` and ``0x``)."""
    digits = text.strip()
    if not digits or digits.strip(_HEX_DIGITS if base == 16 else _DIGITS):
        raise ValueError(text)
    return int(digits, base)


def _idle_reuse(keep_alive: str | None, default: float) -> float:
    """How long an idle connection may be reused, shortened by a ``Keep-Alive: timeout=N`` value."""
    if keep_alive:
        for part in keep_alive.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "timeout":
                try:
                    return max(0.0, min(default, float(value) - 1.0))
                except ValueError:
                    break
    return default


def _timeout_error(timeout_s: float) -> EndpointTimeoutError:
    return EndpointTimeoutError(f"no complete response within {timeout_s:g} s", retryable=True)


def _expire(waiter: asyncio.Future, timeout_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(_timeout_error(timeout_s))


def _translated(exc: BaseException, timeout_s: float) -> BaseException:
    if isinstance(exc, (EndpointConnectionError, EndpointTimeoutError)):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return _timeout_error(timeout_s)
    if isinstance(exc, _ProtocolError):
        return EndpointConnectionError(f"connection error: {exc}", retryable=True)
    if isinstance(exc, ssl.SSLError):
        return EndpointConnectionError(f"connection error: TLS: {exc.reason or exc}", retryable=True)
    if isinstance(exc, OSError):
        return EndpointConnectionError(f"connection error: {exc.strerror or exc}", retryable=True)
    return exc  # cancellation and the like pass through untouched

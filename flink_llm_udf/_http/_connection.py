"""One connection of the built-in client: a request at a time, its reply read by llhttp.

llhttp (through ``httptools``, the parser behind uvicorn) does all of the HTTP/1.1 parsing and
refuses what it must (Content-Length together with chunked, bare LF line ends, a space before
':', bad chunk sizes, ...). This module only reacts to its callbacks: it keeps the reply's
status, headers and body (through ``ReplyBody``, which caps and decodes it), skips interim 1xx
replies, refuses a 101 nobody asked for and a transfer coding other than chunked, bounds what the
head and the chunk framing may cost, ends a read-until-close body at EOF, and drops the
connection when bytes follow a reply. Nothing of a reply stays on the connection once it is
handed over: an idle kept-alive connection holds no reply bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

from ._failures import ReplyProblem
from ._limits import (
    INFLATE_STEP,
    MAX_FIELD_BYTES,
    MAX_FIELDS,
    MAX_FRAMING_RUN,
    MAX_HEAD_BYTES,
    ReplyBody,
    too_large,
)

Fields = list[tuple[bytes, bytes]]
#: Lengths of the header names the client reads for itself (content-length, transfer-encoding,
#: content-encoding, keep-alive): longer or shorter names (most, on a hosted API) skip ``lower()``.
_OWN_NAME_LENGTHS = frozenset((14, 17, 16, 10))


class ResponseHeaders(Mapping[str, str]):
    """Reply headers, case-insensitive; repeated headers are joined with ``", "``.

    Built into a dict on first use: the engine reads no header of a 2xx reply, and real
    endpoints send dozens (rate-limit counters, tracing ids), so most replies never pay for it.
    """

    __slots__ = ("_fields", "_parsed")

    def __init__(self, fields: Fields | None = None) -> None:
        self._fields = fields or []
        self._parsed: dict[str, str] | None = None

    def _dict(self) -> dict[str, str]:
        if self._parsed is None:
            parsed: dict[str, str] = {}
            for name, value in self._fields:
                key, text = name.decode("latin-1").lower(), value.decode("latin-1").strip()
                parsed[key] = f"{parsed[key]}, {text}" if key in parsed else text
            self._parsed = parsed
        return self._parsed

    def get(self, name: str, default: Any = None) -> Any:
        return self._dict().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._dict()[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._dict()!r})"


#: What a finished exchange gives the pool: status, headers, decoded body, reusable.
Exchange = tuple[int, ResponseHeaders, bytes, bool]


class _ExtraBytes(Exception):
    """Bytes after a complete reply: they answer no request, so the connection is dropped."""


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one request at a time."""

    def __init__(self, max_reply_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_deadline = 0.0  # when an idle connection stops being reusable (set by the pool)
        self.keep_alive_field: bytes | None = None  # the last reply's Keep-Alive header
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cap = max_reply_bytes
        self._parser = HttpResponseParser(self)
        self._waiter: asyncio.Future[Exchange] | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget the last reply (before a request, and once a reply is handed over)."""
        self._status = 0
        self._fields: Fields = []
        self._headers: ResponseHeaders | None = None
        self._body: ReplyBody | None = None
        self._head_bytes = 0
        self._head_done = False
        self._interim = False
        self._complete = False
        self._keep_alive = False
        self._until_close = False
        self._framing_run = 0
        self._stepping = False

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()  # once: each call costs a getpid() system call

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.abort()  # bytes no request asked for (or after a timeout): nothing to read them as
            return
        body = self._body
        seen = body.raw_size if body is not None else 0
        if body is not None:
            body.budget = INFLATE_STEP
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self._parser_failed(exc)
            return
        if self._complete or self._waiter is None:
            return
        if not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(ReplyProblem(f"reply head longer than {MAX_HEAD_BYTES} bytes"))
        elif self._body is not None and self._body.raw_size == seen:
            # No body byte in these: chunk framing (or the head that ends in them), counted whole.
            self._framing_run += len(data)
            if self._framing_run > MAX_FRAMING_RUN:
                self._fail(ReplyProblem(f"more than {MAX_FRAMING_RUN} bytes of chunk framing without data"))
        else:
            self._framing_run = 0

    def eof_received(self) -> bool:
        self._end_of_stream()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None:
            self._end_of_stream()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._complete:  # a whole reply, still being inflated: the steps hand it over
                self._keep_alive = False
                if not self._stepping:
                    self._deliver()
                return
            waiter.set_exception(
                exc or ConnectionResetError("the connection closed before the reply was complete")
            )
        self._release()

    def _end_of_stream(self) -> None:
        """The server closed its side: that ends a read-until-close body."""
        if (
            self._until_close
            and self._head_done
            and not self._complete
            and self._waiter is not None
            and not self._waiter.done()
        ):
            self._complete, self._keep_alive = True, False
            self._deliver()

    # --- llhttp callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            raise _ExtraBytes

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._fields
        fields.append((name, value))
        if len(fields) > MAX_FIELDS:
            raise ReplyProblem(f"more than {MAX_FIELDS} header fields in the reply")
        if len(name) + len(value) > MAX_FIELD_BYTES:
            raise ReplyProblem(f"a reply header field longer than {MAX_FIELD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        self._head_done = True
        status = self._parser.get_status_code()
        fields, self._fields = self._fields, []
        if status < 200:
            if status == 101:
                raise ReplyProblem("the server switched protocols (101), which no request asked for")
            self._interim = True  # 100 Continue, 103 Early Hints: the real reply follows
            return
        length = coding = transfer = None
        for name, value in fields:
            if len(name) in _OWN_NAME_LENGTHS:
                lowered = name.lower()
                if lowered == b"content-length":
                    length = value
                elif lowered == b"content-encoding":
                    coding = value
                elif lowered == b"transfer-encoding":
                    transfer = value
                elif lowered == b"keep-alive":
                    self.keep_alive_field = value
        if transfer is not None and transfer.strip().lower() != b"chunked":
            raise ReplyProblem(f"unsupported Transfer-Encoding {transfer.decode('latin-1')!r}")
        if length is not None and status not in (204, 304) and int(length) > self._cap:  # digits: llhttp
            raise too_large(self._cap, "Content-Length", int(length))
        self._status = status
        self._headers = ResponseHeaders(fields)
        self._body = ReplyBody(self._cap, coding)
        self._body.budget = INFLATE_STEP
        self._until_close = length is None and transfer is None and status not in (204, 304)

    def on_body(self, data: bytes) -> None:
        self._body.feed(data)  # type: ignore[union-attr]  # llhttp sends a body after its head

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim, self._head_done, self._head_bytes = False, False, 0
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()  # valid only inside this callback
        self._deliver()

    # --- one exchange ----------------------------------------------------------------------
    def send(self, request: bytes) -> asyncio.Future[Exchange]:
        """Write a whole request; the future gets ``(status, headers, body, keep_alive)``."""
        self._reset()
        self._waiter = waiter = self._loop.create_future()  # type: ignore[union-attr]
        self.transport.write(request)  # type: ignore[union-attr]
        return waiter

    def abort(self) -> None:
        """Close at once (RST); a request still waiting for its reply fails."""
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the connection was closed before the reply came"))
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _release(self) -> None:
        """Drop the exchange: the waiter (done or abandoned) and whatever of the reply was read."""
        self._waiter = None
        self._fields, self._headers, self._body = [], None, None

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def _parser_failed(self, exc: Exception) -> None:
        """llhttp stopped: a callback refused something, or the bytes are not HTTP/1.1."""
        cause = exc.__context__ if isinstance(exc, HttpParserCallbackError) else exc
        if self._complete or isinstance(cause, _ExtraBytes):
            # The reply was whole; what followed it answers no request: drop the connection (once
            # the reply, if it is still being inflated, is handed over).
            self._keep_alive = False
            if self._waiter is None or self._waiter.done():
                self.abort()
            return
        if isinstance(cause, ReplyProblem):
            self._fail(cause)
        elif isinstance(exc, HttpParserUpgrade):
            self._fail(ReplyProblem("the server switched protocols, which no request asked for"))
        else:
            self._fail(ReplyProblem(f"the reply is not valid HTTP/1.1: {exc}"))

    def _deliver(self) -> None:
        """Hand the reply over once its body is decoded (in bounded steps, between loop turns)."""
        body = self._body
        waiter = self._waiter
        if body is None or waiter is None or waiter.done():
            return
        if body.pending:
            if not self._stepping:
                self._stepping = True
                self._loop.call_soon(self._inflate_step)  # type: ignore[union-attr]
            return
        try:
            raw = body.finish()
        except ReplyProblem as exc:
            self._fail(exc)
            return
        status, headers, keep_alive = self._status, self._headers, self._keep_alive
        self._waiter = None
        self._fields, self._headers, self._body = [], None, None
        waiter.set_result((status, headers, raw, keep_alive))  # type: ignore[arg-type]

    def _inflate_step(self) -> None:
        """One bounded step of inflating a compressed body, then back to the loop."""
        self._stepping = False
        body = self._body
        if body is None or self._waiter is None or self._waiter.done():
            return
        body.budget = INFLATE_STEP
        try:
            body.inflate()
        except ReplyProblem as exc:
            self._fail(exc)
            return
        if self._complete:
            self._deliver()
        elif body.pending and not self._stepping:
            self._stepping = True
            self._loop.call_soon(self._inflate_step)  # type: ignore[union-attr]

"""The built-in HTTP/1.1 client against scripted raw-socket servers on 127.0.0.1.

Each server runs its own event loop in a thread (so the same fixture serves tests driving the
pool on their own loop and the engine on its loop thread). A server records every request's
raw bytes and the connections it accepted, and answers with bytes a test script writes, byte
for byte: framing is checked exactly, not through another HTTP library. The ``serve`` fixture
stops every server it started; every client call is bounded by ``BOUND_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flink_llm_udf import OpenAICompatProvider, run_batch
from flink_llm_udf._batch import BlockingEngine
from flink_llm_udf._engine import EngineSettings
from flink_llm_udf._errors import EndpointConnectionError, EndpointTimeoutError, InvalidOptionError
from flink_llm_udf._http._builtin import ConnectionPool, ResponseHeaders
from flink_llm_udf._http._request import request_head
from flink_llm_udf._http._target import Endpoint

BOUND_S = 5.0  # no client coroutine of a test may run longer than this
TIMEOUT_S = 0.5  # the request timeout when a reply is expected
SHORT_S = 0.2  # the request timeout when the test expects it to expire
PATH = "/v1/chat/completions"


# --- the scripted server -------------------------------------------------------------------------
@dataclass
class Request:
    """One request as the server read it: the raw bytes, and its parts for convenience."""

    raw: bytes
    line: str
    headers: list[tuple[str, str]]
    body: bytes
    conn: int  # index of the connection it came on, in accept order

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class Conn:
    """The server's side of one accepted connection, driven by a test's script."""

    def __init__(
        self, server: ScriptedServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        self.server, self.reader, self.writer, self.index = server, reader, writer, index
        self.client_closed = False  # the client closed (or reset) its end: seen by wait_client_close

    async def read_request(self) -> Request | None:
        """The next request, or None when the client closes the connection between requests."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            self.client_closed = True
            return None
        except ConnectionError:
            self.client_closed = True
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers = [
            (name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        lengths = [int(value) for name, value in headers if name.lower() == "content-length"]
        body = await self.reader.readexactly(lengths[0]) if lengths else b""
        request = Request(head + body, lines[0], headers, body, self.index)
        self.server.requests.append(request)
        return request

    async def send(self, data: bytes, *, piece: int = 0, pause: float = 0.0) -> None:
        """Write ``data``; with ``piece``, in writes of that many bytes ``pause`` seconds apart."""
        step = piece or len(data) or 1
        for start in range(0, len(data), step):
            self.writer.write(data[start : start + step])
            await self.writer.drain()
            if pause and start + step < len(data):
                await asyncio.sleep(pause)

    async def wait_client_close(self, timeout: float = 1.0) -> bool:
        """Read (and discard) until the client closes its end; False if it did not in time."""

        async def until_eof() -> None:
            while await self.reader.read(65536):
                pass

        try:
            await asyncio.wait_for(until_eof(), timeout)
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            pass
        self.client_closed = True
        return True

    def close(self) -> None:
        """Close our end with a FIN."""
        self.writer.close()

    def reset(self) -> None:
        """Close our end with a RST (SO_LINGER 0), as a crashing server does."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[Conn], Awaitable[None]]


class ScriptedServer:
    """A TCP (or TLS) server on 127.0.0.1, port 0, running ``script(conn)`` per connection."""

    def __init__(self, script: Script, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.requests: list[Request] = []
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []  # a script's own failures: fail the test at teardown
        self._ssl = ssl_context
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        # A TLS handshake the client rejects is logged by the loop; that is the test's point.
        self._loop.set_exception_handler(lambda loop, context: None)
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-server", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def connections(self) -> int:
        return len(self.conns)

    def url(self, path: str = PATH, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> ScriptedServer:
        self._thread.start()

        async def listen() -> asyncio.Server:
            return await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._ssl)

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(self, reader, writer, len(self.conns))
        self.conns.append(conn)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away: several tests make it do so
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            for conn in self.conns:
                conn.writer.transport.abort()
            tasks = [task for task in self._tasks if not task.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        try:
            if self._server is not None:
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    """``serve(script, ssl_context=None)`` starts a server; all are stopped after the test."""
    servers: list[ScriptedServer] = []

    def start(script: Script, ssl_context: ssl.SSLContext | None = None) -> ScriptedServer:
        server = ScriptedServer(script, ssl_context)
        servers.append(server)
        return server.start()

    yield start
    errors = []
    for server in servers:
        server.stop()
        errors += server.errors
    assert not errors, f"a server script failed: {errors!r}"


# --- replies and scripts ---------------------------------------------------------------------------
def ok(body: bytes = b"{}", *headers: str, status: str = "200 OK", version: str = "HTTP/1.1") -> bytes:
    """A reply framed by Content-Length, with raw ``Name: value`` header lines."""
    lines = [f"{version} {status}", *headers, f"Content-Length: {len(body)}"]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def chunked(*chunks: bytes, headers: tuple[str, ...] = (), trailers: tuple[str, ...] = ()) -> bytes:
    """A chunked reply: one chunk per argument, then the last chunk and ``trailers``."""
    head = "\r\n".join(["HTTP/1.1 200 OK", *headers, "Transfer-Encoding: chunked"]).encode() + b"\r\n\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + body + b"0\r\n" + "".join(f"{t}\r\n" for t in trailers).encode() + b"\r\n"


def replying(reply: bytes | Callable[[Request], bytes]) -> Script:
    """A keep-alive script: answer every request with ``reply`` (or ``reply(request)``)."""

    async def script(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            await conn.send(reply(request) if callable(reply) else reply)

    return script


def once(
    reply: bytes, then: str = "close", *, piece: int = 0, pause: float = 0.0, linger: float = 0.0
) -> Script:
    """Answer the first request on each connection with ``reply``, then, ``linger`` seconds
    later, ``then``: "close" (FIN), "reset" (RST), "stall" (wait for the client to go) or
    "serve" (keep-alive ``ok()`` for further requests)."""

    async def script(conn: Conn) -> None:
        if await conn.read_request() is None:
            return
        await conn.send(reply, piece=piece, pause=pause)
        if linger:
            await asyncio.sleep(linger)
        if then == "close":
            conn.close()
        elif then == "reset":
            conn.reset()
        elif then == "stall":
            await conn.wait_client_close(timeout=3.0)
        else:
            await replying(ok())(conn)

    return script


def first_then(first: Script, rest: Script) -> Script:
    """``first`` on the first connection, ``rest`` on every later one."""

    async def script(conn: Conn) -> None:
        await (first if conn.index == 0 else rest)(conn)

    return script


# --- the client side -------------------------------------------------------------------------------
def run(coroutine: Awaitable):
    return asyncio.run(asyncio.wait_for(coroutine, BOUND_S))


@contextlib.asynccontextmanager
async def pool_for(url: str, headers: tuple[tuple[str, str], ...] = (), **kwargs):
    pool = ConnectionPool(url, headers, **kwargs)
    try:
        yield pool
    finally:
        pool.close()
        await asyncio.sleep(0)  # let the aborted transports finish closing on this loop


def post_once(
    url: str, body: bytes = b"{}", headers: tuple[tuple[str, str], ...] = (), timeout_s: float = TIMEOUT_S
) -> tuple[int, ResponseHeaders, bytes]:
    async def main():
        async with pool_for(url, headers) as pool:
            return await pool.post(body, timeout_s)

    return run(main())


def post_failure(url: str, timeout_s: float = TIMEOUT_S) -> tuple[BaseException, float]:
    """The exception one post raises, and how long it took to raise it."""

    async def main():
        async with pool_for(url) as pool:
            began = time.monotonic()
            with pytest.raises((EndpointConnectionError, EndpointTimeoutError)) as caught:
                await pool.post(b"{}", timeout_s)
            return caught.value, time.monotonic() - began

    return run(main())


async def wait_until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# === 1. request bytes =============================================================================
def test_request_bytes_are_exactly_the_head_and_body(serve):
    server = serve(replying(ok()))
    body = b'{"model":"m","messages":[{"role":"user","content":"h\\u00e9\\r\\n\\r\\n"}]}'
    headers = (("Content-Type", "application/json"), ("Authorization", "Bearer sk-test"), ("X-Extra", "yes"))
    post_once(server.url(PATH + "?api-version=2024-06-01#frag"), body, headers)
    assert (
        server.requests[0].raw
        == (
            f"POST {PATH}?api-version=2024-06-01 HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Accept: application/json\r\n"
            "Accept-Encoding: gzip, deflate\r\n"
            "Content-Type: application/json\r\n"
            "Authorization: Bearer sk-test\r\n"
            "X-Extra: yes\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode()
        + body
    )


@pytest.mark.parametrize(
    "body", [b"", b"x", b"\r\n\r\n", "é€".encode() * 5000], ids=["empty", "one", "crlfcrlf", "large"]
)
def test_content_length_matches_the_body(serve, body):
    server = serve(replying(ok()))
    post_once(server.url(), body)
    request = server.requests[0]
    assert request.values("Content-Length") == [str(len(body))]
    assert request.body == body


def test_empty_path_is_slash(serve):
    server = serve(replying(ok()))
    post_once(f"http://127.0.0.1:{server.port}")
    assert server.requests[0].line == "POST / HTTP/1.1"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://api.example.com/v1", "api.example.com"),
        ("http://api.example.com:80/v1", "api.example.com"),
        ("http://api.example.com:8080/v1", "api.example.com:8080"),
        ("https://api.example.com/v1", "api.example.com"),
        ("https://api.example.com:443/v1", "api.example.com"),
        ("https://api.example.com:80/v1", "api.example.com:80"),
        ("http://api.example.com:443/v1", "api.example.com:443"),
        ("http://[::1]:8080/v1", "[::1]:8080"),
        ("http://[::1]/v1", "[::1]"),
        ("https://[2001:db8::1]/v1", "[2001:db8::1]"),
        ("https://[2001:db8::1]:8443/v1", "[2001:db8::1]:8443"),
    ],
)
def test_host_header_in_the_head(url, host):
    head = request_head(Endpoint.parse(url), ())
    assert head.split(b"\r\n")[1] == f"Host: {host}".encode()
    assert head.endswith(b"\r\nContent-Length: ")


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "host",
        "Content-Length",
        "CONTENT-LENGTH",
        "Transfer-Encoding",
        "transfer-encoding",
        "Connection",
        "connection",
    ],
)
def test_framing_headers_of_the_caller_are_dropped(serve, name):
    server = serve(replying(ok()))
    value = {
        "host": "evil.example",
        "content-length": "999",
        "transfer-encoding": "chunked",
        "connection": "close",
    }[name.lower()]
    post_once(server.url(), b"abc", ((name, value), ("X-After", "kept")))
    request = server.requests[0]
    assert request.values("Host") == [f"127.0.0.1:{server.port}"]
    assert request.values("Content-Length") == ["3"]
    assert request.values("Transfer-Encoding") == []
    assert request.values("Connection") == []
    assert request.values("X-After") == ["kept"]
    assert request.body == b"abc"


@pytest.mark.parametrize(
    ("given", "accept", "encoding"),
    [
        ((), ["application/json"], ["gzip, deflate"]),
        ((("accept", "text/event-stream"),), ["text/event-stream"], ["gzip, deflate"]),
        ((("Accept-Encoding", "identity"),), ["application/json"], ["identity"]),
        ((("ACCEPT", "*/*"), ("accept-encoding", "gzip")), ["*/*"], ["gzip"]),
    ],
)
def test_accept_defaults_and_overrides(serve, given, accept, encoding):
    server = serve(replying(ok()))
    post_once(server.url(), b"{}", given)
    assert server.requests[0].values("Accept") == accept
    assert server.requests[0].values("Accept-Encoding") == encoding


# === 2. header injection ==========================================================================
SECRET = "sk-proj-SECRET0123456789"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Api-Key", f"{SECRET}\r\nX-Injected: 1"),
        ("X-Api-Key", f"{SECRET}\n"),
        ("X-Api-Key", f"{SECRET}\r"),
        ("Authorization", f"Bearer {SECRET}\0"),
        ("X-Bad\r\nX-Injected", SECRET),
        ("X-Bad\0", SECRET),
        ("X-Bad:", SECRET),
        ("X Bad", SECRET),
        ("", SECRET),
    ],
)
def test_header_injection_is_refused_without_echoing_the_value(name, value):
    with pytest.raises(InvalidOptionError) as caught:
        ConnectionPool("http://127.0.0.1:9/v1", (("Content-Type", "application/json"), (name, value)))
    assert SECRET not in str(caught.value)
    assert "header" in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://host/x", "http:///nohost", "not a url"])
def test_non_http_url_is_refused(url):
    with pytest.raises(InvalidOptionError, match="http"):
        ConnectionPool(url, ())


# === 3. responses =================================================================================
def test_content_length_reply(serve):
    server = serve(replying(ok(b'{"ok": true}', "X-Request-Id: r1", status="201 Created")))
    status, headers, body = post_once(server.url())
    assert (status, body, headers.get("x-request-id")) == (201, b'{"ok": true}', "r1")
    assert headers["content-length"] == "12"


HOSTED_API_HEADERS = (
    *(f"X-Ratelimit-Remaining-Requests-{i}: {i * 1000}" for i in range(20)),
    "X-Original-Content-Length: 999",
    "Openai-Processing-Ms: 123",
    "X-Request-Id: req_0123456789",
)


@pytest.mark.parametrize(
    "framing", ["Content-Length: 12", "content-length:12", "CONTENT-LENGTH:\t12", "Content-Length:   12  "]
)
def test_framing_is_read_among_many_headers(serve, framing):
    # A hosted API sends a couple of dozen headers; only the framing ones decide how the body is
    # read (a longer name that merely contains one, like X-Original-Content-Length, does not).
    head = b"HTTP/1.1 200 OK\r\n" + "\r\n".join((*HOSTED_API_HEADERS, framing)).encode() + b"\r\n\r\n"
    server = serve(replying(head + b'{"ok": true}'))
    replies = posts(server.url(), 2)
    assert [(status, body) for status, _, body in replies] == [(200, b'{"ok": true}')] * 2
    assert replies[0][1]["x-original-content-length"] == "999"
    assert server.connections == 1


def test_chunked_reply_with_extensions_and_trailers_then_reuse(serve):
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b'1;quoted="x;y"\r\n \r\n'
        b"A\r\nworld 0123\r\n"
        b"0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
    )
    server = serve(replying(reply))

    async def main():
        async with pool_for(server.url()) as pool:
            return [await pool.post(b"{}", TIMEOUT_S) for _ in range(2)]

    replies = run(main())
    assert [(status, body) for status, _, body in replies] == [(200, b"hello world 0123")] * 2
    assert server.connections == 1  # the trailers were consumed: the next reply parsed cleanly


def test_chunked_reply_in_tiny_tcp_writes(serve):
    payload = json.dumps({"choices": [{"message": {"content": "x" * 40}}]}).encode()
    reply = chunked(
        payload[:17],
        payload[17:18],
        payload[18:],
        headers=("Content-Type: application/json",),
        trailers=("X-Checksum: 1",),
    )
    server = serve(once(reply, "serve", piece=1, pause=0.001))
    status, headers, body = post_once(server.url(), timeout_s=3.0)
    assert (status, body) == (200, payload)
    assert headers.get("content-type") == "application/json"


@pytest.mark.parametrize("split", [1, 2, 3, 5, 7])
def test_chunked_reply_split_at_every_offset(serve, split):
    # Writes of `split` bytes put the segment boundaries inside size lines, CRLFs and data.
    reply = chunked(b"ab", b"cdefghijklmnopq", b"r", trailers=("X-T: 1",))
    server = serve(once(reply, "serve", piece=split, pause=0.002))
    assert post_once(server.url(), timeout_s=3.0)[2] == b"abcdefghijklmnopqr"


def test_read_until_close_reply(serve):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    server = serve(once(head + b"part one, " + b"part two", "close", piece=len(head) + 5, pause=0.02))

    async def main():
        async with pool_for(server.url()) as pool:
            first = await pool.post(b"{}", TIMEOUT_S)
            second = await pool.post(b"{}", TIMEOUT_S)
            return first, second

    (status, _, body), second = run(main())
    assert (status, body) == (200, b"part one, part two")
    assert second[2] == b"part one, part two"
    assert server.connections == 2  # a body read to EOF leaves no connection to reuse


def test_read_until_close_reply_with_gzip_is_decoded(serve):
    data = b'{"value": "' + b"z" * 200 + b'"}'
    server = serve(once(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(data), "close"))
    assert post_once(server.url())[2] == data


def test_204_without_body_keeps_the_connection(serve):
    server = serve(replying(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"))

    async def main():
        async with pool_for(server.url()) as pool:
            return [await pool.post(b"{}", TIMEOUT_S) for _ in range(2)]

    replies = run(main())
    assert [(status, body) for status, _, body in replies] == [(204, b"")] * 2
    assert server.connections == 1


def test_interim_replies_before_the_real_one(serve):
    async def script(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            await asyncio.sleep(0.01)
            await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            await conn.send(ok(b"final", "X-Final: 1"), piece=4)

    server = serve(script)

    async def main():
        async with pool_for(server.url()) as pool:
            return [await pool.post(b"{}", TIMEOUT_S) for _ in range(2)]

    for status, headers, body in run(main()):
        assert (status, body, headers.get("x-final")) == (200, b"final", "1")
        assert "link" not in headers  # an interim reply's headers are not the reply's
    assert server.connections == 1


DATA = json.dumps({"choices": [{"message": {"content": "compressed " * 30}}]}).encode()


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(DATA)),
        ("x-gzip", gzip.compress(DATA)),
        ("GZIP", gzip.compress(DATA)),
        ("deflate", zlib.compress(DATA)),
        ("deflate", _raw_deflate(DATA)),
        ("identity", DATA),
    ],
    ids=["gzip", "x-gzip", "GZIP", "deflate-zlib", "deflate-raw", "identity"],
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_encoded_body_is_decoded(serve, encoding, encoded, framing):
    header = f"Content-Encoding: {encoding}"
    reply = (
        ok(encoded, header) if framing == "length" else chunked(encoded[:10], encoded[10:], headers=(header,))
    )
    server = serve(replying(reply))
    assert post_once(server.url())[2] == DATA


LARGE = b'{"data": "' + b"0123456789abcdef" * (5 * 1024 * 1024 // 16) + b'"}'  # 5 MiB: several inflate steps


@pytest.mark.parametrize("then", ["serve", "close"])
@pytest.mark.parametrize("framing", ["length", "chunked", "until-close"])
def test_a_body_that_inflates_over_several_steps_is_whole(serve, framing, then):
    encoded = gzip.compress(LARGE)
    header = "Content-Encoding: gzip"
    if framing == "length":
        reply = ok(encoded, header)
    elif framing == "chunked":
        reply = chunked(encoded[:1000], encoded[1000:], headers=(header,))
    else:
        reply, then = b"HTTP/1.1 200 OK\r\n" + header.encode() + b"\r\n\r\n" + encoded, "close"
    server = serve(once(reply, then))
    assert post_once(server.url(), timeout_s=5.0)[2] == LARGE


def test_a_truncated_gzip_body_is_a_connection_error(serve):
    server = serve(replying(ok(gzip.compress(DATA)[:-12], "Content-Encoding: gzip")))
    error, _ = post_failure(server.url())
    assert isinstance(error, EndpointConnectionError)
    assert "cannot decode the gzip body" in str(error)


@pytest.mark.parametrize(
    ("encoding", "encoded", "words"),
    [
        ("br", b"\x8b\x03\x80{}\x03", "unsupported Content-Encoding 'br'"),
        ("gzip", b"not gzip at all", "cannot decode the gzip body"),
        ("deflate", b"not deflate", "cannot decode the deflate body"),
    ],
)
def test_undecodable_body_is_a_connection_error(serve, encoding, encoded, words):
    server = serve(replying(ok(encoded, f"Content-Encoding: {encoding}")))
    error, _ = post_failure(server.url())
    assert isinstance(error, EndpointConnectionError)
    assert error.retryable is True
    assert words in str(error)


def test_headers_are_case_insensitive_and_repeats_joined(serve):
    server = serve(
        replying(
            ok(
                b"{}",
                "X-Request-ID: abc",
                "Set-Cookie: a=1",
                "set-cookie: b=2",
                "X-Multi:one",
                "x-multi:   two  ",
                "X-Empty:",
            )
        )
    )
    _, headers, _ = post_once(server.url())
    assert isinstance(headers, ResponseHeaders)
    for name in ("x-request-id", "X-Request-Id", "X-REQUEST-ID"):
        assert headers.get(name) == "abc"
        assert headers[name] == "abc"
        assert name in headers
    assert headers.get("Set-Cookie") == "a=1, b=2"
    assert headers.get("X-MULTI") == "one, two"
    assert headers.get("x-empty") == ""
    assert headers.get("absent") is None
    assert headers.get("absent", "d") == "d"
    assert 42 not in headers


# === 4. keep-alive =================================================================================
def posts(
    url: str,
    count: int,
    *,
    pause: float = 0.0,
    setup: Callable[[ConnectionPool], None] | None = None,
    timeout_s: float = TIMEOUT_S,
) -> list[tuple[int, ResponseHeaders, bytes]]:
    """``count`` sequential posts through one pool, ``pause`` seconds apart."""

    async def main():
        async with pool_for(url) as pool:
            if setup is not None:
                setup(pool)
            replies = []
            for index in range(count):
                if index and pause:
                    await asyncio.sleep(pause)
                replies.append(await pool.post(b'{"n": %d}' % index, timeout_s))
            return replies

    return run(main())


def test_sequential_posts_reuse_one_connection(serve):
    server = serve(replying(lambda request: ok(request.body)))
    replies = posts(server.url(), 3)
    assert [body for _, _, body in replies] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert server.connections == 1
    assert [request.conn for request in server.requests] == [0, 0, 0]


@pytest.mark.parametrize(
    ("reply", "reused"),
    [
        (ok(b"{}", "Connection: close"), False),
        (ok(b"{}", "connection: Close"), False),
        (ok(b"{}", "Connection: keep-alive, close"), False),
        (ok(b"{}", version="HTTP/1.0"), False),
        (ok(b"{}", "Connection: keep-alive", version="HTTP/1.0"), True),
        (ok(b"{}", "Connection: keep-alive"), True),
    ],
    ids=["close", "close-case", "close-in-list", "http10", "http10-keep-alive", "keep-alive"],
)
def test_connection_header_decides_reuse(serve, reply, reused):
    # The server keeps every connection open: only the client's reading of the reply decides.
    server = serve(replying(reply))
    posts(server.url(), 2)
    assert server.connections == (1 if reused else 2)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_connection_the_server_dropped_while_idle_is_replaced(serve, how):
    # A RST discards what the client has not read yet: it comes once the reply is surely read.
    server = serve(once(ok(b"fresh"), how, linger=0.05))

    async def main():
        async with pool_for(server.url()) as pool:
            first = await pool.post(b"{}", TIMEOUT_S)
            await wait_until(lambda: server.conns[0].writer.is_closing(), timeout=2.0)
            await asyncio.sleep(0.05)  # the client reads the FIN/RST while the connection is idle
            second = await pool.post(b"{}", TIMEOUT_S)
            return first, second

    first, second = run(main())
    assert first[2] == second[2] == b"fresh"
    assert server.connections == 2


def test_keep_alive_timeout_of_one_second_means_no_reuse(serve):
    # timeout=1 leaves no margin (the limit is timeout - 1 s = 0): even an immediate post reconnects.
    server = serve(replying(ok(b"{}", "Keep-Alive: timeout=1, max=100")))
    posts(server.url(), 2)
    assert server.connections == 2


@pytest.mark.parametrize(
    ("header", "limit"),
    [
        ("Keep-Alive: timeout=1.25", None),  # 1.25 - 1 = 0.25 s
        (None, 0.25),  # the pool's own limit
        ("Keep-Alive: timeout=30", 0.25),  # a longer server timeout cannot raise the pool's limit
    ],
)
def test_connection_idle_past_the_limit_is_not_reused(serve, header, limit):
    server = serve(replying(ok(b"{}", *([header] if header else []))))

    def setup(pool: ConnectionPool) -> None:
        if limit is not None:
            pool._idle_reuse_s = limit

    posts(server.url(), 2, setup=setup)
    assert server.connections == 1  # within the limit: reused
    posts(server.url(), 2, setup=setup, pause=0.35)
    assert server.connections == 3  # idle past it: a new one


def test_unparsable_keep_alive_header_keeps_the_default(serve):
    server = serve(replying(ok(b"{}", "Keep-Alive: timeout=soon")))
    posts(server.url(), 2)
    assert server.connections == 1


@pytest.mark.parametrize(
    "reply",
    [
        ok(b"ok") + b"EXTRA BYTES",
        # the same rule for chunked bodies: bytes after the last chunk belong to no request
        chunked(b"ok") + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale",
    ],
    ids=["content-length", "chunked"],
)
def test_bytes_past_the_reply_drop_the_connection(serve, reply):
    server = serve(replying(reply))
    replies = posts(server.url(), 2)
    assert [body for _, _, body in replies] == [b"ok", b"ok"]
    assert server.connections == 2


def test_unsolicited_bytes_on_an_idle_connection_drop_it(serve):
    async def script(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(ok(b"ok"))
        await asyncio.sleep(0.02)
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
        await replying(ok(b"late"))(conn)

    server = serve(first_then(script, replying(ok(b"new"))))
    replies = posts(server.url(), 2, pause=0.1)
    assert [body for _, _, body in replies] == [b"ok", b"new"]
    assert server.connections == 2


# === 5. failures ===================================================================================
async def never_answer(conn: Conn) -> None:
    """Read the request, then hold the connection until the client drops it (at most 3 s)."""
    await conn.read_request()
    await conn.wait_client_close(timeout=3.0)


def test_server_that_never_answers_times_out_and_the_connection_is_dropped(serve):
    server = serve(first_then(never_answer, replying(ok(b"second"))))

    async def main():
        async with pool_for(server.url()) as pool:
            began = time.monotonic()
            with pytest.raises(EndpointTimeoutError) as caught:
                await pool.post(b"{}", SHORT_S)
            elapsed = time.monotonic() - began
            await wait_until(lambda: server.conns[0].client_closed)
            return caught.value, elapsed, await pool.post(b"{}", TIMEOUT_S)

    error, elapsed, second = run(main())
    assert SHORT_S * 0.9 <= elapsed < SHORT_S + 1.0
    assert error.retryable is True
    assert f"{SHORT_S:g} s" in str(error)
    assert second[2] == b"second"
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nhalf",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 200 OK\r\n\r\nuntil close, but never closed",
    ],
    ids=["length", "chunked", "head", "until-close"],
)
def test_reply_that_stalls_midway_times_out(serve, reply):
    server = serve(once(reply, "stall"))
    error, elapsed = post_failure(server.url(), SHORT_S)
    assert isinstance(error, EndpointTimeoutError)
    assert error.retryable is True
    assert SHORT_S * 0.9 <= elapsed < SHORT_S + 1.0


@pytest.mark.parametrize(
    ("reply", "how"),
    [
        (b"", "close"),
        (b"", "reset"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "close"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, "close"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, "reset"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "close"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "reset"),
    ],
    ids=[
        "fin-before-reply",
        "rst-before-reply",
        "fin-in-head",
        "fin-in-body",
        "rst-in-body",
        "fin-in-chunks",
        "rst-in-chunks",
    ],
)
def test_server_closing_midway_is_a_connection_error(serve, reply, how):
    server = serve(once(reply, how))
    error, _ = post_failure(server.url(), TIMEOUT_S)
    assert isinstance(error, EndpointConnectionError)  # noticed at once, not at the timeout
    assert error.retryable is True
    assert str(error).startswith("connection error: ")


@pytest.mark.parametrize(
    "reply",
    [
        b"GARBAGE\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 OK 200\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabcdefgh",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (64 * 1024 + 10),
        # llhttp is strict where the old hand-written parser was not:
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + ok(b"ok"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ; ext=1\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 8200 + b"\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n" + b"X-N: 1\r\n" * 129 + b"Content-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;" + b"x" * (64 * 1024 + 10),
    ],
    ids=[
        "garbage",
        "ssh",
        "swapped",
        "http2",
        "no-status",
        "header-no-colon",
        "length-not-int",
        "length-negative",
        "chunk-size",
        "chunk-size-negative",
        "chunk-data-without-crlf",
        "head-too-long",
        "space-before-colon",
        "bare-lf",
        "obs-fold",
        "control-char-in-value",
        "two-content-lengths",
        "length-and-chunked",
        "chunked-not-last",
        "transfer-coding-not-chunked",
        "switching-protocols",
        "space-after-chunk-size",
        "field-too-long",
        "too-many-fields",
        "endless-chunk-extension",
    ],
)
def test_unreadable_reply_is_a_connection_error(serve, reply):
    # At once, as a connection error: not a wrong body, and not a wait for the timeout.
    server = serve(once(reply, "stall"))
    error, elapsed = post_failure(server.url(), TIMEOUT_S)
    assert isinstance(error, EndpointConnectionError)
    assert error.retryable is True
    assert elapsed < TIMEOUT_S * 0.8


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_connection_refused_names_host_and_port():
    port = _closed_port()
    error, elapsed = post_failure(f"http://127.0.0.1:{port}{PATH}", 2.0)
    assert isinstance(error, EndpointConnectionError)
    assert error.retryable is True
    assert f"127.0.0.1:{port}" in str(error)
    assert elapsed < 1.0


def test_cancellation_propagates_and_the_connection_is_dropped(serve):
    server = serve(first_then(never_answer, replying(ok(b"after"))))

    async def main():
        async with pool_for(server.url()) as pool:
            task = asyncio.ensure_future(pool.post(b"{}", 3.0))
            await wait_until(lambda: len(server.requests) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not pool._busy and not pool._idle
            await wait_until(lambda: server.conns[0].client_closed)
            return await pool.post(b"{}", TIMEOUT_S)

    assert run(main())[2] == b"after"
    assert server.connections == 2


def test_closed_pool_refuses_to_post_and_fails_requests_in_flight(serve):
    server = serve(never_answer)

    async def main():
        pool = ConnectionPool(server.url(), ())
        task = asyncio.ensure_future(pool.post(b"{}", 3.0))
        await wait_until(lambda: len(server.requests) == 1)
        pool.close()
        with pytest.raises(EndpointConnectionError) as in_flight:
            await task
        with pytest.raises(EndpointConnectionError) as after:
            await pool.post(b"{}", TIMEOUT_S)
        return in_flight.value, after.value

    in_flight, after = run(main())
    assert in_flight.retryable is True
    assert after.retryable is False
    assert "closed" in str(after)
    assert server.connections == 1


# === 6. concurrency ================================================================================
def test_concurrent_posts_get_their_own_replies_over_peak_concurrency_connections(serve):
    count, rounds = 20, 3

    async def echo(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            ident = json.loads(request.body)["id"]
            await asyncio.sleep((count - ident % count) * 0.002)  # reply out of order
            await conn.send(ok(json.dumps({"id": ident}).encode()))

    server = serve(echo)

    async def main():
        async with pool_for(server.url()) as pool:
            replies = []
            for round_ in range(rounds):
                bodies = [json.dumps({"id": round_ * count + i}).encode() for i in range(count)]
                replies += await asyncio.gather(*(pool.post(body, 2.0) for body in bodies))
            return replies

    replies = run(main())
    assert [json.loads(body)["id"] for _, _, body in replies] == list(range(count * rounds))
    assert server.connections == count
    per_connection = [sum(1 for r in server.requests if r.conn == c) for c in range(count)]
    assert per_connection == [rounds] * count


# === 7. through the engine =========================================================================
PROXY_ENV = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (*PROXY_ENV, "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # never the developer's ~/.netrc


def chat_reply(request: Request) -> bytes:
    """A chunked, gzip-encoded chat completion echoing the row's text, in a few chunks."""
    messages = json.loads(request.body)["messages"]
    text = next(m["content"] for m in messages if m["role"] == "user")
    payload = gzip.compress(
        json.dumps(
            {
                "id": "c1",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo {text}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        ).encode()
    )
    return chunked(
        payload[:7],
        payload[7:30],
        payload[30:],
        headers=("Content-Type: application/json", "Content-Encoding: gzip"),
    )


INPUTS = ["alpha", "beta", None, "gamma", "délta ✓", "epsilon"]
EXPECTED = ["echo alpha", "echo beta", None, "echo gamma", "echo délta ✓", "echo epsilon"]


def test_run_batch_with_chunked_replies(serve, clean_env):
    server = serve(replying(chat_reply))
    provider = OpenAICompatProvider(endpoint=server.url("/v1"), model="m", error_handling_strategy="FAILOVER")
    results = run_batch(provider, INPUTS, max_concurrency=2, request_timeout=2.0)
    assert [r.value for r in results] == EXPECTED
    assert sum(r.usage.total_tokens for r in results if r.usage) == 25
    assert {r.line for r in server.requests} == {f"POST {PATH} HTTP/1.1"}
    assert {tuple(r.values("Accept")) for r in server.requests} == {
        ("application/json",)
    }  # the built-in client
    assert server.connections <= 2


def test_aiohttp_client_gives_the_same_results(serve, clean_env):
    server = serve(replying(chat_reply))
    provider = OpenAICompatProvider(endpoint=server.url("/v1"), model="m", error_handling_strategy="FAILOVER")
    settings = EngineSettings(http_client="aiohttp", max_concurrency=2, request_timeout_s=2.0)
    with BlockingEngine(provider, settings) as engine:
        results = engine.run_batch(INPUTS, timeout=BOUND_S)
    assert [r.value for r in results] == EXPECTED
    assert all("application/json" not in r.values("Accept") for r in server.requests)  # aiohttp's own
    # aiohttp's own decompression is off (the reply-size cap holds after inflating): it asks only for
    # what the package decodes.
    assert {tuple(r.values("Accept-Encoding")) for r in server.requests} == {("gzip, deflate",)}


def test_unknown_http_client_is_refused():
    with pytest.raises(InvalidOptionError, match="http_client"):
        EngineSettings(http_client="nope")


# === 8. TLS =======================================================================================
@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    openssl = shutil.which("openssl") or ("/usr/bin/openssl" if Path("/usr/bin/openssl").exists() else None)
    if openssl is None:
        pytest.skip("the openssl CLI is not installed: cannot make a self-signed certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def tls_server(serve, certificate, script: Script) -> ScriptedServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return serve(script, ssl_context=context)


def test_tls_with_a_context_that_trusts_the_certificate(serve, certificate):
    server = tls_server(serve, certificate, replying(lambda request: ok(request.body, "X-Tls: yes")))
    trusting = ssl.create_default_context(cafile=str(certificate[0]))

    async def main():
        async with pool_for(server.url(scheme="https"), (), ssl_context=trusting) as pool:
            return [await pool.post(b'{"n": %d}' % i, 2.0) for i in range(2)]

    replies = run(main())
    assert [(status, body, headers.get("x-tls")) for status, headers, body in replies] == [
        (200, b'{"n": 0}', "yes"),
        (200, b'{"n": 1}', "yes"),
    ]
    assert server.connections == 1  # TLS connections are kept alive too
    assert server.requests[0].values("Host") == [f"127.0.0.1:{server.port}"]


def test_tls_read_until_close(serve, certificate):
    server = tls_server(serve, certificate, once(b"HTTP/1.1 200 OK\r\n\r\nto the end", "close"))
    trusting = ssl.create_default_context(cafile=str(certificate[0]))

    async def main():
        async with pool_for(server.url(scheme="https"), (), ssl_context=trusting) as pool:
            return await pool.post(b"{}", 2.0)

    assert run(main())[2] == b"to the end"


def test_tls_with_an_untrusted_certificate_is_a_connection_error(serve, certificate):
    server = tls_server(serve, certificate, replying(ok()))
    error, elapsed = post_failure(server.url(scheme="https"), 2.0)
    assert isinstance(error, EndpointConnectionError)
    assert not isinstance(error, ssl.SSLError)
    assert error.__cause__ is None and error.__suppress_context__
    assert error.retryable is False  # the next attempt would fail the same way
    message = str(error).lower()
    assert "certificate" in message, message
    assert "tls_ca_file" in message and "ssl_cert_file" in message, message  # what to do
    assert f"127.0.0.1:{server.port}" in str(error)
    assert elapsed < 1.5
    assert server.requests == []  # nothing was sent over the unverified connection

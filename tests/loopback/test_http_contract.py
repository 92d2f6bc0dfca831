"""The HTTP contract: every client the package ships, against servers that misbehave as real ones do.

One test per row of issue 10's table (rows 1-3 and 5-10; row 4, credentials in the URL, is
``_wire``'s), each run against every client in ``SHIPPED_HTTP_CLIENTS``: through ``open_session``
and, where the row is about what a user sees (a row's error, its attempts, the log), through the
engine (``LLMEngine`` with ``EngineSettings(http_client=...)``, on ``BlockingEngine``'s loop).
The servers are written here: raw asyncio servers on 127.0.0.1 (or ::1), port 0, each on a loop
thread of its own, writing bytes a test chose, and TLS servers with a throwaway CA (``trustme``).
Every wait is bounded; servers stop with their test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import select
import socket
import ssl
import string
import threading
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from flink_llm_udf import (
    ConfigurationError,
    EngineSettings,
    InvalidOptionError,
    OpenAICompatProvider,
    RowResult,
)
from flink_llm_udf._batch import BlockingEngine
from flink_llm_udf._errors import EndpointConnectionError, EndpointError
from flink_llm_udf._http import SHIPPED_HTTP_CLIENTS, HTTPReply, open_session

PATH = "/v1/chat/completions"
BOUND_S = 20.0  # no client coroutine of a test runs longer than this


# --- servers ----------------------------------------------------------------------------------------
class Conn:
    """The server's side of one accepted connection."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server, self.reader, self.writer = server, reader, writer

    async def read_request(self) -> bytes | None:
        """The next request (head and body), or None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + await self.reader.readexactly(length)
        self.server.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_client_closes(self, timeout: float = 5.0) -> None:
        async def drain() -> None:
            while await self.reader.read(65536):
                pass

        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(drain(), timeout)


Script = Callable[[Conn], Awaitable[None]]


class RawServer:
    """A TCP (or TLS) server on ``host``, port 0, running ``script(conn)`` per connection."""

    def __init__(self, script: Script, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None):
        self.script, self.host, self._ssl = script, host, ssl_context
        self.requests: list[bytes] = []
        self.connections = 0
        self.errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # refused handshakes are the point
        self._thread = threading.Thread(target=self._loop.run_forever, name="raw-server", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    def url(self, path: str = PATH, *, scheme: str = "http", host: str | None = None) -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{name}:{self.port}{path}"

    def start(self) -> RawServer:
        self._thread.start()

        async def listen() -> asyncio.Server:
            return await asyncio.start_server(self._accept, self.host, 0, ssl=self._ssl)

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.script(Conn(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            if self._server is not None:
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    """``serve(script, host=..., ssl_context=...)`` starts a server; all stop after the test."""
    servers: list[RawServer] = []

    def start(script: Script, **kwargs: Any) -> RawServer:
        server = RawServer(script, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    errors = []
    for server in servers:
        server.stop()
        errors += server.errors
    assert not errors, f"a server script failed: {errors!r}"


def reply(body: bytes = b"{}", *headers: str, status: str = "200 OK") -> bytes:
    """A reply framed by Content-Length, with raw ``Name: value`` header lines."""
    head = "\r\n".join([f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"])
    return head.encode() + b"\r\n\r\n" + body


def answering(answer: bytes | Callable[[bytes], bytes], then: str = "keep") -> Script:
    """Answer each request with ``answer`` (or ``answer(request)``); then "keep" serving,
    "close" after the first, or "stall" after the first (until the client goes)."""

    async def script(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            await conn.send(answer(request) if callable(answer) else answer)
            if then == "close":
                return
            if then == "stall":
                await conn.until_client_closes()
                return

    return script


# --- clients ----------------------------------------------------------------------------------------
@pytest.fixture(params=SHIPPED_HTTP_CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "no_proxy",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


class NamesLoop(asyncio.SelectorEventLoop):
    """An event loop whose resolver knows some names (both clients resolve through the loop)."""

    def __init__(self, names: dict[str, list[tuple[Any, ...]]]) -> None:
        super().__init__()
        self.names = names
        self.asked: list[str] = []

    async def getaddrinfo(self, host: Any, port: Any, **kwargs: Any) -> list[tuple[Any, ...]]:  # type: ignore[override]
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.asked.append(name)
        if name in self.names:
            return list(self.names[name])
        return await super().getaddrinfo(host, port, **kwargs)


def run(
    coroutine: Awaitable[Any], loop: asyncio.AbstractEventLoop | None = None, bound: float = BOUND_S
) -> Any:
    loop = loop or asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, bound))
    finally:
        loop.run_until_complete(asyncio.sleep(0.01))  # let closed transports finish
        loop.close()


Outcome = tuple["HTTPReply | EndpointError", float]


async def post(
    url: str,
    client: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    timeout_s: float = 2.0,
    body: bytes = b"{}",
    posts: int = 1,
    **options: Any,
) -> Outcome:
    """Open a session, POST ``posts`` times; the last outcome (reply or EndpointError), its duration."""
    session = open_session(url, headers, 4, client=client, **options)
    try:
        for _ in range(posts):
            began = time.monotonic()
            try:
                outcome: HTTPReply | EndpointError = await session.post(body, timeout_s)
            except EndpointError as exc:
                outcome = exc
        return outcome, time.monotonic() - began
    finally:
        await session.aclose()


def provider(url: str, **options: Any) -> OpenAICompatProvider:
    options.setdefault("error_handling_strategy", "IGNORE")
    return OpenAICompatProvider(endpoint=url, model="m", **options)


def engine_rows(
    provider: OpenAICompatProvider, rows: list[str], client: str, **settings: Any
) -> list[RowResult]:
    """``rows`` through the engine (``LLMEngine`` on its loop thread) with ``http_client=client``."""
    settings.setdefault("request_timeout_s", 2.0)
    with BlockingEngine(provider, EngineSettings(http_client=client, **settings)) as engine:  # type: ignore[arg-type]
        return engine.run_batch(rows, timeout=BOUND_S)


# === 1. the first address drops SYNs, the second answers ============================================
@pytest.fixture
def black_hole() -> Iterator[tuple[Any, ...]]:
    """A ``::1`` (else 127.0.0.1) address whose accept queue is full: the kernel drops further SYNs,
    as a black-holed route or a dead node does. Skips where connecting to it does not hang."""
    family, host = (socket.AF_INET6, "::1") if socket.has_ipv6 else (socket.AF_INET, "127.0.0.1")
    sockets: list[socket.socket] = []
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
        sockets.append(listener)
        listener.bind((host, 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):  # fill the queue (never accepted)
            filler = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(filler)
            filler.setblocking(False)
            filler.connect_ex(address)
        probe = socket.socket(family, socket.SOCK_STREAM)
        sockets.append(probe)
        probe.setblocking(False)
        probe.connect_ex(address)
        _, writable, _ = select.select([], [probe], [], 0.3)
        if writable:
            pytest.skip("a full accept queue does not drop SYNs here: no address that hangs")
        yield (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
    except OSError as exc:
        pytest.skip(f"cannot listen on {host}: {exc}")
    finally:
        for sock in sockets:
            sock.close()


def test_row1_a_dead_first_address_costs_the_happy_eyeballs_delay_not_the_request(serve, client, black_hole):
    server = serve(answering(reply(b'{"ok": 1}')))
    live = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", server.port))
    loop = NamesLoop({"dual.test": [black_hole, live]})
    outcome, elapsed = run(post(server.url(host="dual.test"), client, timeout_s=3.0), loop)
    assert isinstance(outcome, HTTPReply), outcome
    assert outcome.payload == {"ok": 1}
    assert elapsed < 1.5  # the 250 ms delay, not the 3 s timeout
    assert "dual.test" in loop.asked


# === 2. the key, echoed by the server, stays out of every error and log line =========================
_rng = random.Random(10)
KEY = "sk-proj-" + "".join(_rng.choice(string.ascii_letters + string.digits + "_-") for _ in range(156))
KEY_PIECES = {KEY[i : i + 8].lower() for i in range(len(KEY) - 7)}


def leaked(text: str) -> list[str]:
    """The 8-character pieces of ``KEY`` in ``text``, in any case (none, if it was redacted before
    any cut and before any change of case)."""
    lowered = text.lower()
    return sorted(piece for piece in KEY_PIECES if piece in lowered)


def _authorization(request: bytes) -> tuple[bytes, bytes]:
    line = next(line for line in request.split(b"\r\n") if line.lower().startswith(b"authorization:"))
    return line, line.partition(b":")[2].strip()


ECHOES: dict[str, Callable[[bytes, bytes], bytes]] = {
    "status-line": lambda line, value: b"HTTP/1.1 " + line + b"\r\nContent-Length: 0\r\n\r\n",
    "status-reason": lambda line, value: b"HTTP/1.1 401 " + line + b"\r\nContent-Length: 0\r\n\r\n",
    "header-without-colon": lambda line, value: (
        b"HTTP/1.1 200 OK\r\n" + value + b"\r\nContent-Length: 0\r\n\r\n"
    ),
    "header-too-long": lambda line, value: (
        b"HTTP/1.1 200 OK\r\nX-Echo: " + value + b"x" * 9000 + b"\r\nContent-Length: 0\r\n\r\n"
    ),
    "header-control-char": lambda line, value: (
        b"HTTP/1.1 200 OK\r\nX-Echo: " + value + b"\x01\r\nContent-Length: 0\r\n\r\n"
    ),
    "content-encoding": lambda line, value: (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: " + value + b"\r\nContent-Length: 2\r\n\r\n{}"
    ),
    "chunk-size": lambda line, value: (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + value + b"\r\n"
    ),
    "body": lambda line, value: reply(
        json.dumps({"error": {"message": f"bad key {value.decode()} in {line.decode()}"}}).encode(),
        "Content-Type: application/json",
        status="401 Unauthorized",
    ),
}


@pytest.mark.parametrize("echo", list(ECHOES))
def test_row2_a_key_the_server_echoes_is_in_no_error_or_log(serve, client, echo, caplog):
    def answer(request: bytes) -> bytes:
        return ECHOES[echo](*_authorization(request))

    server = serve(answering(answer, then="close"))
    caplog.set_level(logging.DEBUG)
    headers = (("Authorization", f"Bearer {KEY}"), ("Content-Type", "application/json"))
    outcome, _ = run(post(server.url(), client, headers=headers))
    if isinstance(outcome, EndpointError):
        assert not leaked(str(outcome)), str(outcome)
        assert outcome.__context__ is None  # no link to a library error holding the request headers
    results = engine_rows(provider(server.url("/v1"), api_key=KEY), ["row"], client)
    assert results[0].error is not None
    assert not leaked(results[0].error), results[0].error
    assert not leaked(repr(results[0]))
    assert not leaked(caplog.text), caplog.text


# === 3. a path, query or host name that is not plain ASCII goes on the wire encoded ===================
def _request_line_and_host(request: bytes) -> tuple[bytes, bytes]:
    lines = request.split(b"\r\n")
    host = next(line for line in lines if line.lower().startswith(b"host:")).partition(b":")[2].strip()
    return lines[0], host


def test_row3_path_and_query_are_percent_encoded(serve, client):
    server = serve(answering(reply()))
    outcome, _ = run(post(server.url("/v 1/chat?x=a b&y=é&z=%41"), client))
    assert isinstance(outcome, HTTPReply), outcome
    line, host = _request_line_and_host(server.requests[0])
    assert line == b"POST /v%201/chat?x=a+b&y=%C3%A9&z=A HTTP/1.1"
    assert host == f"127.0.0.1:{server.port}".encode()


def test_row3_a_non_ascii_host_name_is_sent_as_idna(serve, client):
    server = serve(answering(reply()))
    local = [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", server.port))]
    loop = NamesLoop({"xn--bcher-kva.test": local, "bücher.test": local})
    outcome, _ = run(post(server.url(host="bücher.test"), client), loop)
    assert isinstance(outcome, HTTPReply), outcome
    assert loop.asked == ["xn--bcher-kva.test"]
    assert _request_line_and_host(server.requests[0])[1] == f"xn--bcher-kva.test:{server.port}".encode()


def test_row3_the_engine_sends_an_encoded_target(serve, client):
    server = serve(answering(reply(b'{"choices": [{"index": 0, "message": {"content": "hi"}}]}')))
    results = engine_rows(provider(server.url("/v 1")), ["row"], client)
    assert results[0].value == "hi", results[0].error
    assert _request_line_and_host(server.requests[0])[0] == b"POST /v%201/chat/completions HTTP/1.1"


# === 5. framing edge cases ==========================================================================
#: Replies no client may read as a reply: each is refused at once.
REFUSED = {
    "length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "chunked-not-last": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "transfer-coding-not-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    + reply(b"ok"),
    "field-too-long": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20_000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "too-many-fields": b"HTTP/1.1 200 OK\r\n" + b"X-N: 1\r\n" * 1000 + b"Content-Length: 2\r\n\r\nok",
}
#: Replies a client may read or refuse, but at once and, if read, right (no hang, no wrong body).
PROMPT = {
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "bare-lf-in-head": b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
}


@pytest.mark.parametrize("case", [*REFUSED, *PROMPT])
def test_row5_framing_edge_cases_end_at_once(serve, client, case):
    server = serve(answering(REFUSED.get(case) or PROMPT[case], then="stall"))
    outcome, elapsed = run(post(server.url(), client, timeout_s=2.0))
    assert elapsed < 1.0, f"{case}: waited for the timeout ({outcome!r})"
    if case in REFUSED or isinstance(outcome, EndpointError):
        assert isinstance(outcome, EndpointConnectionError), outcome
    else:
        assert (outcome.status, outcome.raw) == (200, b"ok")


@pytest.mark.parametrize("value", ["v\x01", "v\x7f", "v\r\nX-Injected: 1", "v\n", "v\0"])
def test_row5_control_characters_in_a_request_header_are_refused_at_open(client, value):
    secret = "sk-proj-0123456789abcdefghij"

    async def main() -> None:
        open_session("http://127.0.0.1:9/v1", (("X-Api-Key", secret + value),), 4, client=client)

    with pytest.raises(InvalidOptionError) as caught:
        run(main())
    assert "X-Api-Key" in str(caught.value)
    assert secret not in str(caught.value)


# === 6. an endless chunk-size line ==================================================================
def test_row6_an_endless_chunk_size_line_costs_little_cpu(serve, client):
    async def endless(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;")
        piece = b"x" * 1024
        for _ in range(16 * 1024):  # 16 MB of one chunk extension, in small writes
            await conn.send(piece)
        await conn.until_client_closes()

    server = serve(endless)

    async def main() -> tuple[Any, float, float]:
        cpu = time.thread_time()
        outcome, elapsed = await post(server.url(), client, timeout_s=2.0)
        return outcome, elapsed, time.thread_time() - cpu

    outcome, elapsed, cpu = run(main())
    assert isinstance(outcome, EndpointError), outcome
    assert elapsed < 2.0 + 1.0
    assert cpu < 0.5, f"{cpu:.2f} s of CPU in {elapsed:.2f} s"


# === 7. a large reply leaves nothing on the kept-alive connection ===================================
def test_row7_an_idle_kept_alive_connection_holds_no_reply_bytes(serve, client):
    size = 13 * 1024 * 1024
    large = reply(b"x" * size)
    server = serve(answering(lambda request: large if len(server.requests) == 1 else reply(b"small")))

    async def main() -> tuple[int, int]:
        session = open_session(server.url(), (), 4, client=client)
        try:
            gc.collect()
            tracemalloc.start()
            try:
                first = await session.post(b"{}", 5.0)
                assert len(first.raw) == size
                del first
                await asyncio.sleep(0)  # off the loop step that handed the reply over (it refers to it)
                gc.collect()
                held, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            second = await session.post(b"{}", 5.0)
            assert second.raw == b"small"
            return held, server.connections
        finally:
            await session.aclose()

    held, connections = run(main())
    assert connections == 1  # the connection was kept alive and reused
    assert held < 1024 * 1024, f"{held} bytes still held after the reply was handed over"


# === 8. a certificate that does not verify is not retried, and the error says what to do ============
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_server(serve: Callable[..., RawServer], ca: trustme.CA, *names: str) -> RawServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(context)
    return serve(
        answering(reply(b'{"choices": [{"index": 0, "message": {"content": "tls"}}]}')), ssl_context=context
    )


@pytest.mark.parametrize("failure", ["untrusted-ca", "other-host-name"])
def test_row8_certificate_failures_are_not_retried(serve, client, ca, ca_file, failure):
    if failure == "untrusted-ca":
        server, options = tls_server(serve, trustme.CA()), {"tls_ca_file": ca_file}
    else:
        server, options = tls_server(serve, ca, "other.example"), {"tls_ca_file": ca_file}
    outcome, elapsed = run(post(server.url(scheme="https"), client, **options))
    assert isinstance(outcome, EndpointConnectionError), outcome
    assert outcome.retryable is False
    message = str(outcome)
    assert "certificate" in message.lower() and f"127.0.0.1:{server.port}" in message
    assert "tls_ca_file" in message and "SSL_CERT_FILE" in message  # what to do
    assert elapsed < 1.5
    assert server.requests == []
    retrying = provider(
        server.url("/v1", scheme="https"),
        error_handling_strategy="RETRY",
        retry_num=3,
        retry_backoff_base_interval="10ms",
        retry_fallback_strategy="IGNORE",
    )
    results = engine_rows(retrying, ["row"], client, **options)
    assert results[0].attempts == 1
    assert "tls_ca_file" in (results[0].error or "")


# === 9. a private CA: tls_ca_file, or SSL_CERT_FILE, on top of the system's CAs ======================
def test_row9_tls_ca_file_trusts_a_private_ca(serve, client, ca, ca_file):
    server = tls_server(serve, ca)
    outcome, _ = run(post(server.url(scheme="https"), client, tls_ca_file=ca_file, posts=2))
    assert isinstance(outcome, HTTPReply), outcome
    assert server.connections == 1  # TLS connections are kept alive too
    results = engine_rows(provider(server.url("/v1", scheme="https")), ["a"], client, tls_ca_file=ca_file)
    assert results[0].value == "tls", results[0].error


def test_row9_ssl_cert_file_still_works_and_adds_to_tls_ca_file(
    serve, client, ca, ca_file, monkeypatch, tmp_path
):
    other = trustme.CA()
    other_file = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(other_file))
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # stands in for the system's store
    by_env, by_option = tls_server(serve, ca), tls_server(serve, other)
    for server in (by_env, by_option):
        outcome, _ = run(post(server.url(scheme="https"), client, tls_ca_file=str(other_file)))
        assert isinstance(outcome, HTTPReply), (server, outcome)


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n", "directory"])
def test_row9_an_unusable_tls_ca_file_is_a_configuration_error_at_open(client, tmp_path, content):
    path = tmp_path / "ca.pem"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)

    async def main() -> None:
        open_session("https://127.0.0.1:9/v1", (), 4, client=client, tls_ca_file=str(path))

    with pytest.raises(ConfigurationError, match="tls_ca_file"):
        run(main())


# === 10. a reply that inflates past the cap ==========================================================
@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """About 0.5 MB of gzip that inflates to 500 MB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join(compressor.compress(zeros) for _ in range(500)) + compressor.flush()


def test_row10_a_gzip_bomb_ends_at_the_cap_without_blocking_the_loop(serve, client, gzip_bomb):
    server = serve(answering(reply(gzip_bomb, "Content-Encoding: gzip"), then="stall"))

    async def main() -> tuple[Any, float, float, int]:
        gaps = [0.0]

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.ensure_future(ticker())
        gc.collect()
        tracemalloc.start()
        try:
            outcome, elapsed = await post(server.url(), client, timeout_s=15.0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            ticking.cancel()
        return outcome, elapsed, max(gaps), peak

    outcome, elapsed, longest_gap, peak = run(main())
    assert isinstance(outcome, EndpointError), outcome
    assert outcome.retryable is False
    assert "max_reply_bytes=67108864" in str(outcome), str(outcome)
    assert elapsed < 10.0
    assert peak < 256 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    assert longest_gap < 0.3, f"the loop was blocked for {longest_gap:.2f} s"


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
def test_row10_a_reply_over_max_reply_bytes_is_a_row_error_not_retried(serve, client, framing):
    body = json.dumps({"choices": [{"index": 0, "message": {"content": "x" * (2 * 1024 * 1024)}}]}).encode()
    if framing == "content-length":
        answer, then = reply(body), "keep"
    elif framing == "chunked":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:1000], body[1000:]))
        answer, then = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n",
            "keep",
        )
    else:
        answer, then = b"HTTP/1.1 200 OK\r\n\r\n" + body, "close"
    server = serve(answering(answer, then=then))
    outcome, _ = run(post(server.url(), client, max_reply_bytes=1024 * 1024))
    assert isinstance(outcome, EndpointError), outcome
    assert outcome.retryable is False
    assert "max_reply_bytes=1048576" in str(outcome)
    retrying = provider(
        server.url("/v1"),
        error_handling_strategy="RETRY",
        retry_num=3,
        retry_backoff_base_interval="10ms",
        retry_fallback_strategy="IGNORE",
    )
    results = engine_rows(retrying, ["row"], client, max_reply_bytes=1024 * 1024)
    assert results[0].attempts == 1
    assert "max_reply_bytes" in (results[0].error or "")

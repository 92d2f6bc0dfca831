"""A replay endpoint: answers every request with one reply recorded from the simulator.

Why: the ``engine-cpu`` case measures the engine's CPU per row, so the endpoint must not be the
bottleneck. The simulator (aiohttp) spends more CPU per request than the engine; against it the
engine sleeps between replies and wakes once per reply, and on a VM each wake-up costs CPU of
its own that would be counted as the engine's. Replaying recorded bytes costs next to nothing
per request, so the engine runs flat out and its CPU per row is its own. The engine does the
same work per row either way: encode the body, send it, read and parse the same reply bytes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from typing import cast
from urllib.parse import urlsplit

from flink_llm_udf._batch import LoopThread

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)", re.IGNORECASE)
_FRAMING = ("transfer-encoding", "content-length", "connection")


def record_reply(url: str, body: dict, timeout_s: float = 10.0) -> bytes:
    """POST ``body`` to ``url`` once; the whole reply as bytes, Content-Length framed."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"recording a reply: no host in {url!r}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        connection.request(
            "POST", parts.path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"recording a reply: HTTP {response.status}: {payload[:200]!r}")
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _FRAMING]
    finally:
        connection.close()
    head = [
        f"HTTP/1.1 {response.status} {response.reason}",
        *(f"{k}: {v}" for k, v in headers),
        f"Content-Length: {len(payload)}",
    ]
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + payload


class _ReplayProtocol(asyncio.Protocol):
    """Reads requests (head + Content-Length body) and writes the recorded reply for each."""

    def __init__(self, server: ReplayServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's protocol always gets a (read-write) Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None  # data arrives only after connection_made
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            size = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < size:
                return
            self.buffer = self.buffer[size:]
            self.server.requests += 1
            self.transport.write(self.server.reply)


class ReplayServer:
    """Serves ``reply`` to every request on 127.0.0.1, from a loop thread of its own."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.requests = 0
        self._loop: LoopThread | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ReplayServer:
        self._loop = LoopThread(name="bench-replay")

        async def listen() -> asyncio.Server:
            loop = asyncio.get_running_loop()
            return await loop.create_server(lambda: _ReplayProtocol(self), "127.0.0.1", 0)

        self._server = self._loop.run(listen(), timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        server, self._server = self._server, None

        async def close() -> None:
            if server is not None:
                server.close()  # the engine's connections end with its process

        try:
            self._loop.run(close(), timeout=10)
        finally:
            self._loop.stop()
            self._loop = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = ["ReplayServer", "record_reply"]

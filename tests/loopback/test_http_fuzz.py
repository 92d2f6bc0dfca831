"""A property-based fuzz of reply handling, for every client the package ships.

Replies are built from valid pieces (a status, headers, Content-Length / chunked / read-until-close
framing, gzip or deflate bodies, an interim 100 Continue), then sent as they are, split across
many writes, truncated, or garbled, by a raw server on 127.0.0.1 that then closes, stalls or keeps
the connection. Whatever arrives, ``post`` ends within its (short) timeout, with a correct
``HTTPReply`` or an ``EndpointError`` and nothing else; an intact reply is read exactly, twice
over one kept-alive connection when the server keeps it.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flink_llm_udf._errors import EndpointError
from flink_llm_udf._http import SHIPPED_HTTP_CLIENTS, HTTPReply, open_session

TIMEOUT_S = 0.3  # each example's request timeout
SLACK_S = 1.0  # how far past it a post may end (a loaded machine)
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 429: "Too Many", 503: "Busy"}


@dataclass
class Reply:
    """A valid reply and what a client must read from it."""

    wire: bytes
    status: int
    body: bytes
    until_close: bool  # its body ends only when the server closes


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    status = draw(st.sampled_from(sorted(REASONS)))
    body = b"" if status == 204 else draw(st.binary(max_size=400) | st.just(b'{"choices": []}'))
    encoding = None if status == 204 else draw(st.sampled_from([None, "gzip", "deflate", "identity"]))
    encoded = body
    if encoding == "gzip":
        encoded = gzip.compress(body)
    elif encoding == "deflate":
        encoded = zlib.compress(body)
    names = st.sampled_from(
        ["X-Request-Id", "Retry-After", "Set-Cookie", "Content-Type", "Keep-Alive", "Server"]
    )
    values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
    headers = [f"{name}: {value}" for name, value in draw(st.lists(st.tuples(names, values), max_size=6))]
    if encoding is not None:
        headers.append(f"Content-Encoding: {encoding}")
    framing = "none" if status == 204 else draw(st.sampled_from(["length", "chunked", "close"]))
    if framing == "length":
        headers.append(f"Content-Length: {len(encoded)}")
        payload = encoded
    elif framing == "chunked":
        headers.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(encoded)), max_size=4)))
        pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True) if b > a]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    else:
        payload = encoded
    head = "\r\n".join([f"HTTP/1.1 {status} {REASONS[status]}", *headers]).encode() + b"\r\n\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    return Reply(interim + head + payload, status, body, framing == "close")


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[Reply, str, list[bytes], str]:
    """A reply, what was done to it, the writes that carry it, and what the server does after."""
    reply = draw(replies())
    wire = reply.wire
    mutation = draw(st.sampled_from(["none", "split", "truncate", "garble", "insert"]))
    if mutation == "truncate":
        wire = wire[: draw(st.integers(0, max(0, len(wire) - 1)))]
    elif mutation == "garble":
        data = bytearray(wire)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        wire = bytes(data)
    elif mutation == "insert":
        at = draw(st.integers(0, len(wire)))
        wire = wire[:at] + draw(st.binary(min_size=1, max_size=20)) + wire[at:]
    writes = [wire]
    if mutation != "none" and wire:
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=8))))
        writes = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if b > a]
    after = draw(st.sampled_from(["close", "stall", "keep"]))
    return reply, mutation, writes, after


async def exchange(client: str, writes: list[bytes], after: str, posts: int) -> list[object]:
    """``posts`` requests through one session to a server that answers each with ``writes``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)  # the body, b"{}"
                for piece in writes:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                if after == "close":
                    break
                if after == "stall":
                    await reader.read()  # until the client goes
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    session = open_session(f"http://127.0.0.1:{port}/v1", (), 2, client=client)
    outcomes: list[object] = []
    try:
        for _ in range(posts):
            began = time.monotonic()
            try:
                outcome: object = await session.post(b"{}", TIMEOUT_S)
            except EndpointError as exc:
                outcome = exc
            except BaseException as exc:  # anything else escaping post fails the property
                outcome = ("escaped", repr(exc))
            elapsed = time.monotonic() - began
            assert elapsed < TIMEOUT_S + SLACK_S, f"post took {elapsed:.2f} s"
            outcomes.append(outcome)
            if not isinstance(outcome, HTTPReply):
                break
    finally:
        await session.aclose()
        server.close()
        await asyncio.sleep(0)
    return outcomes


@pytest.mark.parametrize("client", SHIPPED_HTTP_CLIENTS)
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery=deliveries())
def test_replies_split_truncated_or_garbled_end_in_time_as_a_reply_or_an_endpoint_error(client, delivery):
    reply, mutation, writes, after = delivery
    posts = 2 if after == "keep" else 1
    outcomes = asyncio.run(asyncio.wait_for(exchange(client, writes, after, posts), posts * (TIMEOUT_S + 3)))
    for outcome in outcomes:
        assert isinstance(outcome, (HTTPReply, EndpointError)), outcome
    intact = mutation in ("none", "split") and (not reply.until_close or after == "close")
    if intact:
        first = outcomes[0]
        assert isinstance(first, HTTPReply), first
        assert (first.status, first.raw) == (reply.status, reply.body)
        for later in outcomes[1:]:
            assert isinstance(later, HTTPReply) and later.raw == reply.body, later

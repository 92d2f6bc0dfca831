"""The bench's replay endpoint: one reply recorded from the simulator, served for every request."""

from __future__ import annotations

import socket

import pytest

from flink_llm_udf import OpenAICompatProvider
from flink_llm_udf._batch import BlockingEngine
from flink_llm_udf._engine import EngineSettings
from flink_llm_udf.simulator import SimulatorThread
from flink_llm_udf.tools.bench.replay import ReplayServer, record_reply

BODY = {"model": "sim-model", "messages": [{"role": "user", "content": "recorded row"}]}


@pytest.fixture(scope="module")
def recorded() -> bytes:
    with SimulatorThread() as sim:
        return record_reply(sim.base_url + "/chat/completions", BODY)


def test_the_recorded_reply_is_the_simulators_answer_framed_by_content_length(recorded):
    head, _, body = recorded.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert f"Content-Length: {len(body)}" in lines
    assert not any(line.lower().startswith(("transfer-encoding", "connection")) for line in lines)
    assert b'"content": "ANSWER[recorded row]"' in body


def test_a_failed_recording_names_the_status():
    with (
        SimulatorThread(api_key="sk-replay-test-0123456789") as sim,  # no key sent: 401
        pytest.raises(RuntimeError, match="HTTP 401"),
    ):
        record_reply(sim.base_url + "/chat/completions", BODY)


def test_the_engine_gets_the_recorded_reply_for_every_row_on_kept_alive_connections(recorded):
    with ReplayServer(recorded) as replay:
        provider = OpenAICompatProvider(endpoint=replay.base_url, model="m")
        with BlockingEngine(provider, EngineSettings(max_concurrency=8)) as engine:
            results = engine.run_batch([f"row {i}" for i in range(300)])
        assert [r.value for r in results] == ["ANSWER[recorded row]"] * 300
        assert replay.requests == 300


def test_requests_split_across_reads_and_back_to_back_are_each_answered(recorded):
    body = b'{"messages": []}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    )
    with ReplayServer(recorded) as replay, socket.create_connection(("127.0.0.1", replay.port), 5) as sock:
        for piece in (request[:7], request[7:40], request[40:-3], request[-3:] + request + request):
            sock.sendall(piece)
        received = b""
        while len(received) < 3 * len(recorded):  # bounded: recv times out after 5 s
            chunk = sock.recv(65536)
            assert chunk, "the replay server closed the connection"
            received += chunk
        assert received == recorded * 3 and replay.requests == 3

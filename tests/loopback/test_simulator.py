"""The simulator over real HTTP on 127.0.0.1: replies, limits, faults, admin, runners."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import pytest

from flink_llm_udf.simulator import (
    SimulatorConfig,
    SimulatorProcess,
    SimulatorThread,
    expected_chat_reply,
    expected_embedding,
    main,
)

Response = tuple[int, dict[str, str], Any]


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(record_requests=True) as server:
        yield server


def request(
    url: str,
    payload: Any = None,
    *,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Response:
    """One blocking request; returns status, headers and the JSON (or text) body."""
    data = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, head, body = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, head, body = exc.code, dict(exc.headers), exc.read()
    try:
        return status, head, json.loads(body)
    except ValueError:
        return status, head, body.decode()


def chat(sim: Any, *texts: str, **extra: Any) -> Response:
    messages = [{"role": "user", "content": t} for t in texts]
    headers = extra.pop("headers", None)
    return request(
        sim.base_url + "/chat/completions",
        {"model": "sim-model", "messages": messages, **extra},
        headers=headers,
    )


def chat_body(text: str) -> dict[str, Any]:
    return {"model": "sim-model", "messages": [{"role": "user", "content": text}]}


async def _post_many(
    url: str, payloads: Sequence[Any], *, timeout: float = 20.0, concurrency: int = 0
) -> list[Response | BaseException]:
    """POST every payload at once (or ``concurrency`` at a time); exceptions are returned."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:

        async def one(payload: Any) -> Response:
            async with session.post(url, json=payload) as resp:
                return resp.status, dict(resp.headers), await resp.read()

        return await asyncio.gather(*(one(p) for p in payloads), return_exceptions=True)


def post_many(url: str, payloads: Sequence[Any], **kwargs: Any) -> list[Response | BaseException]:
    return asyncio.run(_post_many(url, payloads, **kwargs))


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# ------------------------------------------------------------------------- replies


def test_chat_reply_format_and_usage(sim: SimulatorThread) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "the row text"},
        {"role": "user", "content": "Summarize it"},
    ]
    status, _, body = request(
        sim.base_url + "/chat/completions", {"model": "any-model", "messages": messages, "seed": 7}
    )
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "any-model"
    assert body["system_fingerprint"] == "fp_sim_seed_7"
    (choice,) = body["choices"]
    content = choice["message"]["content"]
    assert content == expected_chat_reply(messages) == "ANSWER[the row text] PROMPT[Summarize it]"
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def test_content_parts_with_image(sim: SimulatorThread) -> None:
    parts = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
    ]
    status, _, body = chat(sim, parts)  # type: ignore[arg-type]
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "ANSWER[describe data:image/png;base64,AAA]"


def test_n_choices_are_distinct_and_deterministic(sim: SimulatorThread) -> None:
    _, _, body = chat(sim, "q", n=3)
    contents = [c["message"]["content"] for c in body["choices"]]
    assert contents == ["ANSWER[q]", "ANSWER[q] #1", "ANSWER[q] #2"]
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 5


def test_max_tokens_cuts_words(sim: SimulatorThread) -> None:
    _, _, body = chat(sim, "one two three four", max_tokens=2)
    choice = body["choices"][0]
    assert choice["message"]["content"] == "ANSWER[one two"
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_stop_cuts_before_sequence(sim: SimulatorThread) -> None:
    _, _, body = chat(sim, "alpha beta gamma", stop=["gamma", "beta"])
    assert body["choices"][0]["message"]["content"] == "ANSWER[alpha "
    assert body["choices"][0]["finish_reason"] == "stop"


def test_json_object_response_format(sim: SimulatorThread) -> None:
    _, _, body = chat(sim, 'row "7"', response_format={"type": "json_object"})
    content = json.loads(body["choices"][0]["message"]["content"])
    assert content == {"answer": 'ANSWER[row "7"]', "input": 'row "7"'}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}, "max_tokens"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": 3}, "stop"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "yaml"},
            },
            "response_format",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "[sim:nope] x"}]}, "messages"),
    ],
)
def test_invalid_chat_requests_get_openai_400(sim: SimulatorThread, payload: dict, param: str) -> None:
    status, _, body = request(sim.base_url + "/chat/completions", payload)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_bad_json_is_400(sim: SimulatorThread) -> None:
    status, _, body = request(sim.base_url + "/chat/completions", raw=b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


def test_unknown_v1_path_is_openai_404(sim: SimulatorThread) -> None:
    status, _, body = request(sim.base_url + "/completions", {"model": "m"})
    assert status == 404 and body["error"]["code"] == "unknown_url"


def test_embeddings_single_and_multi_input(sim: SimulatorThread) -> None:
    url = sim.base_url + "/embeddings"
    status, _, body = request(url, {"model": "emb", "input": "hello world"})
    assert status == 200 and body["object"] == "list" and body["model"] == "emb"
    assert body["data"] == [
        {"object": "embedding", "index": 0, "embedding": expected_embedding("hello world")}
    ]
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}

    inputs = ["a", "b c", "a"]
    _, _, body = request(url, {"model": "emb", "input": inputs, "dimensions": 5})
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert [d["embedding"] for d in body["data"]] == [expected_embedding(t, 5) for t in inputs]
    assert body["usage"]["prompt_tokens"] == 4


def test_embeddings_base64_encoding(sim: SimulatorThread) -> None:
    _, _, body = request(
        sim.base_url + "/embeddings", {"model": "emb", "input": "x", "encoding_format": "base64"}
    )
    raw = base64.b64decode(body["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(expected_embedding("x"), abs=1e-6)


def test_embeddings_default_dimensions_configurable() -> None:
    with SimulatorThread(embedding_dimensions=7) as server:
        _, _, body = request(server.base_url + "/embeddings", {"model": "e", "input": "x"})
    assert body["data"][0]["embedding"] == expected_embedding("x", 7)


def test_invalid_embeddings_input_is_400(sim: SimulatorThread) -> None:
    status, _, body = request(sim.base_url + "/embeddings", {"model": "e", "input": [1, 2]})
    assert status == 400 and body["error"]["param"] == "input"


def test_models_list() -> None:
    with SimulatorThread(models=("gpt-sim", "emb-sim")) as server:
        status, _, body = request(server.base_url + "/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gpt-sim", "emb-sim"]


# ---------------------------------------------------------------- auth and limits


def test_api_key_required_and_masked_in_recording() -> None:
    with SimulatorThread(api_key="sk-test", record_requests=True) as server:
        status, _, body = chat(server, "x")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        status, _, body = chat(server, "x", headers={"Authorization": "Bearer wrong"})
        assert status == 401 and "sk-test" not in json.dumps(body)
        status, _, body = chat(server, "x", headers={"Authorization": "Bearer sk-test"})
        assert status == 200
        assert request(server.base_url + "/models")[0] == 401
        # admin endpoints are never key-protected
        stats = request(server.admin_url + "/sim/stats?requests=1")[2]
    assert stats["by_status"] == {"401": 3, "200": 1}
    assert [r["headers"].get("authorization") for r in stats["requests"]] == [None, ["***"], ["***"], None]
    assert "sk-test" not in json.dumps(stats)


def test_context_length_exceeded() -> None:
    with SimulatorThread(context_window=10) as server:
        assert chat(server, "short prompt")[0] == 200
        status, _, body = chat(server, "word " * 50)
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["param"] == "messages"
    assert body["error"]["message"].startswith("This model's maximum context length is 10 tokens")


def test_capacity_429_with_retry_after_under_concurrency() -> None:
    with SimulatorThread(
        max_in_flight=2, latency_ms=300, retry_after_s=2, retry_after_ms_header=True
    ) as server:
        results = post_many(server.base_url + "/chat/completions", [chat_body(f"row {i}") for i in range(10)])
        stats = server.stats()
    statuses = sorted(r[0] for r in results)  # type: ignore[index]
    assert statuses == [200] * 2 + [429] * 8
    for status, headers, body in results:  # type: ignore[misc]
        if status == 429:
            assert headers["Retry-After"] == "2" and headers["retry-after-ms"] == "2000"
            assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert stats["max_in_flight"] == 2 and stats["rejected"] == {"max_in_flight": 8}


def test_rate_per_minute_429_until_window_rolls() -> None:
    with SimulatorThread(rate_per_minute=3) as server:
        results = [chat(server, f"r{i}") for i in range(5)]
    assert [r[0] for r in results] == [200, 200, 200, 429, 429]
    assert 1 <= int(results[3][1]["Retry-After"]) <= 60
    assert results[4][2]["error"]["code"] == "rate_limit_exceeded"


def test_max_in_flight_stat_under_50_concurrent() -> None:
    with SimulatorThread(latency_ms=400) as server:
        results = post_many(server.base_url + "/chat/completions", [chat_body(f"row {i}") for i in range(50)])
        stats = server.stats()
    assert all(r[0] == 200 for r in results)  # type: ignore[index]
    assert stats["max_in_flight"] == 50 and stats["in_flight"] == 0
    assert stats["requests_total"] == 50
    assert stats["by_path"] == {"/v1/chat/completions": 50}


# ----------------------------------------------------------- input-directed faults


def test_directive_status(sim: SimulatorThread) -> None:
    for _ in range(2):
        status, _, body = chat(sim, "[sim:status=404] row")
        assert status == 404 and body["error"]["code"] == "model_not_found"
    assert sim.stats()["faults"] == {"directive_status_404": 2}


def test_directive_fail_n_then_succeed(sim: SimulatorThread) -> None:
    text = "[sim:fail=3,status=503] row 8"
    statuses = [chat(sim, text)[0] for _ in range(5)]
    assert statuses == [503, 503, 503, 200, 200]
    assert chat(sim, text)[2]["choices"][0]["message"]["content"] == expected_chat_reply(
        [{"role": "user", "content": text}]
    )
    assert chat(sim, "[sim:fail=3,status=503] row 9")[0] == 503  # counted per exact text
    assert sim.stats()["attempts"] == {text: 6, "[sim:fail=3,status=503] row 9": 1}
    sim.reset()
    assert chat(sim, text)[0] == 503


def test_directive_failure_headers(sim: SimulatorThread) -> None:
    _, headers, _ = chat(sim, "[sim:status=503,retry_after=2,retry_after_ms=150,should_retry=false] x")
    assert headers["Retry-After"] == "2"
    assert headers["retry-after-ms"] == "150"
    assert headers["x-should-retry"] == "false"
    _, headers, _ = chat(sim, "[sim:status=429] x")
    assert "Retry-After" not in headers  # directives add only the headers they name


def test_directive_reset(sim: SimulatorThread) -> None:
    (result,) = post_many(sim.base_url + "/chat/completions", [chat_body("[sim:reset] x")])
    assert isinstance(result, aiohttp.ClientError)
    assert chat(sim, "still serving")[0] == 200
    assert sim.stats()["faults"] == {"directive_reset": 1}


def test_directive_malformed(sim: SimulatorThread) -> None:
    status, _, body = chat(sim, "[sim:malformed] x")
    assert status == 200 and isinstance(body, str)  # not JSON
    status, _, body = chat(sim, "[sim:malformed=shape] x")
    assert status == 200 and "choices" not in body


def test_directive_hang_lets_client_time_out_without_blocking_others(sim: SimulatorThread) -> None:
    async def scenario() -> tuple[Any, int]:
        timeout = aiohttp.ClientTimeout(total=0.5)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def hung() -> Any:
                try:
                    async with session.post(
                        sim.base_url + "/chat/completions", json=chat_body("[sim:hang] x")
                    ) as resp:
                        return resp.status
                except asyncio.TimeoutError as exc:
                    return exc

            async def normal() -> int:
                await asyncio.sleep(0.1)
                async with session.post(sim.base_url + "/chat/completions", json=chat_body("y")) as resp:
                    return resp.status

            return await asyncio.gather(hung(), normal())

    started = time.monotonic()
    hung, normal = asyncio.run(scenario())
    assert isinstance(hung, asyncio.TimeoutError) and normal == 200
    assert time.monotonic() - started < 5
    wait_until(lambda: sim.stats()["in_flight"] == 0)  # the abandoned handler was cancelled


def test_directive_hang_with_seconds_then_answers(sim: SimulatorThread) -> None:
    started = time.monotonic()
    status, _, _ = chat(sim, "[sim:hang=0.3] x")
    assert status == 200 and time.monotonic() - started >= 0.3


def test_directive_slow(sim: SimulatorThread) -> None:
    started = time.monotonic()
    assert chat(sim, "[sim:slow=300] x")[0] == 200
    assert time.monotonic() - started >= 0.3


def test_directive_in_embedding_input(sim: SimulatorThread) -> None:
    url = sim.base_url + "/embeddings"
    payload = {"model": "e", "input": ["ok", "[sim:fail=1,status=500] bad"]}
    assert request(url, payload)[0] == 500
    status, _, body = request(url, payload)
    assert status == 200 and len(body["data"]) == 2


# -------------------------------------------------------------------- random faults


def test_fault_500_rate_one_fails_everything() -> None:
    with SimulatorThread(fault_500=1.0) as server:
        results = [chat(server, f"r{i}") for i in range(5)]
        stats = server.stats()
    assert {r[0] for r in results} == {500}
    assert results[0][2]["error"]["type"] == "server_error"
    assert stats["faults"] == {"fault_500": 5}


def test_random_faults_repeat_with_seed() -> None:
    with SimulatorThread(fault_503=0.5, seed=42) as server:
        first = [chat(server, f"r{i}")[0] for i in range(20)]
        server.reset()  # reseeds
        second = [chat(server, f"r{i}")[0] for i in range(20)]
    assert first == second and set(first) == {200, 503}


def test_fault_429_has_retry_after() -> None:
    with SimulatorThread(fault_429=1.0, retry_after_s=0.25) as server:
        status, headers, body = chat(server, "x")
    assert status == 429 and headers["Retry-After"] == "0.25"
    assert body["error"]["code"] == "rate_limit_exceeded"


def test_fault_reset_and_malformed_rates() -> None:
    with SimulatorThread(fault_reset=1.0) as server:
        results = post_many(server.base_url + "/chat/completions", [chat_body(f"r{i}") for i in range(3)])
    assert all(isinstance(r, aiohttp.ClientError) for r in results)
    with SimulatorThread(fault_malformed=1.0) as server:
        for i in range(6):
            status, _, body = chat(server, f"r{i}")
            assert status == 200 and (isinstance(body, str) or "choices" not in body)


def test_fault_timeout_delays_then_answers() -> None:
    with SimulatorThread(fault_timeout=1.0, timeout_hang_s=0.3) as server:
        started = time.monotonic()
        assert chat(server, "x")[0] == 200
        assert time.monotonic() - started >= 0.3
        assert server.stats()["faults"] == {"fault_timeout": 1}


# ---------------------------------------------------------------------- admin


def test_recorded_requests_keep_headers_and_bodies(sim: SimulatorThread) -> None:
    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            headers = [("X-Tag", "a"), ("X-Tag", "b"), ("Authorization", "Bearer k")]
            async with session.post(
                sim.base_url + "/chat/completions", json=chat_body("r"), headers=headers
            ) as resp:
                assert resp.status == 200

    asyncio.run(send())
    (record,) = sim.stats(include_requests=True)["requests"]
    assert record["headers"]["x-tag"] == ["a", "b"]
    assert record["headers"]["authorization"] == ["***"]
    assert record["body"] == chat_body("r")
    assert record["path"] == "/v1/chat/completions" and record["method"] == "POST"
    assert record["status"] == 200 and record["time"] > 0
    assert "requests" not in sim.stats()


def test_record_limit_bounds_recording() -> None:
    with SimulatorThread(record_requests=True, record_limit=2) as server:
        for i in range(4):
            chat(server, f"r{i}")
        stats = server.stats(include_requests=True)
    assert len(stats["requests"]) == 2 and stats["recorded_dropped"] == 2


def test_recorded_requests_name_their_fault_and_have_no_status_when_nothing_was_answered() -> None:
    """What a soak counts good replies by: status 200 and no fault (a malformed body is a 200 too);
    a reset, or a request whose client gave up before the answer, was never answered."""
    with SimulatorThread(record_requests=True, timeout_hang_s=5.0) as server:
        chat(server, "plain")
        chat(server, "[sim:status=503] down")
        chat(server, "[sim:malformed] broken")
        (reset,) = post_many(server.base_url + "/chat/completions", [chat_body("[sim:reset] gone")])
        server.update(fault_timeout=1.0)
        (gave_up,) = post_many(server.base_url + "/chat/completions", [chat_body("slow")], timeout=0.3)
        wait_until(lambda: server.stats()["in_flight"] == 0)  # the hung handler was cancelled
        stats = server.stats(include_requests=True)
    assert isinstance(reset, aiohttp.ClientError) and isinstance(gave_up, asyncio.TimeoutError)
    got = [(r["body"]["messages"][0]["content"], r["status"], r["fault"]) for r in stats["requests"]]
    assert got == [
        ("plain", 200, None),
        ("[sim:status=503] down", 503, "directive_status_503"),
        ("[sim:malformed] broken", 200, "directive_malformed"),
        ("[sim:reset] gone", None, "directive_reset"),
        ("slow", None, "fault_timeout"),
    ]
    assert stats["by_status"] == {"200": 2, "503": 1}


def test_admin_reset_and_config_over_http(sim: SimulatorThread) -> None:
    chat(sim, "x")
    admin = sim.admin_url
    assert request(admin + "/health")[2] == {"status": "ok"}
    status, _, config = request(admin + "/sim/config", {"fault_503": 1.0, "latency_ms": 5})
    assert status == 200 and config["fault_503"] == 1.0 and config["latency_ms"] == 5
    assert chat(sim, "x")[0] == 503
    status, _, body = request(admin + "/sim/config", {"port": 1})
    assert status == 400 and "port" in body["error"]["message"]
    assert request(admin + "/sim/config", {"fault_503": 2})[0] == 400
    assert request(admin + "/sim/reset", {})[0] == 200
    stats = request(admin + "/sim/stats")[2]
    assert stats["requests_total"] == 0 and stats["by_status"] == {} and stats["faults"] == {}
    assert stats["config"]["fault_503"] == 1.0


def test_thread_update_changes_behaviour(sim: SimulatorThread) -> None:
    sim.update(api_key="k2")
    assert chat(sim, "x")[0] == 401
    sim.update(api_key=None)
    assert chat(sim, "x")[0] == 200
    with pytest.raises(ValueError):
        sim.update(nonsense=1)
    with pytest.raises(ValueError):
        sim.update(max_in_flight="3")


def test_context_window_can_be_enabled_at_runtime(sim: SimulatorThread) -> None:
    sim.update(context_window=3)
    assert chat(sim, "a b c d e f g h")[2]["error"]["code"] == "context_length_exceeded"


# -------------------------------------------------------------------- runners


def test_simulator_process_start_stop_and_stats() -> None:
    with SimulatorProcess(SimulatorConfig(api_key="sk-proc"), latency_ms=1) as proc:
        assert proc.base_url.startswith("http://127.0.0.1:")
        assert chat(proc, "x")[0] == 401
        status, _, body = chat(proc, "x", headers={"Authorization": "Bearer sk-proc"})
        assert status == 200 and body["choices"][0]["message"]["content"] == "ANSWER[x]"
        stats = proc.stats()
        assert stats["by_status"] == {"401": 1, "200": 1}
        assert stats["config"]["latency_ms"] == 1
        proc.update(fault_500=1.0)
        assert chat(proc, "y", headers={"Authorization": "Bearer sk-proc"})[0] == 500
        with pytest.raises(ValueError):
            proc.update(fault_500=3)
        proc.reset()
        assert proc.stats()["requests_total"] == 0
        child = proc._proc
    assert child is not None and child.returncode == 0  # clean exit on SIGTERM


def test_cli_rejects_invalid_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fault-500", "2"]) == 2
    assert "fault_500" in capsys.readouterr().err


def test_throughput_smoke() -> None:
    """2,000 requests at concurrency 500 all succeed, each with its own row's answer.

    Not a timing assertion: the in-process client shares the GIL with the server.
    """
    with SimulatorThread(latency_ms=100) as server:
        results = post_many(
            server.base_url + "/chat/completions",
            [chat_body(f"row {i}") for i in range(2000)],
            timeout=60.0,
            concurrency=500,
        )
        stats = server.stats()
    failures = [r for r in results if isinstance(r, BaseException) or r[0] != 200]
    assert not failures, failures[:3]
    for i, (_, _, body) in enumerate(results):  # type: ignore[misc]
        assert json.loads(body)["choices"][0]["message"]["content"] == f"ANSWER[row {i}]"
    assert stats["requests_total"] == 2000 and stats["max_in_flight"] > 100

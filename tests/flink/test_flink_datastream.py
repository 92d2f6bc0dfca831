"""LLMAsyncFunction (DataStream) in real Flink jobs: unordered and ordered, outcomes, n > 1.

The main job runs an unordered and an ordered branch side by side, each against its own
simulator, so one mini-cluster start checks both and each branch's concurrency bound is
measured on its own server.
"""

from __future__ import annotations

import re

import pytest
from helpers.flink_jobs import (
    IGNORE_BEAM_HANGUP,
    answer,
    chat_bodies,
    chat_calls,
    failure_text,
    recorded,
    row_text,
    stream_env,
)

from flink_llm_udf import EngineSettings, OpenAICompatProvider
from flink_llm_udf.flink import LLMAsyncFunction, apply_llm
from flink_llm_udf.simulator import SimulatorConfig, SimulatorProcess, expected_chat_reply

pytestmark = [pytest.mark.flink, IGNORE_BEAM_HANGUP]

MAX_CONCURRENCY = 4
SLOW_ID = 60
SLOW_TEXT = f"[sim:slow=400] row {SLOW_ID}"  # finishes long after the rows behind it
# A bundle's end waits for every row in flight, so a bundle boundary after the slow row would
# order the output; one bundle for the whole (bounded) input keeps the order check exact.
ONE_BUNDLE = {"python.fn-execution.bundle.time": "60000"}
JOB_MAX_CONCURRENCY = 40
BULK_ROWS = JOB_MAX_CONCURRENCY  # one slot each


@pytest.fixture(scope="module")
def second_simulator(flink_runtime):
    with SimulatorProcess(SimulatorConfig(latency_ms=10, record_requests=True)) as running:
        yield running


@pytest.fixture
def sim2(second_simulator: SimulatorProcess) -> SimulatorProcess:
    second_simulator.reset()
    return second_simulator


def _source(env, records: list[tuple], names: list[str], types: list):
    from pyflink.common import Types

    return env.from_collection(records, type_info=Types.ROW_NAMED(names, types))


def _collect(stream) -> list:
    with stream.execute_and_collect() as results:
        return list(results)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_unordered_and_ordered_answer_every_record_with_its_own_reply(sim, sim2, parallelism: int) -> None:
    from pyflink.common import Types

    rows = 120
    texts = [SLOW_TEXT if i == SLOW_ID else row_text(i) for i in range(rows)]
    env = stream_env(parallelism, **ONE_BUNDLE)
    source = _source(
        env, [(i, t) for i, t in enumerate(texts)], ["id", "txt"], [Types.INT(), Types.STRING()]
    ).rebalance()
    settings = EngineSettings(max_concurrency=MAX_CONCURRENCY)
    branches = {}
    for tag, server, ordered in (("u", sim, False), ("o", sim2, True)):
        function = LLMAsyncFunction(
            OpenAICompatProvider(endpoint=server.base_url, model=f"model-{tag}"),
            settings,
            text_of=lambda r: r[1],
            key_of=lambda r, tag=tag: f"{tag}:{r[0]}",
        )
        branches[tag] = apply_llm(source, function, ordered=ordered)
    out = _collect(branches["u"].union(branches["o"]))

    for tag, server in (("u", sim), ("o", sim2)):
        mine = [r for r in out if r["key"].startswith(tag + ":")]
        ids = [int(r["key"].split(":")[1]) for r in mine]
        assert sorted(ids) == list(range(rows)), tag  # one record per input (n = 1)
        for i, r in zip(ids, mine, strict=True):
            text = texts[i]
            assert r["input"] == text
            if text is None:
                assert (r["value"], r["error"], r["status"], r["attempts"]) == (None, None, None, 0)
            else:
                assert r["value"] == answer(text), (tag, i, r)
                assert (r["error"], r["status"], r["attempts"], r["choice"]) == (None, 200, 1, 0)
                assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        if parallelism == 1:  # order is per subtask, so only a single subtask shows it
            if tag == "o":
                assert ids == list(range(rows))
            else:
                assert ids.index(SLOW_ID) > ids.index(SLOW_ID + 1), "unordered waited for the slow row"
        assert dict(chat_calls(recorded(server))) == {(f"model-{tag}", t): 1 for t in texts if t is not None}
        max_in_flight = server.stats()["max_in_flight"]
        assert 2 <= max_in_flight <= MAX_CONCURRENCY * parallelism, tag


def test_ignore_yields_error_records_and_n_choices_from_job_parameters(sim) -> None:
    """Options from job parameters only; n = 2 gives one record per choice.

    ``ai.max-concurrency`` comes from the job parameters too, so Flink's in-flight capacity must
    follow it: slow rows fill every slot the engine allows.
    """
    from pyflink.common import Types

    records = [
        ("ok", "plain row", None),
        ("model", "row with its own model", "other-model"),
        ("null", None, None),
        ("404", "[sim:status=404] not found row", None),
        ("retried", "[sim:fail=1,status=503] flaky row", None),
        ("exhausted", "[sim:fail=5,status=503] broken row", None),
        ("timeout", "[sim:hang=4] hanging row", None),  # outlives Flink's operator timeout
    ]
    bulk = [(f"bulk-{i}", f"[sim:slow=400] bulk row {i}", None) for i in range(BULK_ROWS)]
    env = stream_env(
        1,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": "sim-a",
            "ai.n": 2,
            "ai.max-tokens": 40,
            "ai.system-prompt": "Answer briefly.",
            "ai.retry-num": 1,
            "ai.retry-backoff-base-interval": "10 ms",
            "ai.retry-fallback-strategy": "IGNORE",
            "ai.max-concurrency": JOB_MAX_CONCURRENCY,
        },
    )
    source = _source(
        env, records + bulk, ["key", "txt", "model"], [Types.STRING(), Types.STRING(), Types.STRING()]
    )
    function = LLMAsyncFunction(text_of=lambda r: r[1], key_of=lambda r: r[0], model_of=lambda r: r[2])
    out = _collect(apply_llm(source, function, timeout_s=2.0))

    by_key: dict[str, list] = {}
    for r in out:
        by_key.setdefault(r["key"], []).append(r)
    assert set(by_key) == {key for key, _, _ in records + bulk}
    for key, text, _ in records + bulk:
        got = sorted(by_key[key], key=lambda r: r["choice"])
        if key in ("ok", "model", "retried") or key.startswith("bulk-"):
            messages = [{"role": "user", "content": text}]
            assert [r["value"] for r in got] == [
                expected_chat_reply(messages, choice_index=k, max_tokens=40) for k in (0, 1)
            ], key
            assert [r["choice"] for r in got] == [0, 1]
            assert all(r["error"] is None and r["status"] == 200 for r in got)
            assert [r["attempts"] for r in got] == [2 if key == "retried" else 1] * 2
            assert got[0]["completion_tokens"] > 0 and got[1]["completion_tokens"] is None
        else:
            assert len(got) == 1 and got[0]["value"] is None and got[0]["choice"] == 0, key
    assert by_key["null"][0]["attempts"] == 0 and by_key["null"][0]["error"] is None
    not_found, exhausted = by_key["404"][0], by_key["exhausted"][0]
    assert (not_found["status"], not_found["attempts"]) == (404, 1)  # not retryable
    assert "HTTP 404" in not_found["error"]
    assert (exhausted["status"], exhausted["attempts"]) == (503, 2)  # retry-num 1 spent
    assert "HTTP 503" in exhausted["error"]
    assert "operator timeout" in by_key["timeout"][0]["error"]  # IGNORE: a record, not a failure

    bodies = chat_bodies(recorded(sim))
    assert len(bodies) == 1 + 1 + 1 + 2 + 2 + 1 + BULK_ROWS  # ok, model, 404, retried 2x, exhausted 2x, hang
    # the engine's bound comes from the job parameters (40, not the default 16); one subtask
    assert 2 * 16 < sim.stats()["max_in_flight"] <= JOB_MAX_CONCURRENCY
    for body in bodies:
        assert body["n"] == 2 and body["max_tokens"] == 40
        assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
        expected_model = "other-model" if body["messages"][1]["content"] == records[1][1] else "sim-a"
        assert body["model"] == expected_model


def test_failover_fails_the_job_naming_row_and_cause(sim) -> None:
    from pyflink.common import Types

    env = stream_env(1)
    texts = [f"row {i}" for i in range(20)] + ["[sim:status=404] row 20"]
    source = _source(env, [(t,) for t in texts], ["txt"], [Types.STRING()])
    provider = OpenAICompatProvider(endpoint=sim.base_url, model="sim-a", error_handling_strategy="FAILOVER")
    stream = apply_llm(source, LLMAsyncFunction(provider, EngineSettings(max_concurrency=4)))
    text = failure_text(lambda: _collect(stream))
    assert "RowFailedError" in text
    assert re.search(r"row \d+ failed after 1 attempt\(s\): HTTP 404", text), text[-3000:]

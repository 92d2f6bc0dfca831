"""Rows that cannot be sent, at the engine: each is its own row's error, never the batch's.

The table (``BAD_INPUTS``): NULL, an empty string, a 1 MB text, lone surrogates and non-string
values (int, NaN, float, bool, list, bytes, dict), each between good rows. Under IGNORE every good
row (and the empty and the 1 MB text) gets its own answer, NULL stays NULL with no request, every
unsendable row is NULL with an error naming why and no request; under FAILOVER the unsendable row
raises ``RowFailedError`` naming its index. No request the simulator receives carries invalid JSON.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator

import pytest
from helpers.flink_jobs import (
    ANSWERED,
    BAD_INPUTS,
    NULL_IN,
    answer,
    assert_unsent,
    bad_input_table,
    chat_calls,
    invalid_json_problems,
    recorded,
)

from flink_llm_udf import LLMEngine, OpenAICompatProvider, RowFailedError, run_batch
from flink_llm_udf._results import FAILED, IGNORED, NULL_INPUT, OK
from flink_llm_udf.simulator import SimulatorThread, expected_embedding

#: Every test here runs once per HTTP client the package ships (tests/loopback/conftest.py).
pytestmark = pytest.mark.usefixtures("each_http_client")

UNSENDABLE = [
    pytest.param(value, why, id=name) for name, value, why in BAD_INPUTS if why not in (ANSWERED, NULL_IN)
]


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(record_requests=True, record_limit=1000) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def _expectations() -> list[tuple[object, str]]:
    """(input, what must become of it) for the table with good rows around every entry."""
    return [(value, why) for _, value, why in bad_input_table()]


def test_under_ignore_each_bad_row_is_its_own_error_and_every_other_row_is_answered(sim) -> None:
    table = _expectations()
    provider = OpenAICompatProvider(endpoint=sim.base_url, model="m", error_handling_strategy="IGNORE")
    results = run_batch(provider, [value for value, _ in table], max_concurrency=4)

    assert len(results) == len(table)
    for (value, why), result in zip(table, results, strict=True):
        where = repr(value)[:40]
        if why == ANSWERED:
            assert (result.outcome, result.value, result.error, result.attempts) == (
                OK,
                answer(value),
                None,
                1,
            ), where
        elif why == NULL_IN:
            assert (result.outcome, result.value, result.error, result.attempts) == (
                NULL_INPUT,
                None,
                None,
                0,
            )
        else:
            assert (result.outcome, result.value, result.attempts) == (IGNORED, None, 0), where
            assert_unsent(result.error, why, where)
    requests = recorded(sim)
    assert invalid_json_problems(requests) == []
    sent = collections.Counter(("m", value) for value, why in table if why == ANSWERED)
    assert chat_calls(requests) == sent  # each sendable row once, nothing else


@pytest.mark.parametrize(("bad", "why"), UNSENDABLE)
def test_under_failover_a_bad_row_raises_row_failed_error_naming_its_index(
    sim, bad: object, why: str
) -> None:
    provider = OpenAICompatProvider(endpoint=sim.base_url, model="m", error_handling_strategy="FAILOVER")
    with pytest.raises(RowFailedError) as caught:
        run_batch(provider, ["good a", "good b", bad, "good c"], max_concurrency=4)
    assert caught.value.row_index == 2 and caught.value.attempts == 0
    assert str(caught.value).startswith("row 2 failed after 0 attempt(s)"), str(caught.value)
    assert_unsent(caught.value.cause, why, bad)
    assert invalid_json_problems(recorded(sim)) == []


@pytest.mark.parametrize("strategy", ["IGNORE", "FAILOVER"])
@pytest.mark.parametrize(("bad", "why"), UNSENDABLE)
def test_one_row_at_a_time_a_bad_row_comes_back_as_its_own_result_without_a_request(
    sim, bad: object, why: str, strategy: str
) -> None:
    """The row path (async SQL, DataStream): ``call_row`` never raises for a row; the caller sees
    FAILED (and raises) under FAILOVER, IGNORED under IGNORE."""
    provider = OpenAICompatProvider(endpoint=sim.base_url, model="m", error_handling_strategy=strategy)

    async def run() -> list:
        engine = LLMEngine(provider)
        try:
            return [await engine.call_row(bad), await engine.call_row("good")]
        finally:
            await engine.aclose()

    bad_result, good_result = asyncio.run(run())
    assert (bad_result.outcome, bad_result.value, bad_result.attempts) == (
        FAILED if strategy == "FAILOVER" else IGNORED,
        None,
        0,
    )
    assert_unsent(bad_result.error, why, bad)
    assert good_result.value == answer("good")
    assert chat_calls(recorded(sim)) == {("m", "good"): 1}


def test_a_bad_model_override_is_its_rows_error(sim) -> None:
    provider = OpenAICompatProvider(endpoint=sim.base_url, model="m", error_handling_strategy="IGNORE")
    results = run_batch(provider, ["a", "b", "c", "d"], models=[None, 7, "bad\ud800model", "other"])
    assert [r.value for r in results] == [answer("a"), None, None, answer("d")]
    assert_unsent(results[1].error, "int", "model 7")
    assert_unsent(results[2].error, "surrogate", "model with a surrogate")
    requests = recorded(sim)
    assert invalid_json_problems(requests) == []
    assert chat_calls(requests) == {("m", "a"): 1, ("other", "d"): 1}


@pytest.mark.parametrize("rows_per_request", [1, 4])
def test_embeddings_answer_every_good_row_around_bad_ones(sim, rows_per_request: int) -> None:
    """Embeddings, one row per request or grouped: a bad row does not take its group down."""
    table = _expectations()
    provider = OpenAICompatProvider(
        endpoint=sim.base_url, model="e", task="embeddings", error_handling_strategy="IGNORE"
    )
    results = run_batch(
        provider,
        [value for value, _ in table],
        max_concurrency=4,
        embedding_rows_per_request=rows_per_request,
    )
    assert len(results) == len(table)
    for (value, why), result in zip(table, results, strict=True):
        where = repr(value)[:40]
        if why == ANSWERED:
            assert result.outcome == OK and result.error is None, (where, result.error)
            assert result.value == pytest.approx(expected_embedding(value), abs=1e-6), where
        elif why == NULL_IN:
            assert (result.outcome, result.value, result.error) == (NULL_INPUT, None, None)
        else:
            assert (result.outcome, result.value) == (IGNORED, None), where
            assert_unsent(result.error, why, where)
    requests = recorded(sim)
    assert invalid_json_problems(requests) == []
    inputs = [r["body"]["input"] for r in requests]
    sent = [text for i in inputs for text in ([i] if isinstance(i, str) else i)]
    assert collections.Counter(sent) == collections.Counter(v for v, why in table if why == ANSWERED)
    assert all(isinstance(i, str) for i in inputs) == (rows_per_request == 1)

"""The fault soak for the engine alone: ``flink_llm_udf.run_batch`` against a simulator process
that fails 20 % of requests (``SOAK_FAULTS``: 429 with Retry-After, 500, 503, timeouts, resets,
malformed bodies, a slow tail), once per HTTP client the package ships.

Every test accounts for every row against the simulator's own log (``soak_problems``): one
``RowResult`` per input in order, a value only as the row's own answer and only after exactly one
good reply (its last request), ``RowResult.attempts`` equal to the requests the simulator got for
that row's text, the attempts summing to the simulator's ``requests_total``, its good replies
(200s less malformed ones) equal to the rows with values, its fault counters equal to the failed
requests. Rows: ``FLINK_LLM_SOAK_ROWS`` (``make test-soak``: 10,000), else a small default.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.flink_jobs import (
    SOAK_FAULT_ERRORS,
    SOAK_FAULTS,
    SOAK_REQUEST_TIMEOUT_S,
    SoakRow,
    assert_soak_accounted,
    soak_rows,
    soak_texts,
)

from flink_llm_udf import OpenAICompatProvider, run_batch
from flink_llm_udf._results import IGNORED, OK
from flink_llm_udf.simulator import SimulatorProcess

#: Every test here runs once per HTTP client the package ships (tests/loopback/conftest.py).
pytestmark = [pytest.mark.soak, pytest.mark.usefixtures("each_http_client")]

ROWS = soak_rows(1000)
MAX_CONCURRENCY = 32
BATCH_DEADLINE_S = 300.0  # bounds a run: late rows end as failures (FAILOVER) or errors (IGNORE)
FAST_RETRIES = {"retry_backoff_base_interval": "5 ms"}


@pytest.fixture(scope="module")
def soak_simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(SOAK_FAULTS, stop_timeout=30.0) as running:
        yield running


@pytest.fixture
def sim(soak_simulator: SimulatorProcess) -> SimulatorProcess:
    soak_simulator.reset()
    return soak_simulator


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def _soak(sim: SimulatorProcess, texts: list[str], **options: object) -> list[SoakRow]:
    provider = OpenAICompatProvider(endpoint=sim.base_url, model="sim-model", **options)
    results = run_batch(
        provider,
        texts,
        max_concurrency=MAX_CONCURRENCY,
        request_timeout=SOAK_REQUEST_TIMEOUT_S,
        batch_deadline=BATCH_DEADLINE_S,
    )
    assert len(results) == len(texts)
    for result in results:
        assert result.outcome == (OK if result.value is not None else IGNORED), result
    return [SoakRow(t, r.value, r.error, r.attempts) for t, r in zip(texts, results, strict=True)]


def test_engine_soak_under_retry_answers_every_row_with_its_own_reply_once(sim: SimulatorProcess) -> None:
    """RETRY (100 retries, 5 ms apart, FAILOVER after): every row OK with its own answer; a lost row
    would raise. Accounts for: every row, every request, every fault of the simulator's log."""
    texts = soak_texts("engine-retry", ROWS)
    rows = _soak(sim, texts, retry_num=100, retry_fallback_strategy="FAILOVER", **FAST_RETRIES)
    stats = assert_soak_accounted(rows, texts, sim, max_attempts=101, must_answer=True)
    assert set(stats["faults"]) == set(SOAK_FAULT_ERRORS), "every kind of fault must have been met"
    assert any(row.attempts and row.attempts > 2 for row in rows), "some row must have retried twice"


@pytest.mark.parametrize(
    ("options", "max_attempts"),
    [
        pytest.param({"error_handling_strategy": "IGNORE"}, 1, id="IGNORE"),
        pytest.param(
            {"retry_num": 1, "retry_fallback_strategy": "IGNORE", **FAST_RETRIES},
            2,
            id="RETRY-once-then-IGNORE",
        ),
    ],
)
def test_engine_soak_under_ignore_accounts_for_every_row_as_its_answer_or_its_error(
    sim: SimulatorProcess, options: dict[str, object], max_attempts: int
) -> None:
    """IGNORE: every row is its own answer (outcome OK) or NULL with outcome IGNORED, all its
    attempts spent, and an error naming the fault of its last attempt. Accounts for: every row,
    every request, every fault of the simulator's log."""
    texts = soak_texts(f"engine-ignore-{max_attempts}", ROWS)
    rows = _soak(sim, texts, **options)
    assert_soak_accounted(rows, texts, sim, max_attempts=max_attempts, must_answer=False)
    values = sum(row.value is not None for row in rows)
    assert 0 < values < len(rows), "a soak under IGNORE must see both answers and errors"

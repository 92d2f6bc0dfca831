"""The fault soak through Flink: the Pandas UDF (Table API), async SQL and the DataStream function,
each against simulator processes that fail 20 % of requests (``SOAK_FAULTS``: 429 with
Retry-After, 500, 503, timeouts, resets, malformed bodies, a slow tail).

One job per entry point runs two branches side by side, each against its own simulator so that
each simulator's counters belong to one strategy: RETRY (100 retries 5 ms apart, FAILOVER after, so
a lost row would fail the job) on texts ``soak <path>-retry <i>``, and IGNORE (one retry, then
IGNORE) on texts ``soak <path>-ignore <i>``. Every row is checked against the simulator's own log
by ``soak_problems`` (see its docstring); what each path can report decides how tight that is.
Rows per branch: ``FLINK_LLM_SOAK_ROWS`` (``make test-soak``: 10,000), else a small default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers.flink_jobs import (
    IGNORE_BEAM_HANGUP,
    SOAK_FAULT_ERRORS,
    SOAK_FAULTS,
    SOAK_REQUEST_TIMEOUT_S,
    SoakRow,
    assert_soak_accounted,
    collect,
    sequence_table,
    soak_rows,
    soak_texts,
    stream_env,
    table_env,
)

from flink_llm_udf import EngineSettings, OpenAICompatProvider
from flink_llm_udf.flink import LLMAsyncFunction, apply_llm, register_functions
from flink_llm_udf.simulator import SimulatorProcess

pytestmark = [pytest.mark.soak, pytest.mark.flink, IGNORE_BEAM_HANGUP]

ROWS = soak_rows(300)
PARALLELISM = 2
MAX_CONCURRENCY = 16
# row_deadline_s bounds a row (then FAILOVER fails the job, IGNORE records an error): no run hangs.
SETTINGS = EngineSettings(
    max_concurrency=MAX_CONCURRENCY, request_timeout_s=SOAK_REQUEST_TIMEOUT_S, row_deadline_s=120.0
)
STRATEGIES: dict[str, dict[str, Any]] = {
    "retry": {"retry_num": 100, "retry_fallback_strategy": "FAILOVER"},
    "ignore": {"retry_num": 1, "retry_fallback_strategy": "IGNORE"},
}
MAX_ATTEMPTS = {"retry": 101, "ignore": 2}


@pytest.fixture(scope="module")
def soak_simulators(flink_runtime) -> Iterator[dict[str, SimulatorProcess]]:
    with (
        SimulatorProcess(SOAK_FAULTS, stop_timeout=30.0) as retry,
        SimulatorProcess(SOAK_FAULTS, stop_timeout=30.0) as ignore,
    ):
        yield {"retry": retry, "ignore": ignore}


@pytest.fixture
def sims(soak_simulators: dict[str, SimulatorProcess]) -> dict[str, SimulatorProcess]:
    """One simulator per strategy, with zeroed stats and an empty log."""
    for sim in soak_simulators.values():
        sim.reset()
    return soak_simulators


def _provider(sim: SimulatorProcess, strategy: str) -> OpenAICompatProvider:
    return OpenAICompatProvider(
        endpoint=sim.base_url,
        model="sim-model",
        retry_backoff_base_interval="5 ms",
        **STRATEGIES[strategy],
    )


def _account(path: str, rows: dict[str, list[SoakRow]], sims: dict[str, SimulatorProcess]) -> None:
    for strategy, sim in sims.items():
        texts = soak_texts(f"{path}-{strategy}", ROWS)
        must_answer = strategy == "retry"
        stats = assert_soak_accounted(
            rows[strategy], texts, sim, max_attempts=MAX_ATTEMPTS[strategy], must_answer=must_answer
        )
        if must_answer:
            assert set(stats["faults"]) == set(SOAK_FAULT_ERRORS), "every kind of fault must have been met"
        else:
            values = sum(row.value is not None for row in rows[strategy])
            assert 0 < values < ROWS, "a soak under IGNORE must see both answers and errors"


def test_pandas_udf_soak_answers_every_row_under_retry_and_accounts_for_every_row_under_ignore(
    sims: dict[str, SimulatorProcess],
) -> None:
    """``ai_complete_result`` per branch: its ROW carries value, error and attempts, so every row
    is accounted for exactly: its own answer after exactly one good reply (RETRY: every row), or
    NULL with an error naming its last fault after both attempts (IGNORE); its ``attempts`` equal
    its requests in the log; the attempts sum to the simulator's requests, the rows with values to
    its good replies."""
    t_env = table_env(PARALLELISM)
    for strategy, sim in sims.items():
        register_functions(t_env, _provider(sim, strategy), settings=SETTINGS, names_prefix=f"{strategy}_")
    sequence_table(t_env, "seq", ROWS)
    out = collect(
        t_env.sql_query("""
        SELECT rt, r.`value`, r.error, r.attempts, it, i.`value`, i.error, i.attempts
        FROM (SELECT rt, retry_ai_complete_result(rt) AS r, it, ignore_ai_complete_result(it) AS i
              FROM (SELECT CONCAT('soak pandas-retry ', CAST(id AS STRING)) AS rt,
                           CONCAT('soak pandas-ignore ', CAST(id AS STRING)) AS it FROM seq))""")
    )
    rows = {
        "retry": [SoakRow(*row[:4]) for row in out],
        "ignore": [SoakRow(*row[4:]) for row in out],
    }
    _account("pandas", rows, sims)


def test_async_sql_soak_answers_every_row_under_retry_and_accounts_for_every_row_under_ignore(
    sims: dict[str, SimulatorProcess],
) -> None:
    """``ai_complete_async`` per branch returns only the value, so the log does the rest: every row
    its own answer after exactly one good reply, its last request (RETRY: every row, at most 101
    requests); under IGNORE a NULL row got no good reply in exactly 2 requests; no request for any
    other text; the simulator's good replies equal the rows with values."""
    t_env = table_env(PARALLELISM)
    for strategy, sim in sims.items():
        register_functions(t_env, _provider(sim, strategy), settings=SETTINGS, names_prefix=f"{strategy}_")
    sequence_table(t_env, "seq", ROWS)
    out = collect(
        t_env.sql_query("""
        SELECT rt, retry_ai_complete_async(rt), it, ignore_ai_complete_async(it)
        FROM (SELECT CONCAT('soak async-retry ', CAST(id AS STRING)) AS rt,
                     CONCAT('soak async-ignore ', CAST(id AS STRING)) AS it FROM seq)""")
    )
    rows = {
        "retry": [SoakRow(rt, rv) for rt, rv, _, _ in out],
        "ignore": [SoakRow(it, iv) for _, _, it, iv in out],
    }
    _account("async", rows, sims)


def test_datastream_soak_answers_every_row_under_retry_and_accounts_for_every_row_under_ignore(
    sims: dict[str, SimulatorProcess],
) -> None:
    """``LLMAsyncFunction`` unordered, one branch per strategy over one rebalanced source: each
    output record carries its input, value, error and attempts, so every row is accounted for
    exactly as on the Pandas path (its attempts equal its requests in the log, errors name the last
    fault, the attempts sum to the simulator's requests, the values to its good replies)."""
    from pyflink.common import Types

    env = stream_env(PARALLELISM)
    source = env.from_collection([(i,) for i in range(ROWS)], type_info=Types.ROW([Types.INT()])).rebalance()
    branches = [
        apply_llm(
            source,
            LLMAsyncFunction(
                _provider(sim, strategy), SETTINGS, text_of=lambda r, tag=strategy: f"soak ds-{tag} {r[0]}"
            ),
        )
        for strategy, sim in sims.items()
    ]
    with branches[0].union(branches[1]).execute_and_collect() as results:
        out = [SoakRow(r["input"], r["value"], r["error"], r["attempts"]) for r in results]
    rows = {
        strategy: [row for row in out if (row.text or "").startswith(f"soak ds-{strategy} ")]
        for strategy in sims
    }
    assert sum(map(len, rows.values())) == len(out), "every output record belongs to a branch"
    _account("ds", rows, sims)

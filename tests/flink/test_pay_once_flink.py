"""Paying once in real Flink jobs: in-flight dedup on every path, a Redis cache across runs and
through an outage, token budgets, cost columns and metrics, packed embeddings on async SQL.

Every request is counted at the simulator (``requests_total``, recorded bodies, the ``usage`` its
replies carried), never by the engine. The module's simulator answers after ``LATENCY_MS``: dedup
shares a request only with identical requests *in flight at the same time*, so the dedup jobs rely
on every row of the input reaching the function while the first request of its text is still out
(one bundle, more request slots than distinct texts, rows arriving within milliseconds of each
other against a half-second reply); there is no result cache behind them, so an extra request
would show.

Metrics: a bounded job's metrics are gone from the REST API once it ends, so the tests read the
gauges' own source instead: the ``FlinkMetrics`` each function opened (its workers run in this
process), which is what Flink's ``flink_llm`` gauges report.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.flink_jobs import (
    IGNORE_BEAM_HANGUP,
    answer,
    chat_calls,
    collect,
    embedding_calls,
    failure_text,
    recorded,
    sequence_table,
    stream_env,
    table_env,
)
from helpers.redis_server import RedisServer

from flink_llm_udf import EngineSettings, OpenAICompatProvider
from flink_llm_udf.flink import FlinkMetrics, LLMAsyncFunction, apply_llm, register_functions
from flink_llm_udf.simulator import SimulatorConfig, SimulatorProcess, expected_embedding

pytestmark = [pytest.mark.flink, IGNORE_BEAM_HANGUP]

LATENCY_MS = 500
ROWS, DISTINCT = 200, 20
MAX_CONCURRENCY = 32  # more request slots than distinct texts: every leader is out at once
# One bundle for the whole bounded input: a bundle's end waits for every row in flight, so rows
# of the next bundle would find their leaders done and send again.
ONE_BUNDLE = {"python.fn-execution.bundle.time": "60000"}
DUP_SQL = f"CONCAT('dup ', CAST(id % {DISTINCT} AS STRING), ' ü')"
PRICES = {"m": (1.0, 2.0)}  # per million prompt / completion tokens


def _dup_text(i: int) -> str:
    return f"dup {i % DISTINCT} ü"


@pytest.fixture(scope="module")
def simulator(flink_runtime: Path) -> Iterator[SimulatorProcess]:
    """This module's simulator (overrides the tier's): slow enough to keep duplicates in flight."""
    config = SimulatorConfig(latency_ms=LATENCY_MS, record_requests=True, record_limit=100_000)
    with SimulatorProcess(config) as running:
        yield running


@pytest.fixture
def gauges(monkeypatch: pytest.MonkeyPatch) -> list[FlinkMetrics]:
    """Every ``FlinkMetrics`` a function opens during the test (one per function and subtask)."""
    opened: list[FlinkMetrics] = []
    original = FlinkMetrics.__init__

    def init(self: FlinkMetrics, metric_group: object) -> None:
        original(self, metric_group)
        opened.append(self)

    monkeypatch.setattr(FlinkMetrics, "__init__", init)
    return opened


def _metric(opened: list[FlinkMetrics], name: str) -> float:
    return sum(metrics.value(name) for metrics in opened)


def _chat_job(sim: SimulatorProcess, **parameters: object):
    """A one-subtask SQL environment configured by job parameters only, functions registered."""
    t_env = table_env(
        1,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": "m",
            "ai.max-concurrency": MAX_CONCURRENCY,
            "ai.error-handling-strategy": "IGNORE",
            **parameters,
        },
    )
    register_functions(t_env)
    return t_env


def _jvm_log() -> Path:
    """The log of the JVM that runs the jobs (the first Flink test of the process chose it)."""
    from pyflink.java_gateway import get_gateway

    return Path(get_gateway().jvm.System.getProperty("log.file"))


# --- 1. dedup on every path ----------------------------------------------------------------------
def test_duplicate_rows_send_one_request_per_text_on_pandas_async_sql_and_embeddings(sim) -> None:
    """200 rows over 20 texts through ``ai_complete``, ``ai_complete_result``, ``ai_complete_async``
    (each with its own model, so their requests tell apart) and ``ai_embed``: 20 requests each."""
    t_env = table_env(
        1,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": "m",
            "ai.embed.model": "e",
            "ai.max-concurrency": MAX_CONCURRENCY,
        },
        **ONE_BUNDLE,
    )
    register_functions(t_env)
    sequence_table(t_env, "seq", ROWS)
    out = collect(
        t_env.sql_query(f"""
        SELECT id, txt, ai_complete(txt, 'p'), r.`value`, r.cached, r.attempts,
               ai_complete_async(txt, 'a'), ai_embed(txt)
        FROM (SELECT id, txt, ai_complete_result(txt, 'r') AS r
              FROM (SELECT id, {DUP_SQL} AS txt FROM seq))""")
    )

    assert sorted(row[0] for row in out) == list(range(ROWS))
    leaders: collections.Counter[str] = collections.Counter()
    for i, txt, plain, value, cached, attempts, async_value, vector in out:
        assert txt == _dup_text(i)
        assert plain == value == async_value == answer(txt), i
        assert vector == pytest.approx(expected_embedding(txt), abs=1e-6), i
        assert (cached, attempts) in ((False, 1), (True, 0)), (i, cached, attempts)
        leaders[txt] += not cached
    assert leaders == {_dup_text(i): 1 for i in range(DISTINCT)}  # one row per text paid, 180 shared

    requests = recorded(sim)
    texts = {_dup_text(i) for i in range(DISTINCT)}
    assert dict(chat_calls(requests)) == {(model, t): 1 for model in "pra" for t in texts}
    assert dict(embedding_calls(requests)) == {("e", t): 1 for t in texts}
    assert sim.stats()["requests_total"] == 4 * DISTINCT


def test_duplicate_records_send_one_request_per_text_on_the_datastream_path(sim) -> None:
    from pyflink.common import Types

    env = stream_env(1, **ONE_BUNDLE)
    source = env.from_collection(
        [(i, _dup_text(i)) for i in range(ROWS)],
        type_info=Types.ROW_NAMED(["id", "txt"], [Types.INT(), Types.STRING()]),
    )
    function = LLMAsyncFunction(
        OpenAICompatProvider(endpoint=sim.base_url, model="d"),
        EngineSettings(max_concurrency=MAX_CONCURRENCY),
        text_of=lambda r: r[1],
        key_of=lambda r: r[0],
    )
    with apply_llm(source, function).execute_and_collect() as results:
        out = {int(r["key"]): r for r in results}

    assert sorted(out) == list(range(ROWS))
    leaders: collections.Counter[str] = collections.Counter()
    for i, record in out.items():
        text = _dup_text(i)
        assert record["input"] == text and record["value"] == answer(text), i
        assert (record["cached"], record["attempts"]) in ((False, 1), (True, 0)), (i, record)
        leaders[text] += not record["cached"]
    assert leaders == {_dup_text(i): 1 for i in range(DISTINCT)}
    assert dict(chat_calls(recorded(sim))) == {("d", _dup_text(i)): 1 for i in range(DISTINCT)}
    assert sim.stats()["requests_total"] == DISTINCT


# --- 2. and 3. a Redis cache -----------------------------------------------------------------------
CACHE_ROWS = 60
CACHE_QUERY = """
    SELECT id, r.`value`, r.cached, ai_complete_async(txt, 'a')
    FROM (SELECT id, txt, ai_complete_result(txt) AS r
          FROM (SELECT id, CONCAT('cached row ', CAST(id AS STRING)) AS txt FROM seq))"""


def test_a_redis_cache_answers_the_second_run_of_a_sql_job_without_a_request(
    sim, redis_server: RedisServer, gauges: list[FlinkMetrics]
) -> None:
    def run() -> list[tuple]:
        t_env = _chat_job(sim, **{"ai.cache": redis_server.url})
        sequence_table(t_env, "seq", CACHE_ROWS)
        return sorted(collect(t_env.sql_query(CACHE_QUERY)))

    first = run()
    first_requests = recorded(sim)
    assert not any(cached for _, _, cached, _ in first)
    texts = [f"cached row {i}" for i in range(CACHE_ROWS)]
    assert dict(chat_calls(first_requests)) == {(model, t): 1 for model in ("m", "a") for t in texts}

    sim.reset()
    gauges.clear()
    second = run()
    assert sim.stats()["requests_total"] == 0  # every row from Redis
    assert [(i, value, async_value) for i, value, _, async_value in second] == [
        (i, value, async_value) for i, value, _, async_value in first
    ]
    for (i, value, _, async_value), text in zip(second, texts, strict=True):
        assert value == async_value == answer(text), i
    assert all(cached for _, _, cached, _ in second)
    assert len(gauges) == 2  # the Pandas and the async function
    assert _metric(gauges, "rowsCached") == _metric(gauges, "cacheHits") == 2 * CACHE_ROWS
    assert _metric(gauges, "cacheMisses") == _metric(gauges, "cacheErrors") == 0
    assert _metric(gauges, "requests") == 0


def test_rows_are_all_answered_when_redis_stops_in_the_middle_of_a_job(
    sim, redis_server: RedisServer, gauges: list[FlinkMetrics]
) -> None:
    """Rows trickle in (20/s, 3 s); Redis is stopped once a sixth of the requests were sent: every
    row still gets its own answer from one request, the cache's failures are counted and logged.

    The source emits in bursts (seen: the stop came at 45 and 60 of 120 requests with a threshold
    of 40 at 30 rows/s), hence the early threshold."""
    rows = 60
    t_env = _chat_job(sim, **{"ai.cache": redis_server.url})
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE seq (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20', "
        f"'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '{rows - 1}')"
    )
    stopped_at: list[int] = []
    done = threading.Event()

    def stop_redis_mid_job() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            sent = sim.stats()["requests_total"]
            if sent >= rows // 3:  # two functions: a sixth of the rows each
                redis_server.stop()
                stopped_at.append(sent)
                return
            time.sleep(0.05)

    log = _jvm_log()
    log_start = log.stat().st_size if log.exists() else 0
    watcher = threading.Thread(target=stop_redis_mid_job, daemon=True)
    watcher.start()
    try:
        out = collect(
            t_env.sql_query(
                "SELECT id, txt, ai_complete_result(txt).`value`, ai_complete_async(txt, 'a') "
                "FROM (SELECT id, CONCAT('outage row ', CAST(id AS STRING)) AS txt FROM seq)"
            )
        )
    finally:
        done.set()
        watcher.join(10)

    assert stopped_at and stopped_at[0] < 2 * rows, "Redis was not stopped while the job ran"
    assert sorted(row[0] for row in out) == list(range(rows))
    for i, txt, value, async_value in out:
        assert value == async_value == answer(txt), (i, value, async_value)  # no NULLs
    texts = [f"outage row {i}" for i in range(rows)]
    assert dict(chat_calls(recorded(sim))) == {(model, t): 1 for model in ("m", "a") for t in texts}
    assert _metric(gauges, "cacheErrors") > 0
    assert _metric(gauges, "cacheHits") == 0

    wanted = f"result cache '{redis_server.url}' failed, rows go to the endpoint until it answers again"
    text = log.read_text(errors="replace")[log_start:]
    assert wanted in text, text[-3000:]


# --- 4. budgets ----------------------------------------------------------------------------------------
BUDGET = 200
BUDGET_ROWS = 40
BUDGET_PARAMETERS = {"ai.max-tokens": 5, "ai.token-budget": BUDGET, "ai.max-concurrency": 4}


def _billed_tokens(sim: SimulatorProcess) -> int:
    usage = sim.stats()["usage"]
    return int(usage["prompt_tokens"] + usage["completion_tokens"])


def test_a_token_budget_answers_some_rows_and_ends_the_rest_null(sim) -> None:
    t_env = _chat_job(sim, **BUDGET_PARAMETERS)
    sequence_table(t_env, "seq", BUDGET_ROWS)
    out = collect(
        t_env.sql_query(
            "SELECT id, txt, r.`value`, r.error, r.attempts "
            "FROM (SELECT id, txt, ai_complete_result(txt) AS r "
            "      FROM (SELECT id, CONCAT('budget row ', CAST(id AS STRING)) AS txt FROM seq))"
        )
    )

    assert sorted(row[0] for row in out) == list(range(BUDGET_ROWS))
    answered = [row for row in out if row[2] is not None]
    refused = [row for row in out if row[2] is None]
    assert answered and refused
    for i, txt, value, error, attempts in answered:
        assert value == answer(txt, max_tokens=5) and error is None and attempts == 1, i
    for i, _, _, error, attempts in refused:
        assert error is not None and "token budget spent" in error and attempts == 0, (i, error)
    assert sim.stats()["requests_total"] == len(answered)  # a refused row sent nothing
    assert 0 < _billed_tokens(sim) <= BUDGET


def test_a_spent_token_budget_fails_the_job_under_failover(sim) -> None:
    t_env = _chat_job(sim, **BUDGET_PARAMETERS, **{"ai.error-handling-strategy": "FAILOVER"})
    sequence_table(t_env, "seq", BUDGET_ROWS)
    table = t_env.sql_query("SELECT ai_complete(CONCAT('budget row ', CAST(id AS STRING))) FROM seq")
    text = failure_text(lambda: collect(table))
    assert "RowFailedError" in text and "token budget spent" in text, text[-3000:]
    assert _billed_tokens(sim) <= BUDGET


# --- 5. cost -------------------------------------------------------------------------------------------
def test_each_row_carries_its_cost_and_the_sum_is_what_the_simulator_billed(
    sim, gauges: list[FlinkMetrics]
) -> None:
    """60 rows over 30 texts of different lengths; prices ``m=1/2`` (per million tokens)."""
    rows = 60
    t_env = _chat_job(sim, **{"ai.prices": "m=1/2"})
    sequence_table(t_env, "seq", rows)
    text_sql = "CONCAT('cost row ', CAST(id % 30 AS STRING), REPEAT(' w', CAST(id % 5 AS INT)))"
    out = collect(
        t_env.sql_query(f"""
        SELECT id, txt, r.`value`, r.prompt_tokens, r.completion_tokens, r.cached, r.cost
        FROM (SELECT id, txt, ai_complete_result(txt) AS r FROM (SELECT id, {text_sql} AS txt FROM seq))""")
    )

    prompt_price, completion_price = PRICES["m"]
    assert sorted(row[0] for row in out) == list(range(rows))
    for i, txt, value, prompt, completion, cached, cost in out:
        assert value == answer(txt), i
        assert prompt == 5 + len(txt.split()) and completion == len(answer(txt).split()), i
        if cached:  # another row paid for it
            assert cost == 0.0, i
        else:
            assert cost == pytest.approx((prompt * prompt_price + completion * completion_price) / 1e6), i
    usage = sim.stats()["usage"]
    total = sum(row[-1] for row in out)
    billed = (usage["prompt_tokens"] * prompt_price + usage["completion_tokens"] * completion_price) / 1e6
    assert usage["replies"] == sim.stats()["requests_total"] == sum(not row[5] for row in out)
    assert total == pytest.approx(billed, rel=1e-9)
    assert abs(_metric(gauges, "costMicros") - round(total * 1e6)) <= 1
    assert _metric(gauges, "promptTokens") == usage["prompt_tokens"]
    assert _metric(gauges, "completionTokens") == usage["completion_tokens"]


# --- 6. packed embeddings on async SQL -------------------------------------------------------------
def test_async_sql_embeddings_travel_in_packs(sim) -> None:
    rows, per_request = 64, 16
    t_env = _chat_job(sim, **{"ai.embed.model": "e", "ai.embedding-rows-per-request": per_request})
    sequence_table(t_env, "seq", rows)
    out = collect(
        t_env.sql_query(
            "SELECT id, txt, ai_embed_async(txt) "
            "FROM (SELECT id, CONCAT('packed row ', CAST(id AS STRING)) AS txt FROM seq)"
        )
    )

    assert sorted(row[0] for row in out) == list(range(rows))
    for i, txt, vector in out:
        assert vector == pytest.approx(expected_embedding(txt), abs=1e-6), i
    requests = recorded(sim)
    sizes = [len(r["body"]["input"]) if isinstance(r["body"]["input"], list) else 1 for r in requests]
    assert max(sizes) <= per_request
    assert sum(sizes) == rows  # each row sent once
    assert math.ceil(rows / per_request) <= len(requests) <= rows // 8, sizes

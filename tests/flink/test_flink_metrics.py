"""Metrics: gauges under the ``flink_llm`` group, read back from a running job's REST API.

PyFlink reports Python gauges at bundle ends; the REST API shows a running job's metrics only,
so the job reads an unbounded, rate-limited datagen source and is cancelled once its metrics
show every kind of row.
"""

from __future__ import annotations

import pytest
from helpers.flink_jobs import (
    IGNORE_BEAM_HANGUP,
    free_port,
    job_metrics,
    table_env,
    wait_for,
)

from flink_llm_udf import METRIC_NAMES, RowResult, Usage
from flink_llm_udf._results import IGNORED, NULL_INPUT, OK
from flink_llm_udf.flink import METRIC_GROUP, FlinkMetrics, register_functions

pytestmark = [IGNORE_BEAM_HANGUP]

OUTCOMES = ("rowsSucceeded", "rowsNull", "rowsIgnored")


class FakeGroup:
    """The part of PyFlink's MetricGroup that FlinkMetrics uses."""

    def __init__(self) -> None:
        self.groups: dict[str, FakeGroup] = {}
        self.gauges: dict[str, object] = {}

    def add_group(self, name: str) -> FakeGroup:
        return self.groups.setdefault(name, FakeGroup())

    def gauge(self, name: str, obj) -> None:
        self.gauges[name] = obj


def test_flink_metrics_registers_a_gauge_per_metric_over_the_counts() -> None:
    root = FakeGroup()
    metrics = FlinkMetrics(root)
    gauges = root.groups[METRIC_GROUP].gauges
    assert set(gauges) == set(METRIC_NAMES)
    assert all(gauges[name]() == 0 for name in METRIC_NAMES)

    metrics.request_done(0.020, True)
    metrics.request_done(0.040, False)
    metrics.retry()
    metrics.row_done(RowResult("x", OK, status=200, attempts=2, usage=Usage(7, 3, 10)))
    metrics.row_done(RowResult(None, IGNORED, error="HTTP 404", status=404, attempts=1))
    metrics.row_done(RowResult(None, NULL_INPUT))
    values = {name: gauge() for name, gauge in gauges.items()}
    assert values == {
        **{name: 0 for name in METRIC_NAMES},
        "requests": 2,
        "requestErrors": 1,
        "retries": 1,
        "rowsSucceeded": 1,
        "rowsIgnored": 1,
        "rowsNull": 1,
        "promptTokens": 7,
        "completionTokens": 3,
        "requestLatencyP50Ms": 40,
        "requestLatencyP99Ms": 40,
    }
    assert all(isinstance(v, int) for v in values.values())  # Flink's gauges want numbers


def test_flink_metrics_without_a_metric_group_still_counts() -> None:
    metrics = FlinkMetrics(None)  # python.metric.enabled = false
    metrics.request_done(0.01, True)
    assert metrics.value("requests") == 1


@pytest.mark.flink
def test_metrics_of_a_running_job_through_rest(sim) -> None:
    port = free_port()
    t_env = table_env(
        1,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": "sim-a",
            "ai.max-concurrency": 4,
            "ai.error-handling-strategy": "IGNORE",
        },
        **{
            "rest.port": str(port),
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "metrics.fetcher.update-interval": "500",
            "python.fn-execution.bundle.time": "200",
        },
    )
    register_functions(t_env)
    t_env.execute_sql("""CREATE TEMPORARY TABLE src (id BIGINT) WITH ('connector' = 'datagen',
        'rows-per-second' = '40', 'fields.id.kind' = 'random', 'fields.id.min' = '0',
        'fields.id.max' = '999999')""")
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (a STRING, b STRING) WITH ('connector' = 'blackhole')")
    text = (
        "CASE WHEN id % 10 = 0 THEN CAST(NULL AS STRING) "
        "WHEN id % 10 = 1 THEN CONCAT('[sim:status=404] r', CAST(id AS STRING)) "
        "ELSE CONCAT('r', CAST(id AS STRING)) END"
    )
    result = t_env.execute_sql(
        "INSERT INTO sink SELECT ai_complete(txt), ai_complete_async(txt) "
        f"FROM (SELECT {text} AS txt FROM src)"
    )
    client = result.get_job_client()
    job_id = str(client.get_job_id())

    def every_outcome_counted():
        by_operator: dict[str, dict[str, float]] = {}
        for name, value in job_metrics(port, job_id).items():
            operator, metric = name.split(f".{METRIC_GROUP}.")
            by_operator.setdefault(operator, {})[metric] = value
        done = len(by_operator) == 2 and all(
            all(values.get(o, 0) > 0 for o in OUTCOMES) for values in by_operator.values()
        )
        return by_operator if done else None

    try:
        by_operator = wait_for(every_outcome_counted, 120, "flink_llm metrics of both functions")
    finally:
        client.cancel().result()
        wait_for(lambda: _stopped(client), 60, "the cancelled job to stop")
    assert sorted(op.split(".", 1)[1].split("[")[0] for op in by_operator) == [
        "PythonAsyncCalc",
        "PythonCalc",
    ]
    for operator, values in by_operator.items():
        assert set(values) == set(METRIC_NAMES), operator
        # one consistent snapshot per bundle end: every request is a row's only attempt (IGNORE)
        assert values["requests"] == values["rowsSucceeded"] + values["rowsIgnored"], values
        assert values["requestErrors"] == values["rowsIgnored"], values
        assert values["retries"] == values["rowsFailed"] == values["rowsSkipped"] == 0, values
        # 'r<digits>' is one word: the system prompt (5) + 1 in, 'ANSWER[r<digits>]' out
        assert values["completionTokens"] == values["rowsSucceeded"], values
        assert values["promptTokens"] == 6 * values["rowsSucceeded"], values
        assert 10 <= values["requestLatencyP50Ms"] <= values["requestLatencyP99Ms"], values
    assert sum(v["requests"] for v in by_operator.values()) <= sim.stats()["requests_total"]


def _stopped(client) -> bool:
    try:
        return client.get_job_status().result().is_globally_terminal_state()
    except Exception:
        return True

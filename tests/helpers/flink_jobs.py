"""Helpers for the real-Flink tests: rows and their expected answers, table and stream
environments, the simulator's recorded requests, Flink's REST API.

The fixtures (``flink_runtime``, ``simulator``, ``sim``) live in ``tests/flink/conftest.py``.
"""

from __future__ import annotations

import collections
import json
import math
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from flink_llm_udf.job_parameters import job_parameters_value
from flink_llm_udf.simulator import SimulatorProcess, expected_chat_reply, expected_embedding

SIM_LATENCY_MS = 10

# When a job is cancelled or fails, Beam's data channel to the in-process worker is hung up
# under its reader thread ("Multiplexer hanging up"); pytest reports that during whichever test
# runs then. Shutdown noise of PyFlink, not a failure: every Flink test module ignores it.
IGNORE_BEAM_HANGUP = pytest.mark.filterwarnings(
    "ignore:Exception in thread read_grpc_client_inputs:pytest.PytestUnhandledThreadExceptionWarning"
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Row texts of the SQL jobs: row i is NULL when i % NULL_MOD == NULL_AT, a 404 directive when
# i % FAIL_MOD == FAIL_AT (only where the test asks for failures), else 'row <i> ü'.
NULL_MOD, NULL_AT = 50, 7
FAIL_MOD, FAIL_AT = 40, 13


# --- rows and answers ------------------------------------------------------------------------
def row_text(i: int, *, with_failures: bool = False) -> str | None:
    """The text of row ``i`` in ``text_sql``'s scheme."""
    if i % NULL_MOD == NULL_AT:
        return None
    if with_failures and i % FAIL_MOD == FAIL_AT:
        return f"[sim:status=404] row {i} ü"
    return f"row {i} ü"


def text_sql(column: str = "id", *, with_failures: bool = False) -> str:
    """SQL for ``row_text(column)``, computed in Flink per row (no constant folding of NULL)."""
    cases = [f"WHEN {column} % {NULL_MOD} = {NULL_AT} THEN CAST(NULL AS STRING)"]
    if with_failures:
        cases.append(
            f"WHEN {column} % {FAIL_MOD} = {FAIL_AT} "
            f"THEN CONCAT('[sim:status=404] row ', CAST({column} AS STRING), ' ü')"
        )
    return f"CASE {' '.join(cases)} ELSE CONCAT('row ', CAST({column} AS STRING), ' ü') END"


def is_failure_text(text: str | None) -> bool:
    return text is not None and text.startswith("[sim:status=404]")


def answer(text: str, **options: Any) -> str:
    """The simulator's reply to a row (system prompts do not change it)."""
    return expected_chat_reply([{"role": "user", "content": text}], **options)


def assert_table_rows(rows: list[dict[str, Any]], reviews: dict[int, str | None]) -> None:
    """Rows of the sample table job: one per review; sentiment and embedding are the
    simulator's answers to that review's own text."""
    assert collections.Counter(row["id"] for row in rows) == collections.Counter(list(reviews))
    for row in rows:
        text = reviews[row["id"]]
        assert row["review"] == text, row
        if text is None:
            assert row["sentiment"] is None and row["embedding"] is None, row
            continue
        assert row["sentiment"] == answer(text), row
        expected = expected_embedding(text)
        assert len(row["embedding"]) == len(expected), row
        pairs = zip(row["embedding"], expected, strict=True)
        assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in pairs), row


# --- Flink environments and jobs --------------------------------------------------------------
BASE_CONF = {
    "restart-strategy.type": "none",  # a failed row fails the job at once
    "python.fn-execution.bundle.time": "100",
}


def table_env(parallelism: int, job_parameters: Mapping[str, object] | None = None, **conf: str):
    """A streaming TableEnvironment; ``job_parameters`` become ``pipeline.global-job-parameters``."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    values = {**BASE_CONF, "parallelism.default": str(parallelism), **conf}
    if job_parameters:
        values["pipeline.global-job-parameters"] = job_parameters_value(job_parameters)
    for key, value in values.items():
        config.set(key, value)
    return t_env


def stream_env(parallelism: int, job_parameters: Mapping[str, object] | None = None, **conf: str):
    """A streaming StreamExecutionEnvironment with the same base configuration."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    config = Configuration()
    # Unlike TableEnvironment, PyFlink's DataStream side does not set python.executable for a
    # local run, and Flink then runs `python` from PATH (here: without pyflink) even in loopback
    # mode; without a target, an environment built from a Configuration is not local at all.
    values = {
        **BASE_CONF,
        "execution.target": "local",
        "python.executable": sys.executable,
        "parallelism.default": str(parallelism),
        **conf,
    }
    if job_parameters:
        values["pipeline.global-job-parameters"] = job_parameters_value(job_parameters)
    for key, value in values.items():
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(parallelism)
    return env


def sequence_table(t_env, name: str, rows: int) -> None:
    """A bounded datagen table ``name(id BIGINT)`` with ids 0..rows-1, split over the subtasks."""
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {name} (id BIGINT) WITH ('connector' = 'datagen', "
        f"'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '{rows - 1}')"
    )


def collect(table) -> list[tuple]:
    """Every row of ``table`` (runs the job to its end)."""
    with table.execute().collect() as results:
        return [tuple(row) for row in results]


def failure_text(run: Callable[[], Any]) -> str:
    """Run a job that must fail; return the whole error text (Java and Python parts)."""
    with pytest.raises(Exception) as caught:
        run()
    return str(caught.value)


# --- what the simulator saw -------------------------------------------------------------------
def recorded(sim: SimulatorProcess) -> list[dict[str, Any]]:
    stats = sim.stats(include_requests=True)
    assert stats["recorded_dropped"] == 0
    return stats["requests"]


def chat_bodies(requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [r["body"] for r in requests if r["path"].endswith("/chat/completions")]


def user_text(body: Mapping[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def chat_calls(requests: Iterable[Mapping[str, Any]]) -> collections.Counter:
    """How often each (model, row text) was asked on chat/completions."""
    return collections.Counter((b.get("model"), user_text(b)) for b in chat_bodies(requests))


def embedding_calls(requests: Iterable[Mapping[str, Any]]) -> collections.Counter:
    return collections.Counter(
        (r["body"].get("model"), r["body"]["input"]) for r in requests if r["path"].endswith("/embeddings")
    )


# --- the mini-cluster's REST API ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rest_get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.load(response)


def job_metrics(port: int, job_id: str, marker: str = ".flink_llm.") -> dict[str, float]:
    """Every metric of the job's vertices whose name contains ``marker`` ({name: value})."""
    values: dict[str, float] = {}
    for vertex in rest_get(port, f"/jobs/{job_id}")["vertices"]:
        base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        names = [m["id"] for m in rest_get(port, base) if marker in m["id"]]
        if names:
            for metric in rest_get(port, base + "?get=" + ",".join(names)):
                values[metric["id"]] = float(metric["value"])
    return values


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except OSError as exc:  # REST not up yet
            last_error = exc
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what} (last error: {last_error})")

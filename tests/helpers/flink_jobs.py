"""Helpers for the real-Flink tests: rows and their expected answers, table and stream
environments, the simulator's recorded requests, Flink's REST API.

The fixtures (``flink_runtime``, ``simulator``, ``sim``) live in ``tests/flink/conftest.py``.
"""

from __future__ import annotations

import collections
import json
import math
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from flink_llm_udf.job_parameters import job_parameters_value
from flink_llm_udf.simulator import (
    SimulatorConfig,
    SimulatorProcess,
    expected_chat_reply,
    expected_embedding,
)

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


# --- the fault soak ----------------------------------------------------------------------------
SOAK_ROWS_ENV = "FLINK_LLM_SOAK_ROWS"  # `make test-soak` sets 10000

#: 20 % of requests go wrong: 5 % 429 (Retry-After 0.02 s, retry-after-ms 20), 2 % 500, 2 % 503,
#: 3 % timeouts (the server hangs far past the client's request timeout), 3 % resets, 3 % malformed
#: 200s (half not JSON, half JSON without choices), and a slow tail of 2 % at 20 x the 5 ms latency.
#: Seeded, but which request draws which fault depends on arrival order.
SOAK_FAULTS = SimulatorConfig(
    latency_ms=5.0,
    latency_jitter_ms=3.0,
    tail_fraction=0.02,
    tail_multiplier=20.0,
    fault_429=0.05,
    retry_after_s=0.02,
    retry_after_ms_header=True,
    fault_500=0.02,
    fault_503=0.02,
    fault_timeout=0.03,
    timeout_hang_s=30.0,
    fault_reset=0.03,
    fault_malformed=0.03,
    seed=10,
    record_requests=True,
    record_limit=1_000_000,
)
#: Far above the slowest answer (the tail's 100 ms), so only the timeout faults time out, even
#: when a loaded 2-core machine stalls a worker for a second.
SOAK_REQUEST_TIMEOUT_S = 2.5
#: What a row's error says after each fault was its last attempt.
SOAK_FAULT_ERRORS = {
    "fault_429": "HTTP 429",
    "fault_500": "HTTP 500",
    "fault_503": "HTTP 503",
    "fault_timeout": "no complete response within",
    "fault_reset": "connection error",
    "fault_malformed": "malformed",
}


def soak_rows(default: int) -> int:
    """Rows per soak run: ``FLINK_LLM_SOAK_ROWS`` when set, else ``default``."""
    return int(os.environ.get(SOAK_ROWS_ENV, default))


def soak_texts(tag: str, rows: int) -> list[str]:
    """Unique row texts, so each request in the simulator's log names its row."""
    return [f"soak {tag} {i}" for i in range(rows)]


@dataclass(frozen=True)
class SoakRow:
    """One output row as a path reports it; ``error``/``attempts`` None where the path cannot."""

    text: str | None
    value: str | None
    error: str | None = None
    attempts: int | None = None


def soak_log(sim: SimulatorProcess) -> tuple[dict[str, Any], dict[str, list[tuple[int | None, str | None]]]]:
    """The simulator's stats and its log of chat requests by row text: (status, fault) per request,
    in arrival order (a row's attempts are sequential, so its last request is its last attempt)."""
    stats = sim.stats(include_requests=True)
    assert stats["recorded_dropped"] == 0
    assert len(stats["requests"]) == stats["requests_total"], "the log must hold every request"
    by_text: dict[str, list[tuple[int | None, str | None]]] = collections.defaultdict(list)
    for request in stats.pop("requests"):
        assert request["path"].endswith("/chat/completions"), request["path"]
        by_text[user_text(request["body"])].append((request["status"], request["fault"]))
    return stats, dict(by_text)


def soak_problems(
    rows: Sequence[SoakRow],
    texts: Sequence[str],
    stats: Mapping[str, Any],
    log: Mapping[str, list[tuple[int | None, str | None]]],
    *,
    max_attempts: int,
    must_answer: bool,
) -> list[str]:
    """Every way ``rows`` (one path's output for ``texts``) disagree with the simulator's log.

    Checked: one output row per input text (none lost, none duplicated, none invented); a row with
    a value has its own answer and exactly one good reply in the log (status 200, no fault), its
    last request; a NULL row (only allowed unless ``must_answer``) had no good reply, spent all
    ``max_attempts`` and (where the path reports attempts) has an error naming its last fault; a reported
    ``attempts`` equals the row's requests in the log; no request in the log belongs to no row; and
    the simulator's own counters agree: requests = the log's length (= the sum of attempts where
    reported), good replies (200s less malformed ones) = rows with values, faults = failed requests,
    and every request was either answered (200) or faulted.
    """
    problems: list[str] = []
    counts = collections.Counter(row.text for row in rows)
    expected: collections.Counter[str | None] = collections.Counter(texts)
    if counts != expected:
        missing = sorted((expected - counts).elements())
        extra = sorted(str(t) for t in (counts - expected).elements())
        problems.append(f"rows lost: {missing[:10]} ({len(missing)}); duplicated or unknown: {extra[:10]}")
    for row in rows:
        sent = log.get(row.text or "", [])
        good = [k for k, (status, fault) in enumerate(sent) if status == 200 and fault is None]
        where = f"{row.text!r} ({len(sent)} request(s) {sent})"
        if row.attempts is not None and row.attempts != len(sent):
            problems.append(f"{where}: reports {row.attempts} attempt(s)")
        if not 1 <= len(sent) <= max_attempts:
            problems.append(f"{where}: not 1..{max_attempts} requests")
        if row.value is not None:
            if row.value != answer(row.text or ""):
                problems.append(f"{where}: value {row.value[:80]!r} is not its own answer")
            if good != [len(sent) - 1]:
                problems.append(f"{where}: a value needs one good reply, its last request")
            if row.error is not None:
                problems.append(f"{where}: value and error {row.error!r}")
            continue
        if must_answer:
            problems.append(f"{where}: no value (error {row.error!r})")
        if good:
            problems.append(f"{where}: NULL though the simulator answered")
        if len(sent) != max_attempts:
            problems.append(f"{where}: NULL before its {max_attempts} attempts were spent")
        if row.attempts is not None and row.error is None:
            problems.append(f"{where}: NULL without an error")
        last_fault = sent[-1][1] if sent else None
        if (
            row.error is not None
            and last_fault is not None
            and SOAK_FAULT_ERRORS[last_fault] not in row.error
        ):
            problems.append(f"{where}: error {row.error!r} does not name the last fault")
    stray = sorted(set(log) - set(texts))
    if stray:
        problems.append(f"requests for no row: {stray[:10]} ({len(stray)})")
    attempts = [row.attempts for row in rows]
    if None not in attempts and sum(a or 0 for a in attempts) != stats["requests_total"]:
        problems.append(
            f"attempts sum to {sum(a or 0 for a in attempts)}, the simulator got {stats['requests_total']}"
        )
    good_replies = stats["by_status"].get("200", 0) - stats["faults"].get("fault_malformed", 0)
    values = sum(row.value is not None for row in rows)
    if good_replies != values:
        problems.append(f"the simulator answered {good_replies} times, {values} rows have values")
    failed = sum(fault is not None for sent in log.values() for _, fault in sent)
    if sum(stats["faults"].values()) != failed:
        problems.append(f"faults {stats['faults']} against {failed} failed requests in the log")
    odd = [(t, sent) for t, sent in log.items() if any(f is None and s != 200 for s, f in sent)]
    if odd:  # a client gave up on a normal answer: the machine may be overloaded
        problems.append(f"requests neither answered nor faulted: {odd[:5]} ({len(odd)} rows)")
    return problems


def assert_soak_accounted(
    rows: Sequence[SoakRow],
    texts: Sequence[str],
    sim: SimulatorProcess,
    *,
    max_attempts: int,
    must_answer: bool,
) -> dict[str, Any]:
    """``soak_problems`` against ``sim``'s log must find nothing; returns the simulator's stats."""
    stats, log = soak_log(sim)
    problems = soak_problems(rows, texts, stats, log, max_attempts=max_attempts, must_answer=must_answer)
    values = sum(row.value is not None for row in rows)
    requests, faults = stats["requests_total"], stats["faults"]
    print(f"soak: {len(rows)} rows, {values} values, {requests} requests, faults {faults}")  # shown with -s
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:20])
    return stats


# --- bad inputs ---------------------------------------------------------------------------------
ONE_MB_TEXT = "x" * (1 << 20)  # SQL: REPEAT('x', 1048576)
ANSWERED = "answered"  # a row the endpoint must answer with its own reply
NULL_IN = "null"  # NULL in: NULL out, no request, no error

#: (name, value, what must become of it): ANSWERED, NULL_IN, or a word the row's error must contain
#: (besides "cannot be sent"), naming why it was not sent. For every path that can hand the engine
#: any Python value (the DataStream function's ``text_of``, ``run_batch``).
BAD_INPUTS: list[tuple[str, object, str]] = [
    ("NULL", None, NULL_IN),
    ("empty string", "", ANSWERED),
    ("1 MB text", ONE_MB_TEXT, ANSWERED),
    ("lone high surrogate", "x\ud800y", "surrogate"),
    ("lone low surrogate at the end", "y\udfff", "surrogate"),
    ("int", 42, "int"),
    ("float NaN", math.nan, "NaN"),
    ("float", 2.5, "float"),
    ("bool", True, "bool"),
    ("list", ["a"], "list"),
    ("bytes", b"abc", "bytes"),
    ("dict", {"text": "a"}, "dict"),
]


def bad_input_table() -> list[tuple[str, object, str]]:
    """``BAD_INPUTS`` with a good row (``good row <i>``, ANSWERED) before each entry and after the last."""
    table: list[tuple[str, object, str]] = []
    for i, entry in enumerate(BAD_INPUTS):
        table += [(f"good row {i}", f"good row {i}", ANSWERED), entry]
    last = f"good row {len(BAD_INPUTS)}"
    return [*table, (last, last, ANSWERED)]


def assert_unsent(error: str | None, why: str, where: object) -> None:
    """A row's error says it was not sent, and names why (``why``: a word of ``BAD_INPUTS``)."""
    assert error is not None and "cannot be sent" in error and why in error, (where, error)


def invalid_json_problems(requests: Iterable[Mapping[str, Any]]) -> list[str]:
    """Requests the simulator got that a strict JSON parser would refuse, or that carry a
    non-string message content: a body it could not parse at all (kept as text), a NaN or
    infinity (Python's parser accepts them), a lone surrogate in a string (not Unicode)."""
    problems: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where}: {value!r}")
        elif isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            problems.append(f"{where}: a lone surrogate in {value[:40]!r}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key, where)
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for position, item in enumerate(value):
                walk(item, f"{where}[{position}]")

    for number, request in enumerate(requests):
        body = request["body"]
        if not isinstance(body, dict):
            problems.append(f"request {number}: not JSON: {str(body)[:80]!r}")
            continue
        walk(body, f"request {number}")
        for message in body.get("messages", []):
            if not isinstance(message.get("content"), str):
                problems.append(f"request {number}: content {message.get('content')!r} is not a string")
    return problems

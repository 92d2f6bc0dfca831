"""Paying once across a TaskManager failure: the recovery job with a Redis result cache.

After a TaskManager dies, Flink restores the last checkpoint and replays every row since; without
a cache each replayed row is requested (and billed) again. Here ``jobs/recovery_job.py`` runs on
the session's standalone cluster twice, its TaskManager SIGKILLed mid-stream each time (as in
``test_cluster_e2e.py``), 1.0-1.6 s after the latest completed checkpoint was triggered, so that
the restore replays ~1 s of rows; the simulator's request log shows what was paid for:

* without a cache (the control), the replayed rows are requested again, rows answered long
  before the kill among them: more repeated requests than could have been in flight;
* with ``--cache redis://...`` (a real ``redis-server`` on 127.0.0.1), no row whose answer was in
  Redis once the worker was gone is requested again. The rows that are requested twice had their
  first request in flight when the worker died (sent, not yet answered and stored), so there are
  at most ``max_concurrency x parallelism`` of them. And the replay did happen: Redis answered
  more replayed rows than that (every row is distinct, so a hit is a replayed row);
* both times every row is requested and answered, and the exactly-once sink holds every row once
  with its own answer.

Observations are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers.cluster_setup import (
    JOBS_DIR,
    OPENAI_VARIABLES,
    job_taskmanagers,
    make_key_file,
    read_json_sink,
    taskmanager_pid,
)
from helpers.flink_jobs import answer
from helpers.redis_server import RedisServer

from flink_llm_udf._result_cache import KEY_PREFIX
from flink_llm_udf.simulator import SimulatorProcess
from flink_llm_udf.tools.cluster import StandaloneCluster

if str(JOBS_DIR) not in sys.path:
    sys.path.insert(0, str(JOBS_DIR))

from recovery_job import row_text

pytestmark = pytest.mark.cluster

ROWS = 1500
LATENCY_MS = 80
CONCURRENCY = 16
PARALLELISM = 1
#: Requests that can be sent but not yet answered and stored when the worker dies: replaying
#: their rows finds nothing in Redis, so they are the only ones that may be requested twice.
IN_FLIGHT_BOUND = CONCURRENCY * PARALLELISM
CHAT_PATH = "/v1/chat/completions"
CHECKPOINT_INTERVAL_MS = 2000
#: Seconds after the latest completed checkpoint was triggered in which the TaskManager is killed.
KILL_WINDOW_S = (1.0, 1.6)
#: A row first requested this long before the kill had been answered (and stored) long before.
SETTLED_S = 0.5


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's OPENAI_* variables must not reach the cluster client (nor win over the key file)."""
    for name in OPENAI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _wait_for_kill_window(cluster: StandaloneCluster, sim: SimulatorProcess, job_id: str) -> dict[str, Any]:
    """Until >= 15 % of the rows were requested and the latest completed checkpoint was triggered
    ``KILL_WINDOW_S`` ago (bounded): a restore replays the rows since, ~1 s of them, not a few.

    The next checkpoint is triggered ``CHECKPOINT_INTERVAL_MS`` after the last one, so it has not
    completed yet either: killing at a random moment instead replays anything from the requests in
    flight (when a checkpoint just completed) to a whole interval.
    """
    deadline = time.monotonic() + 180.0
    while True:
        served = sim.stats()["requests_total"]
        latest = (cluster.rest(f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed")
        if latest and served >= 0.15 * ROWS:
            since = time.time() - latest["trigger_timestamp"] / 1000
            if KILL_WINDOW_S[0] <= since <= KILL_WINDOW_S[1]:
                return {"served": served, "checkpoint": latest["id"], "since_checkpoint_s": round(since, 2)}
        state = cluster.job(job_id)["state"]
        assert state in ("CREATED", "INITIALIZING", "RUNNING"), cluster.job_failure(job_id)
        assert served < 0.8 * ROWS, f"{served} of {ROWS} rows requested before a kill window"
        assert time.monotonic() < deadline, f"no kill window: {served=}, {latest=}"
        time.sleep(0.1)


def _wait_finished(cluster: StandaloneCluster, job_id: str) -> int:
    """Until FINISHED (bounded); returns how many failures the job's exception history lists."""
    deadline = time.monotonic() + 240.0
    while (state := cluster.job(job_id)["state"]) != "FINISHED":
        assert state in ("RUNNING", "RESTARTING", "CREATED", "INITIALIZING"), (
            f"job {job_id} {state}{cluster.job_failure(job_id)}"
        )
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.5)
    return len(cluster.rest(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"])


def _stored_ids(store: redis.Redis) -> set[int]:
    """The rows whose answer Redis holds now (an entry's ``v`` is the answer, unique per row)."""
    ids_by_answer = {answer(row_text(i)): i for i in range(1, ROWS + 1)}
    assert len(ids_by_answer) == ROWS
    keys = list(store.scan_iter(match=KEY_PREFIX + "*", count=1000))
    ids: set[int] = set()
    for start in range(0, len(keys), 500):
        for raw in store.mget(keys[start : start + 500]):
            if raw is not None:
                ids.add(ids_by_answer[json.loads(raw)["v"]])
    return ids


def _prompt(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["body"]["messages"] if m["role"] == "user")


@dataclass
class KilledRun:
    """What one run of the recovery job that lost its TaskManager mid-stream left behind."""

    job_id: str
    #: chat requests the simulator received, in arrival order (``time`` is the wall clock)
    requests: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    kill_began: float
    #: the TaskManager and its Python worker (which held the requests in flight) were gone
    killed: float
    checkpoints: dict[str, Any]
    #: failures in the job's exception history (the kill: 1)
    failures: int
    seconds: float
    #: when the kill came: the latest completed checkpoint and the seconds since its trigger
    window: dict[str, Any]
    #: with a cache: rows whose answer Redis held once the worker was gone, and when that was read
    stored_at_kill: set[int] = field(default_factory=set)
    stored_read_at: float = 0.0
    redis_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def per_prompt(self) -> Counter[str]:
        return Counter(_prompt(r) for r in self.requests)

    @property
    def repeated_requests(self) -> int:
        """Requests for a row beyond its first: each one paid for twice."""
        return sum(n - 1 for n in self.per_prompt.values() if n > 1)

    def first_asked(self) -> dict[str, float]:
        first: dict[str, float] = {}
        for request in self.requests:
            first.setdefault(_prompt(request), request["time"])
        return first

    def settled_then_asked_again(self) -> set[str]:
        """Rows first requested >= ``SETTLED_S`` before the kill (long answered) and requested again."""
        first = self.first_asked()
        return {p for p, n in self.per_prompt.items() if n > 1 and first[p] <= self.kill_began - SETTLED_S}

    def observed(self) -> dict[str, Any]:
        return {
            "job": self.job_id,
            "requests_total": len(self.requests),
            "requested_before_kill": sum(r["time"] < self.kill_began for r in self.requests),
            "prompts_requested_twice": sum(n > 1 for n in self.per_prompt.values()),
            "repeated_requests": self.repeated_requests,
            "settled_rows_requested_again": len(self.settled_then_asked_again()),
            "unanswered": sum(r["status"] is None for r in self.requests),
            "failures": self.failures,
            "checkpoints": self.checkpoints["counts"],
            "kill_window": self.window,
            "kill_s": round(self.killed - self.kill_began, 1),
            "rows": len(self.rows),
            "seconds": round(self.seconds, 1),
        }


def _run_and_kill(cluster: StandaloneCluster, tmp_path: Path, cache: RedisServer | None) -> KilledRun:
    """``jobs/recovery_job.py`` (with ``--cache`` when given) losing its TaskManager mid-stream."""
    key = make_key_file(tmp_path / "secrets")
    out = tmp_path / "out"
    store = redis.Redis.from_url(cache.url) if cache is not None else None
    stored_at_kill: set[int] = set()
    stored_read_at = 0.0
    hits_at_kill = hits_after_read = 0
    began = time.monotonic()
    with SimulatorProcess(
        latency_ms=LATENCY_MS, api_key=key.key, seed=11, record_requests=True, record_limit=4 * ROWS
    ) as sim:
        submitted = cluster.submit_python(
            JOBS_DIR / "recovery_job.py",
            [
                "--endpoint", sim.base_url,
                "--rows", str(ROWS),
                "--output", str(out),
                "--api-key-file", str(key.path),
                "--max-concurrency", str(CONCURRENCY),
                "--parallelism", str(PARALLELISM),
                "--retry-backoff", "50ms",
                "--checkpoint-interval-ms", str(CHECKPOINT_INTERVAL_MS),
                *(["--cache", cache.url] if cache is not None else []),
                "--name", f"flink-llm recovery ({'redis cache' if cache else 'no cache'})",
            ],
            detached=True,
            timeout=180,
        )  # fmt: skip
        submitted.check()
        job_id = submitted.job_id
        assert job_id, submitted.stdout + submitted.stderr
        try:
            window = _wait_for_kill_window(cluster, sim, job_id)
            victims = {taskmanager_pid(cluster, tm) for tm in job_taskmanagers(cluster, job_id)} - {None}
            assert len(victims) == 1, victims  # parallelism 1: one slot on one TaskManager
            victim = victims.pop()
            assert victim is not None
            kill_began = time.time()
            cluster.kill_taskmanager(victim)  # SIGKILL; then its Python worker is terminated
            killed = time.time()
            if store is not None:  # nothing of the failed attempt can add to it any more
                hits_at_kill = store.info("stats")["keyspace_hits"]
                stored_at_kill = _stored_ids(store)
                stored_read_at = time.time()
                # the MGET of that read counts as hits too: the replay's start from here
                hits_after_read = store.info("stats")["keyspace_hits"]
            cluster.start_taskmanager()
            failures = _wait_finished(cluster, job_id)
        except BaseException:
            if cluster.job(job_id)["state"] not in ("FINISHED", "FAILED", "CANCELED"):
                cluster.cancel_job(job_id)
            raise
        finally:
            if store is not None:
                store.close()
        stats = sim.stats(include_requests=True)
    requests = sorted((r for r in stats["requests"] if r["path"] == CHAT_PATH), key=lambda r: r["time"])
    assert stats["recorded_dropped"] == 0 and len(requests) == stats["requests_total"]
    run = KilledRun(
        job_id=job_id,
        requests=requests,
        rows=read_json_sink(out),
        kill_began=kill_began,
        killed=killed,
        checkpoints=cluster.rest(f"/jobs/{job_id}/checkpoints"),
        failures=failures,
        seconds=time.monotonic() - began,
        window=window,
        stored_at_kill=stored_at_kill,
        stored_read_at=stored_read_at,
    )
    if cache is not None:
        with redis.Redis.from_url(cache.url) as client:
            stats_at_end = client.info("stats")
        run.redis_stats = {
            "hits_before_kill": hits_at_kill,
            "replay_hits": stats_at_end["keyspace_hits"] - hits_after_read,
            "misses": stats_at_end["keyspace_misses"],
        }
    return run


def _assert_recovered_exactly_once(cluster: StandaloneCluster, run: KilledRun) -> None:
    """Restarted from a checkpoint; every row requested and answered; the sink holds each once."""
    job = cluster.job(run.job_id)
    assert job["state"] == "FINISHED" and job["timestamps"].get("RESTARTING", 0) > 0, job["timestamps"]
    assert run.checkpoints["counts"]["restored"] >= 1, run.checkpoints["counts"]
    every_text = {row_text(i) for i in range(1, ROWS + 1)}
    # No faults: every answer was a 200; a request without one was in flight when the worker died.
    assert {_prompt(r) for r in run.requests if r["status"] == 200} == every_text
    assert {r["status"] for r in run.requests} <= {200, None}
    assert all(r["time"] < run.killed for r in run.requests if r["status"] is None)
    ids = Counter(int(row["id"]) for row in run.rows)
    assert sorted(ids) == list(range(1, ROWS + 1)) and len(run.rows) == ROWS, "ids missing or repeated"
    wrong = [
        row
        for row in run.rows
        if row["input"] != row_text(int(row["id"]))
        or row["value"] != answer(row["input"])
        or row["error"] is not None
        or row["status"] != 200
    ]
    assert not wrong, wrong[:3]


def test_without_a_cache_replayed_rows_are_requested_again(
    standalone_cluster: StandaloneCluster, tmp_path: Path
) -> None:
    """The control: the same run without a cache pays again for the rows Flink replays."""
    run = _run_and_kill(standalone_cluster, tmp_path, cache=None)
    print(f"\n[recovery, no cache] {json.dumps(run.observed())}")
    _assert_recovered_exactly_once(standalone_cluster, run)
    assert run.repeated_requests > IN_FLIGHT_BOUND, run.observed()
    assert run.settled_then_asked_again(), run.observed()


def test_with_redis_replayed_rows_are_answered_from_the_cache(
    standalone_cluster: StandaloneCluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Only rows in flight at the kill are requested twice; none whose answer Redis held."""
    run = _run_and_kill(standalone_cluster, tmp_path, cache=redis_server)
    first_asked = run.first_asked()
    stored_texts = {row_text(i) for i in run.stored_at_kill}
    repeated = {p for p, n in run.per_prompt.items() if n > 1}
    asked_again = [r for r in run.requests if r["time"] > run.stored_read_at and _prompt(r) in stored_texts]
    hits, misses = run.redis_stats["replay_hits"], run.redis_stats["misses"]
    observed = {
        **run.observed(),
        "stored_at_kill": len(run.stored_at_kill),
        "stored_rows_requested_again": len(asked_again),
        "redis_hits_before_kill": run.redis_stats["hits_before_kill"],
        "replayed_rows_from_redis": hits,
        "redis_misses": misses,
    }
    print(f"\n[recovery, redis cache] {json.dumps(observed)}")
    _assert_recovered_exactly_once(standalone_cluster, run)
    # Paying once: a row whose answer Redis held was never requested again ...
    assert not asked_again, [_prompt(r) for r in asked_again[:5]]
    assert not run.settled_then_asked_again(), observed
    # ... so only rows in flight when the worker died (first asked before, never stored) were
    # asked twice: at most max_concurrency x parallelism.
    assert not [p for p in repeated if first_asked[p] >= run.killed or p in stored_texts], repeated
    assert run.repeated_requests <= IN_FLIGHT_BOUND, observed
    # The replay was real: Redis answered replayed rows (each row is distinct, so a hit is a
    # replayed row), more than could have been in flight, each a request without the cache.
    assert run.redis_stats["hits_before_kill"] == 0, observed
    assert hits > IN_FLIGHT_BOUND, observed
    # Each row is looked up before its request: a repeated request was a miss again.
    assert misses >= ROWS + run.repeated_requests, observed

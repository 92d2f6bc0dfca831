"""End to end on the session's standalone cluster (conftest.py): jobs, SQL, recovery, metrics, secrets.

* The sample jobs (``jobs/reviews_table_job.py``, ``jobs/reviews_datastream_job.py``) through
  ``flink run -py``, and ``jobs/reviews.sql`` through ``flink-llm sql --cluster``, against a
  ``SimulatorProcess`` on loopback that requires an API key; every output row is checked
  against the simulator's answer to that row's own text.
* The key reaches the workers only through a 0600 key file, by each documented route:
  ``OPENAI_API_KEY_FILE`` in the TaskManagers' environment (the Python jobs), the job parameter
  ``ai.api-key-file`` (SQL) and the ``api-key-file`` provider option (the recovery job). Each
  route gets its own key and simulator, so a job that succeeds proves its route was used.
* Fault recovery: ``jobs/recovery_job.py`` (checkpoints every second, EXACTLY_ONCE, fixed-delay
  restarts, exactly-once FileSink) loses the TaskManager running it mid-stream (SIGKILL) and
  must still write every row exactly once with its own answer; once clean, once with 20 %
  retryable faults at the simulator.
* The package's gauges on the TaskManagers' Prometheus endpoints while a job runs.
* Last: no key in any cluster log, client output, job config or process environment.

Tests run in file order; the metrics and secrets tests read what the earlier ones recorded.
Timings and observations are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.cluster_setup import (
    JOBS_DIR,
    OPENAI_VARIABLES,
    REPO_ROOT,
    KeyFile,
    descendants,
    job_taskmanagers,
    make_key_file,
    process_texts,
    read_json_sink,
    subprocess_environ,
    taskmanager_pid,
)
from helpers.flink_jobs import answer, assert_table_rows

from flink_llm_udf._observers import METRIC_NAMES
from flink_llm_udf.simulator import SimulatorProcess
from flink_llm_udf.tools.cluster import StandaloneCluster, SubmitResult

if str(JOBS_DIR) not in sys.path:
    sys.path.insert(0, str(JOBS_DIR))

from recovery_job import row_text

pytestmark = pytest.mark.cluster

REVIEWS = JOBS_DIR / "data" / "reviews.jsonl"
RECOVERY_ROWS = 1500
RECOVERY_LATENCY_MS = 80
RECOVERY_CONCURRENCY = 16
#: 20 % retryable faults: HTTP 503 and 500, and connections dropped without an answer.
RECOVERY_FAULTS = {"fault_503": 0.10, "fault_500": 0.05, "fault_reset": 0.05}
#: Prometheus name of a package gauge: ``<prefix><name>`` (README "Metrics").
METRIC_PREFIX = "flink_taskmanager_job_task_operator_flink_llm_"

#: What the tests of this module leave for the metrics and secrets tests (and the report).
CLIENT_OUTPUTS: list[tuple[str, str]] = []  # (which client run, its stdout + stderr)
KEYS: dict[str, KeyFile] = {}  # route -> the key file a job used
OBSERVED: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's OPENAI_* variables must not reach a cluster client (nor win over key files)."""
    for name in OPENAI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def cluster_simulator(cluster_key: KeyFile) -> Iterator[SimulatorProcess]:
    """Requires the session's cluster key, which the workers read via OPENAI_API_KEY_FILE."""
    with SimulatorProcess(latency_ms=20, api_key=cluster_key.key) as sim:
        yield sim


# ---------------------------------------------------------------------------------- helpers
def bundled_reviews() -> dict[int, str | None]:
    rows = [json.loads(line) for line in REVIEWS.read_text(encoding="utf-8").splitlines() if line]
    return {row["id"]: row["review"] for row in rows}


def assert_key_required(sim: SimulatorProcess) -> None:
    """Control: the simulator rejects a request without the key (401)."""
    request = urllib.request.Request(
        sim.base_url + "/chat/completions",
        method="POST",
        data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 401


def record_client(what: str, result: SubmitResult | subprocess.CompletedProcess[str]) -> None:
    CLIENT_OUTPUTS.append((what, (result.stdout or "") + (result.stderr or "")))


def submit(
    cluster: StandaloneCluster, what: str, script: Path, args: list[str], **kwargs: Any
) -> SubmitResult:
    result = cluster.submit_python(script, args, **kwargs)
    record_client(what, result)
    result.check()
    assert result.job_id, result.stdout + result.stderr
    return result


def run_sample_job(
    cluster: StandaloneCluster, sim: SimulatorProcess, what: str, script: str, out: Path, max_concurrency: int
) -> SubmitResult:
    """``flink run -py jobs/<script>`` against ``sim`` into ``out``; returns once it FINISHED."""
    sim.reset()
    result = submit(
        cluster,
        what,
        JOBS_DIR / script,
        ["--endpoint", sim.base_url, "--output", str(out), "--max-concurrency", str(max_concurrency)],
        timeout=300,
    )
    assert cluster.wait_for_job(result.job_id, {"FINISHED"}, timeout=60) == "FINISHED"
    return result


def scrape(urls: list[str]) -> dict[str, str]:
    bodies = {}
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            bodies[url] = response.read().decode()
    return bodies


def metric_values(bodies: dict[str, str], name: str) -> list[float]:
    """Values of every series of the package gauge ``name`` (e.g. ``requests``)."""
    pattern = re.compile(rf"^{METRIC_PREFIX}{name}\{{[^}}]*\}} (\S+)$", re.MULTILINE)
    return [float(value) for body in bodies.values() for value in pattern.findall(body)]


#: Chat functions the sample Table and SQL jobs call per review (sentiment, topic, details, summary).
CHAT_FUNCTIONS_PER_REVIEW = 4


def job_named(cluster: StandaloneCluster, name: str) -> dict[str, Any]:
    matches = [job for job in cluster.jobs() if job["name"] == name]
    assert matches, [job["name"] for job in cluster.jobs()]
    return max(matches, key=lambda job: job["start-time"])


# ---------------------------------------------------------------------------------- 1. jobs
def test_table_job_with_key_file(
    standalone_cluster: StandaloneCluster,
    cluster_simulator: SimulatorProcess,
    cluster_key: KeyFile,
    tmp_path: Path,
) -> None:
    """``flink run -py jobs/reviews_table_job.py``: the key from OPENAI_API_KEY_FILE of the TMs."""
    assert_key_required(cluster_simulator)
    KEYS["OPENAI_API_KEY_FILE"] = cluster_key
    out = tmp_path / "out"
    result = run_sample_job(
        standalone_cluster, cluster_simulator, "table job", "reviews_table_job.py", out, max_concurrency=32
    )
    reviews = bundled_reviews()
    assert_table_rows(read_json_sink(out), reviews)
    answered = sum(text is not None for text in reviews.values())
    stats = cluster_simulator.stats()
    # per review: sentiment, topic, details and summary (chat), and the embedding
    chat = CHAT_FUNCTIONS_PER_REVIEW * answered
    assert stats["by_path"] == {"/v1/chat/completions": chat, "/v1/embeddings": answered}
    assert stats["by_status"] == {"200": chat + answered}  # every request carried the key
    print(f"\n[table job] {len(reviews)} rows, flink run {result.seconds:.1f} s")


def test_datastream_job_with_key_file(
    standalone_cluster: StandaloneCluster,
    cluster_simulator: SimulatorProcess,
    tmp_path: Path,
) -> None:
    """``flink run -py jobs/reviews_datastream_job.py`` (async I/O, FileSink), same key route."""
    out = tmp_path / "out"
    result = run_sample_job(
        standalone_cluster,
        cluster_simulator,
        "datastream job",
        "reviews_datastream_job.py",
        out,
        max_concurrency=16,
    )
    reviews = bundled_reviews()
    records = read_json_sink(out)
    assert Counter(int(record["key"]) for record in records) == Counter(list(reviews))
    for record in records:
        text = reviews[int(record["key"])]
        assert record["input"] == text and record["error"] is None, record
        if text is None:
            assert record["value"] is None and record["attempts"] == 0, record
        else:
            assert record["value"] == answer(text) and record["status"] == 200, record
    answered = sum(text is not None for text in reviews.values())
    assert cluster_simulator.stats()["by_status"] == {"200": answered}
    print(f"\n[datastream job] {len(records)} records, flink run {result.seconds:.1f} s")


# ---------------------------------------------------------------------------------- 2. SQL
def test_sql_script_on_cluster(standalone_cluster: StandaloneCluster, tmp_path: Path) -> None:
    """``flink-llm sql -f reviews.sql --cluster``; the key via SET 'ai.api-key-file'.

    The simulator here requires a key of its own, which only the file named by
    ``ai.api-key-file`` holds (the TaskManagers' OPENAI_API_KEY_FILE holds another one).
    """
    key = make_key_file(tmp_path / "secrets")
    KEYS["ai.api-key-file"] = key
    marker = "e2e-marker-" + key.path.parent.name
    out = tmp_path / "out"
    script = (JOBS_DIR / "reviews.sql").read_text(encoding="utf-8")
    with SimulatorProcess(latency_ms=20, api_key=key.key) as sim:
        assert_key_required(sim)
        sim.reset()
        for placeholder, actual in (
            ("'jobs/data/reviews.jsonl'", f"'{REVIEWS}'"),
            ("'out/reviews-sql'", f"'{out}'"),
            ('"http://127.0.0.1:8000/v1"', f'"{sim.base_url}"'),
        ):
            assert placeholder in script, placeholder
            script = script.replace(placeholder, actual)
        name = "flink-llm reviews (SQL)"
        assert f"SET 'pipeline.name' = '{name}';" in script
        script = script.replace(
            f"SET 'pipeline.name' = '{name}';",
            f"SET 'pipeline.name' = '{name}';\n"
            f"SET 'ai.api-key-file' = '{key.path}';\n"
            f"SET 'ai.e2e-marker' = '{marker}';\n",
        )
        sql_file = tmp_path / "reviews.sql"
        sql_file.write_text(script, encoding="utf-8")
        began = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flink_llm_udf.tools.cli",
                "sql",
                "-f",
                str(sql_file),
                "--cluster",
                "--conf-dir",
                str(standalone_cluster.conf_dir),
                "--timeout",
                "300",
            ],
            cwd=REPO_ROOT,
            env=subprocess_environ(),
            capture_output=True,
            text=True,
            timeout=320,
        )
        seconds = time.monotonic() - began
        record_client("flink-llm sql", done)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        stats = sim.stats()
    reviews = bundled_reviews()
    assert_table_rows(read_json_sink(out), reviews)
    answered = sum(text is not None for text in reviews.values())
    assert stats["by_status"] == {"200": (CHAT_FUNCTIONS_PER_REVIEW + 1) * answered}
    job = job_named(standalone_cluster, name)
    assert job["state"] == "FINISHED"
    OBSERVED["sql_job"] = {"jid": job["jid"], "marker": marker, "key_file": str(key.path)}
    print(f"\n[sql] {len(reviews)} rows, flink-llm sql --cluster {seconds:.1f} s")


# ---------------------------------------------------------------------------------- 3. recovery
def _wait_for_progress(
    cluster: StandaloneCluster, sim: SimulatorProcess, job_id: str, timeout: float = 180.0
) -> dict[str, Any]:
    """Until the simulator served >= 15 % of the rows and >= 2 checkpoints completed."""
    deadline = time.monotonic() + timeout
    while True:
        state = cluster.job(job_id)["state"]
        served = sim.stats()["requests_total"]
        counts = cluster.rest(f"/jobs/{job_id}/checkpoints")["counts"]
        if served >= 0.15 * RECOVERY_ROWS and counts["completed"] >= 2:
            return {"served": served, "checkpoints": counts["completed"], "state": state}
        assert state in ("CREATED", "INITIALIZING", "RUNNING"), cluster.job_failure(job_id)
        assert served < 0.7 * RECOVERY_ROWS, (
            f"the job got {served} of {RECOVERY_ROWS} rows without completing 2 checkpoints"
        )
        assert time.monotonic() < deadline, f"no progress after {timeout} s: {served=}, {counts=}"
        time.sleep(0.5)


def _wait_finished(cluster: StandaloneCluster, job_id: str, timeout: float = 240.0) -> int | None:
    """Until FINISHED; returns the job's numRestarts metric as last seen while it ran."""
    deadline = time.monotonic() + timeout
    restarts = None
    while True:
        state = cluster.job(job_id)["state"]
        if state == "FINISHED":
            return restarts
        assert state in ("RUNNING", "RESTARTING", "CREATED", "INITIALIZING"), (
            f"job {job_id} {state}{cluster.job_failure(job_id)}"
        )
        try:
            metric = cluster.rest(f"/jobs/{job_id}/metrics?get=numRestarts")
            if metric:
                restarts = int(float(metric[0]["value"]))
        except Exception:
            pass
        assert time.monotonic() < deadline, f"job {job_id} still {state} after {timeout} s"
        time.sleep(0.5)


@pytest.mark.parametrize("faults", [{}, RECOVERY_FAULTS], ids=["clean", "faults20"])
def test_recovery_after_taskmanager_kill(
    standalone_cluster: StandaloneCluster,
    tmp_path: Path,
    faults: dict[str, float],
) -> None:
    """SIGKILL the TaskManager running the job mid-stream: every row still exactly once."""
    cluster = standalone_cluster
    variant = "faults20" if faults else "clean"
    key = make_key_file(tmp_path / "secrets")
    KEYS[f"api-key-file ({variant})"] = key
    out = tmp_path / "out"
    times: dict[str, float] = {}
    with SimulatorProcess(latency_ms=RECOVERY_LATENCY_MS, api_key=key.key, seed=11, **faults) as sim:
        began = time.monotonic()
        result = submit(
            cluster,
            f"recovery job ({variant})",
            JOBS_DIR / "recovery_job.py",
            [
                "--endpoint",
                sim.base_url,
                "--rows",
                str(RECOVERY_ROWS),
                "--output",
                str(out),
                "--api-key-file",
                str(key.path),
                "--max-concurrency",
                str(RECOVERY_CONCURRENCY),
                "--retry-backoff",
                "50ms",
                "--name",
                f"flink-llm recovery ({variant})",
            ],
            detached=True,
            timeout=180,
        )
        job_id = result.job_id
        times["submit"] = time.monotonic() - began
        progress = _wait_for_progress(cluster, sim, job_id)
        times["to_kill"] = time.monotonic() - began

        # While it runs: the package's gauges on Prometheus, and no key in any process's
        # command line or environment (the TaskManagers' Python workers included).
        bodies = scrape(cluster.prometheus_urls())
        OBSERVED.setdefault("metrics", {})[variant] = bodies
        processes = descendants(cluster.flink_processes())
        assert not [pid for pid in processes if key.key in process_texts(pid)]
        workers = [pid for pid in processes if "pyflink.fn_execution" in process_texts(pid)]
        assert workers, "no Python worker below the cluster's processes"

        victims = {taskmanager_pid(cluster, tm) for tm in job_taskmanagers(cluster, job_id)}
        victims.discard(None)
        assert len(victims) == 1, victims  # parallelism 1: one slot on one TaskManager
        victim = victims.pop()
        served_at_kill = sim.stats()["requests_total"]
        committed_at_kill = len(read_json_sink(out))
        cluster.kill_taskmanager(victim)
        killed, killed_wall_ms = time.monotonic(), time.time() * 1000
        replacement = cluster.start_taskmanager()
        times["replacement_registered"] = time.monotonic() - killed
        restarts_metric = _wait_finished(cluster, job_id)
        times["kill_to_finished"] = time.monotonic() - killed
        times["total"] = time.monotonic() - began
        stats = sim.stats()

    job = cluster.job(job_id)
    exceptions = cluster.rest(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
    checkpoints = cluster.rest(f"/jobs/{job_id}/checkpoints")
    restored = (checkpoints.get("latest") or {}).get("restored") or {}
    rows = read_json_sink(out)
    ids = Counter(int(row["id"]) for row in rows)
    duplicates = {i: n for i, n in ids.items() if n > 1}
    missing = sorted(set(range(1, RECOVERY_ROWS + 1)) - set(ids))
    wrong = [
        row
        for row in rows
        if row["input"] != row_text(int(row["id"]))
        or row["value"] != answer(row["input"])
        or row["error"] is not None
        or row["status"] != 200
    ]
    observed = {
        "job": job_id,
        "restarts_metric": restarts_metric,
        "exceptions": len(exceptions),
        "first_exception": exceptions[0]["exceptionName"] if exceptions else None,
        "kill_to_restarting_s": round((job["timestamps"].get("RESTARTING", 0) - killed_wall_ms) / 1000, 1),
        "checkpoints": checkpoints["counts"],
        "restored_checkpoint": restored.get("id"),
        "served_at_kill": served_at_kill,
        "committed_rows_at_kill": committed_at_kill,
        "checkpoints_before_kill": progress["checkpoints"],
        "requests_total": stats["requests_total"],
        "by_status": stats["by_status"],
        "faults": stats["faults"],
        "answered_twice": stats["by_status"].get("200", 0) - RECOVERY_ROWS,
        "rows": len(rows),
        "distinct": len(ids),
        "duplicates": sum(n - 1 for n in duplicates.values()),
        "missing": len(missing),
        "wrong": len(wrong),
        "victim_tm": victim,
        "replacement_tm": replacement,
        "python_workers_scanned": len(workers),
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    OBSERVED.setdefault("recovery", {})[variant] = observed
    print(f"\n[recovery {variant}] {json.dumps(observed)}")

    assert job["state"] == "FINISHED"
    assert job["timestamps"].get("RESTARTING", 0) > 0, job["timestamps"]  # it restarted ...
    assert exceptions, "no failure in the exception history"
    assert restarts_metric is None or restarts_metric >= 1, restarts_metric
    assert checkpoints["counts"]["restored"] >= 1 and restored, checkpoints  # ... from a checkpoint
    assert not duplicates, f"{len(duplicates)} ids written more than once, e.g. {list(duplicates)[:5]}"
    assert not missing, f"{len(missing)} ids missing, e.g. {missing[:5]}"
    assert not wrong, wrong[:3]
    assert len(rows) == RECOVERY_ROWS
    assert "401" not in stats["by_status"]
    if faults:
        assert sum(stats["faults"].values()) > 0.1 * RECOVERY_ROWS, stats["faults"]


# ---------------------------------------------------------------------------------- 4. metrics
def test_llm_metrics_on_prometheus(standalone_cluster: StandaloneCluster) -> None:
    """The package's gauges, as scraped from the TaskManagers while the recovery jobs ran."""
    scrapes = OBSERVED.get("metrics")
    if not scrapes:
        pytest.skip("needs test_recovery_after_taskmanager_kill (it scrapes while its job runs)")
    for variant, bodies in scrapes.items():
        names = sorted(
            {
                line.split("{", 1)[0]
                for body in bodies.values()
                for line in body.splitlines()
                if line.startswith(METRIC_PREFIX)
            }
        )
        OBSERVED.setdefault("metric_names", set()).update(names)
        assert names == sorted(METRIC_PREFIX + name for name in METRIC_NAMES), names
        requests = metric_values(bodies, "requests")
        assert requests and max(requests) > 0, (variant, requests)
        assert max(metric_values(bodies, "rowsSucceeded")) > 0
        assert max(metric_values(bodies, "promptTokens")) > 0
        assert max(metric_values(bodies, "completionTokens")) > 0
        assert max(metric_values(bodies, "requestLatencyP50Ms")) >= RECOVERY_LATENCY_MS * 0.9
        if variant == "faults20":
            assert max(metric_values(bodies, "retries")) > 0
            assert max(metric_values(bodies, "requestErrors")) > 0
        print(
            f"\n[metrics {variant}] requests={max(requests):.0f} "
            f"retries={max(metric_values(bodies, 'retries')):.0f}"
        )
    print("\n[metrics] " + " ".join(sorted(OBSERVED["metric_names"])))


# ---------------------------------------------------------------------------------- 5. secrets
def test_no_key_in_logs_client_output_or_job_config(
    standalone_cluster: StandaloneCluster,
    cluster_key: KeyFile,
) -> None:
    """After the jobs above: no key anywhere Flink writes or shows, with positive controls."""
    cluster = standalone_cluster
    if not KEYS or not CLIENT_OUTPUTS:
        pytest.skip("needs the job tests of this module to have run first")
    keys = {route: key.key for route, key in KEYS.items()}
    keys.setdefault("OPENAI_API_KEY_FILE", cluster_key.key)

    places: dict[str, str] = {}
    for path in sorted(p for p in cluster.workdir.rglob("*") if p.is_file()):  # log/, conf/, ...
        places[str(path)] = path.read_text(errors="replace")
    assert set(map(str, cluster.log_files())) <= set(places)
    for what, text in CLIENT_OUTPUTS:
        places[f"client output: {what}"] = text
    for job in cluster.jobs():
        for suffix in ("", "/config", "/exceptions", "/plan", "/checkpoints/config"):
            try:
                places[f"REST /jobs/{job['jid']}{suffix}"] = json.dumps(
                    cluster.rest(f"/jobs/{job['jid']}{suffix}")
                )
            except Exception as exc:
                places[f"REST /jobs/{job['jid']}{suffix}"] = f"unavailable: {exc}"
    for path in ("/jobmanager/config", "/jobmanager/environment", "/taskmanagers"):
        places[f"REST {path}"] = json.dumps(cluster.rest(path))
    for tm in cluster.rest("/taskmanagers")["taskmanagers"]:
        places[f"REST /taskmanagers/{tm['id']}"] = json.dumps(cluster.rest(f"/taskmanagers/{tm['id']}"))
    for pid in descendants(cluster.flink_processes()):
        places[f"/proc/{pid} cmdline+environ"] = process_texts(pid)

    hits = [(route, place) for route, key in keys.items() for place, text in places.items() if key in text]
    log_count = len(cluster.log_files())
    print(
        f"\n[secrets] {len(keys)} keys, {len(places)} places ({log_count} log files, "
        f"{len(CLIENT_OUTPUTS)} client outputs, {len(cluster.jobs())} jobs): {len(hits)} hits"
    )
    assert hits == []

    # Positive controls: the same search finds what is there on purpose.
    assert all(key.key in key.path.read_text() for key in KEYS.values())
    path = str(cluster_key.path)  # OPENAI_API_KEY_FILE=<path> in the Python workers' environment
    tm_logs = [p for p in places if "taskexecutor" in p and path in places[p]]
    client_logs = [p for p in places if "client" in Path(p).name and path in places[p]]
    print(
        f"[secrets] key file path found in {len(tm_logs)} TaskManager log(s), "
        f"{len(client_logs)} client log(s)"
    )
    assert tm_logs, "the workers' environment (with the key file's path) is not in any TaskManager log"
    sql = OBSERVED.get("sql_job")
    if sql:
        config = places[f"REST /jobs/{sql['jid']}/config"]
        assert sql["marker"] in config, config[:2000]  # SET 'ai.*' is in the web UI's job config
        shown = json.loads(config).get("execution-config", {}).get("user-config", {}).get("ai.api-key-file")
        print(f"[secrets] SQL job config: ai.e2e-marker shown; ai.api-key-file shown as {shown!r}")

"""A real standalone Flink cluster from the wheel: start, run Python jobs, metrics, stop.

The cluster is the session's ``standalone_cluster`` (conftest.py), shared with
test_cluster_e2e.py; its teardown checks that stopping it leaves no Flink process behind.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.cluster_setup import HELPERS_DIR, OPENAI_VARIABLES, read_csv_sink
from helpers.cluster_udfs import WORDS

from flink_llm_udf.tools import sql_file
from flink_llm_udf.tools.cluster import StandaloneCluster
from flink_llm_udf.tools.cluster.processes import is_descendant

pytestmark = pytest.mark.cluster


def test_cluster_comes_up_with_two_taskmanagers(standalone_cluster: StandaloneCluster) -> None:
    overview = standalone_cluster.overview()
    assert overview["taskmanagers"] == 2
    assert overview["slots-total"] == 4
    assert overview["flink-version"].startswith("2.3")
    assert len(standalone_cluster.taskmanager_pids()) == 2
    assert len(standalone_cluster.jobmanager_pids()) == 1
    print(f"cluster start: {standalone_cluster.last_start_seconds:.1f} s")


def test_flink_run_python_udf_job(standalone_cluster: StandaloneCluster, tmp_path: Path) -> None:
    out = tmp_path / "words"
    result = standalone_cluster.submit_python(
        HELPERS_DIR / "cluster_udfs.py", ["--out", str(out)], timeout=240
    )
    result.check()
    assert result.job_id, result.stdout
    assert standalone_cluster.wait_for_job(result.job_id, {"FINISHED"}, timeout=60) == "FINISHED"
    rows = sorted(read_csv_sink(out), key=lambda row: int(row[0]))
    assert rows == [[str(i), word, word.upper()] for i, word in WORDS]
    print(f"flink run -py: {result.seconds:.1f} s")


def test_sql_file_on_cluster(
    standalone_cluster: StandaloneCluster,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in OPENAI_VARIABLES:  # `flink run` inherits this process's environment
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "sql-out"
    script = tmp_path / "job.sql"
    script.write_text(
        f"""-- runs as a job on the standalone cluster
SET 'pipeline.name' = 'sql-runner-cluster-test';
SET 'python.files' = '{HELPERS_DIR / "cluster_udfs.py"}';
CREATE TEMPORARY FUNCTION py_upper AS 'cluster_udfs.upper' LANGUAGE PYTHON;
CREATE TEMPORARY FUNCTION worker_pid AS 'cluster_udfs.worker_pid' LANGUAGE PYTHON;
CREATE TEMPORARY FUNCTION ai_model AS 'cluster_udfs.ai_model_parameter' LANGUAGE PYTHON;
SET 'ai.model' = 'on-the-cluster';
CREATE TABLE sql_out (id INT, word STRING, upper_word STRING, pid STRING, model STRING)
  WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv');
INSERT INTO sql_out
SELECT id, word, py_upper(word), worker_pid(word), ai_model(word)
FROM (VALUES (1, 'semi;colon'), (2, 'it''s'), (3, CAST(NULL AS STRING))) AS t(id, word);
"""
    )
    began = time.monotonic()
    status = sql_file.main(
        ["-f", str(script), "--cluster", "--conf-dir", str(standalone_cluster.conf_dir), "--timeout", "240"]
    )
    seconds = time.monotonic() - began
    output = capfd.readouterr()
    assert status == 0, output.out + output.err
    rows = sorted(read_csv_sink(out), key=lambda row: int(row[0]))
    assert [row[:3] for row in rows] == [
        ["1", "semi;colon", "SEMI;COLON"],
        ["2", "it's", "IT'S"],
        ["3", "", ""],
    ]
    # The UDF ran in a TaskManager's Python worker, not in this process.
    assert all(row[3].isdigit() and int(row[3]) != os.getpid() for row in rows), rows
    # SET 'ai.model' reached the TaskManager's worker as a job parameter.
    assert {row[4] for row in rows} == {"on-the-cluster"}
    jobs = {job["name"]: job["state"] for job in standalone_cluster.jobs()}
    assert jobs.get("sql-runner-cluster-test") == "FINISHED", jobs
    print(f"sql runner on cluster: {seconds:.1f} s")


def test_prometheus_serves_flink_metrics(standalone_cluster: StandaloneCluster) -> None:
    urls = standalone_cluster.prometheus_urls()
    assert len(urls) == 3, urls  # the JobManager and two TaskManagers
    bodies = []
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            bodies.append(response.read().decode())
    assert sum("flink_jobmanager_numRegisteredTaskManagers" in body for body in bodies) == 1
    assert sum("flink_taskmanager_Status_JVM_CPU_Load" in body for body in bodies) == 2


def test_killed_taskmanager_is_replaced(standalone_cluster: StandaloneCluster) -> None:
    victim = standalone_cluster.kill_taskmanager()
    assert victim not in standalone_cluster.taskmanager_pids()
    # its Python UDF workers went with it: every worker left belongs to a live TaskManager
    for worker in standalone_cluster.python_workers():
        assert any(is_descendant(worker, tm) for tm in standalone_cluster.taskmanager_pids()), worker
    began = time.monotonic()
    replacement = standalone_cluster.start_taskmanager()
    assert replacement in standalone_cluster.taskmanager_pids()
    assert len(standalone_cluster.taskmanager_pids()) == 2
    print(f"replacement TaskManager registered in {time.monotonic() - began:.1f} s")


def test_python_workers_are_found_by_environment_and_ancestry(tmp_path: Path) -> None:
    """A stand-in for Flink's UDF runner (a shell and its child) with the cluster's environment."""
    import subprocess

    cluster = StandaloneCluster(tmp_path / "cluster")
    env = dict(os.environ, FLINK_CONF_DIR=str(cluster.conf_dir), BOOT_LOG_DIR=str(tmp_path))
    runner = subprocess.Popen(["bash", "-c", "sleep 30 & wait"], env=env)
    try:
        deadline = time.monotonic() + 10
        while len(cluster.python_workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = cluster.python_workers()
        assert runner.pid in workers and len(workers) == 2, workers
        child = next(pid for pid in workers if pid != runner.pid)
        assert is_descendant(child, runner.pid) and is_descendant(child, os.getpid())
        assert not is_descendant(runner.pid, child)
        other = StandaloneCluster(tmp_path / "other")  # another cluster's conf dir: not ours
        assert other.python_workers() == []
    finally:
        for pid in cluster.python_workers():  # the shell and its sleep
            os.kill(pid, signal.SIGKILL)
        runner.wait(10)
        deadline = time.monotonic() + 10
        while cluster.python_workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cluster.python_workers() == []

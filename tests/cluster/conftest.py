"""Session fixtures shared by test modules.

``standalone_cluster``: ONE standalone Flink cluster (JobManager + 2 TaskManagers from the wheel,
free ports, 127.0.0.1) for every ``@pytest.mark.cluster`` test of the session. Pytest creates it
only when the first test that asks for it runs -- a run without cluster tests starts no JVM --
and stops it at the end of the session, failing the teardown if a Flink process survives.

``cluster_key``: the API key the cluster's Python workers find through ``OPENAI_API_KEY_FILE``
(set in the daemons' environment; the README's per-cluster route). Only the file's *path* is in
any environment; the key itself never is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cluster_setup import KeyFile, make_key_file, make_test_cluster, without_openai_environment

from flink_llm_udf.tools.cluster import StandaloneCluster


@pytest.fixture(scope="session")
def cluster_key(tmp_path_factory: pytest.TempPathFactory) -> KeyFile:
    """A distinctive key in a 0600 file; the cluster's workers get ``OPENAI_API_KEY_FILE=<path>``."""
    return make_key_file(tmp_path_factory.mktemp("cluster-secrets"))


@pytest.fixture(scope="session")
def standalone_cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_key: KeyFile
) -> Iterator[StandaloneCluster]:
    """The session's running cluster (2 TaskManagers, 2 slots each); stopped after the last test."""
    cluster = make_test_cluster(
        tmp_path_factory.mktemp("cluster"), env={"OPENAI_API_KEY_FILE": str(cluster_key.path)}
    )
    with without_openai_environment():  # the daemons inherit this process's environment
        cluster.start()
    print(f"\n[cluster] started in {cluster.last_start_seconds:.1f} s at {cluster.rest_url}")
    try:
        yield cluster
    finally:
        pids = cluster.flink_processes()
        began = time.monotonic()
        try:
            cluster.stop()
        finally:
            left = cluster.flink_processes() + cluster.python_workers()
        print(f"\n[cluster] stopped in {time.monotonic() - began:.1f} s")
        assert left == [], f"Flink processes or Python workers still alive after stop: {left}"
        assert all(_gone(pid) for pid in pids), pids
        assert not list(cluster.pid_dir.glob("*.pid"))


def _gone(pid: int) -> bool:
    """Not alive: no /proc entry, or a zombie (our own child not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True

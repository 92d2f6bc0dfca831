"""Helpers for tests that run a real standalone Flink cluster (see test_cluster.py).

A module-scoped fixture built on :func:`make_test_cluster` starts one cluster per test module
(10-30 s on 2 cores) and stops it at the end::

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        with make_test_cluster(tmp_path_factory.mktemp("cluster")) as running:
            yield running
"""
from __future__ import annotations

import csv
import os
import socket
import sys
from pathlib import Path

from flink_llm_udf.cluster import StandaloneCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_test_cluster(workdir: Path, **overrides: object) -> StandaloneCluster:
    """A 2-TaskManager cluster on free ports, never 8081/6123, so a user's cluster is left alone.

    The daemons get PYTHONPATH = repo root + tests/, so their Python workers import
    ``flink_llm_udf`` and the test UDF modules even when the package is not installed.
    """
    pythonpath = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    options: dict[str, object] = {
        "taskmanagers": 2,
        "python": sys.executable,
        "rest_port": free_port(),
        "rpc_port": free_port(),
        "env": {"PYTHONPATH": pythonpath},
        "start_timeout": 90.0,
    }
    options.update(overrides)
    return StandaloneCluster(workdir, **options)  # type: ignore[arg-type]


def read_csv_sink(directory: Path) -> list[list[str]]:
    """Rows of a filesystem CSV sink: every committed part file (in-progress ones start with '.')."""
    rows: list[list[str]] = []
    for part in sorted(directory.rglob("*")):
        if part.is_file() and not part.name.startswith((".", "_")):
            with part.open(newline="", encoding="utf-8") as handle:
                rows.extend(csv.reader(handle))
    return rows

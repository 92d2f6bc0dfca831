"""Helpers for tests that run a real standalone Flink cluster (test_cluster.py, test_cluster_e2e.py).

One cluster serves the whole pytest session: the ``standalone_cluster`` fixture in
``conftest.py`` builds it with :func:`make_test_cluster`, starts it when the first cluster test
asks for it and stops it at the end of the session.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flink_llm_udf.tools.cluster import StandaloneCluster, clean_environ
from flink_llm_udf.tools.cluster.processes import listening_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
#: This folder: test UDF modules (``cluster_udfs.py``) that Flink's Python workers import.
HELPERS_DIR = Path(__file__).resolve().parent
JOBS_DIR = REPO_ROOT / "jobs"

#: The variables the package reads for its endpoint and key. A developer's own key in the test
#: process's environment must neither reach the cluster (Flink logs the workers' environment)
#: nor win over the key file a test sets up, so cluster daemons and clients run without them.
OPENAI_VARIABLES = ("OPENAI_API_KEY", "OPENAI_API_KEY_FILE", "OPENAI_BASE_URL")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_test_cluster(workdir: Path, **overrides: object) -> StandaloneCluster:
    """A 2-TaskManager cluster on free ports, never 8081/6123, so a user's cluster is left alone.

    The daemons get PYTHONPATH = repo root + tests/helpers/, so their Python workers import
    ``flink_llm_udf`` and the test UDF modules even when the package is not installed.
    ``env`` in ``overrides`` is added to that.
    """
    pythonpath = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(HELPERS_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    env = {"PYTHONPATH": pythonpath, **dict(overrides.pop("env", None) or {})}  # type: ignore[call-overload]
    options: dict[str, object] = {
        "taskmanagers": 2,
        "python": sys.executable,
        "rest_port": free_port(),
        "rpc_port": free_port(),
        "env": env,
        "start_timeout": 90.0,
    }
    options.update(overrides)
    return StandaloneCluster(workdir, **options)  # type: ignore[arg-type]


@contextlib.contextmanager
def without_openai_environment() -> Iterator[None]:
    """Run the block with :data:`OPENAI_VARIABLES` removed from ``os.environ`` (restored after)."""
    saved = {name: os.environ.pop(name) for name in OPENAI_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def subprocess_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``clean_environ()`` without :data:`OPENAI_VARIABLES`, plus ``extra``: for ``flink``
    clients started by tests (a local PyFlink run leaves gateway variables in ``os.environ``)."""
    env = {k: v for k, v in clean_environ().items() if k not in OPENAI_VARIABLES}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class KeyFile:
    """A distinctive API key and the 0600 file holding it (the only way the key reaches a job)."""

    key: str
    path: Path


def make_key_file(directory: Path, name: str = "openai-key") -> KeyFile:
    """A fresh ``sk-test-<32 hex>`` key written to ``directory/name`` with mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    key = "sk-test-" + secrets.token_hex(16)
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    return KeyFile(key, path)


def read_csv_sink(directory: Path) -> list[list[str]]:
    """Rows of a filesystem CSV sink: every committed part file (in-progress ones start with '.')."""
    rows: list[list[str]] = []
    for part in committed_files(directory):
        with part.open(newline="", encoding="utf-8") as handle:
            rows.extend(csv.reader(handle))
    return rows


def read_json_sink(directory: Path) -> list[dict[str, Any]]:
    """Rows of a filesystem JSON sink or a row-format ``FileSink``: committed part files only."""
    rows: list[dict[str, Any]] = []
    for part in committed_files(directory):
        rows += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line]
    return rows


def committed_files(directory: Path) -> list[Path]:
    """Part files a sink has committed (in-progress and pending ones start with '.' or '_')."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))


def taskmanager_pid(cluster: StandaloneCluster, taskmanager_id: str) -> int | None:
    """The PID of the TaskManager the REST API lists as ``taskmanager_id`` (``host:port-suffix``)."""
    port = taskmanager_id.rsplit("-", 1)[0].rpartition(":")[2]
    if not port.isdigit():
        return None
    for pid in cluster.taskmanager_pids():
        if int(port) in listening_ports(pid):
            return pid
    return None


def job_taskmanagers(cluster: StandaloneCluster, job_id: str) -> set[str]:
    """REST ids of the TaskManagers that run a subtask of ``job_id``'s vertices right now."""
    found: set[str] = set()
    for vertex in cluster.job(job_id).get("vertices", []):
        listed = cluster.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
        for tm in listed.get("taskmanagers", []):
            if tm.get("status") in ("RUNNING", "INITIALIZING", "DEPLOYING"):
                found.add(tm["taskmanager-id"])
    return found


def descendants(pids: Iterable[int]) -> set[int]:
    """``pids`` and every live process below them (Linux /proc), e.g. a TaskManager's Python workers."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def process_texts(pid: int) -> str:
    """A process's command line and environment, NUL-separated ('' when it is gone)."""
    parts = []
    for name in ("cmdline", "environ"):
        try:
            parts.append(Path(f"/proc/{pid}/{name}").read_bytes().decode(errors="replace"))
        except OSError:
            pass
    return "\0".join(parts)

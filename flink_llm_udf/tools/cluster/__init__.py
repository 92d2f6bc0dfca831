"""A standalone Flink cluster on this machine, run from the apache-flink wheel.

The wheel ships a complete Flink distribution in ``site-packages/pyflink`` (``bin/``, ``lib/``,
``opt/``, ``plugins/``). :class:`StandaloneCluster` starts one JobManager and N TaskManagers
from it with the wheel's own ``bin/jobmanager.sh start`` / ``bin/taskmanager.sh start`` (no ssh,
unlike ``start-cluster.sh``), and keeps everything it writes in a working directory::

    <workdir>/conf/     config.yaml generated from flink_llm_udf/tools/cluster/conf/config.yaml + overrides,
                        the wheel's log4j/logback files, masters, workers
    <workdir>/log/      FLINK_LOG_DIR: one .log and .out per process
    <workdir>/pid/      FLINK_PID_DIR: the daemons' PID files
    <workdir>/plugins/  FLINK_PLUGINS_DIR: only the Prometheus reporter

so nothing is written into site-packages. All Flink addresses are 127.0.0.1. Two things still
listen on every interface and cannot be moved by configuration: the Prometheus reporter's HTTP
server and PyFlink's Python-worker plumbing (Beam gRPC servers) while a Python job runs.

Command line (``flink-llm cluster ...``)::

    flink-llm cluster start  [--workdir .cluster] [--taskmanagers 2] [--python PATH]
                             [--rest-port 8081] [--rpc-port 6123] [--set key=value ...]
    flink-llm cluster status [--workdir .cluster]
    flink-llm cluster stop   [--workdir .cluster]

Python API (tests, benchmarks)::

    with StandaloneCluster(tmp_path / "cluster", rest_port=18081, rpc_port=16123) as cluster:
        result = cluster.submit_python("job.py", ["--out", str(out)])
        cluster.wait_for_job(result.job_id, {"FINISHED"}, timeout=60)

Nothing here imports pyflink: starting and stopping a cluster costs no JVM in this process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flink_llm_udf._errors import FlinkLLMError

__all__ = [
    "CONFIG_PATH",
    "PYFLINK_PROCESS_VARIABLES",
    "ClusterError",
    "StandaloneCluster",
    "SubmitResult",
    "clean_environ",
    "find_flink_home",
    "flatten_config",
    "main",
]

logger = logging.getLogger(__name__)

#: The one Flink configuration of this project (also copied into the Docker image).
CONFIG_PATH = Path(__file__).resolve().parent / "conf" / "config.yaml"

#: Names the daemons' PID and log files (``flink-<ident>-taskexecutor.pid``); fixed so that
#: they do not depend on $USER, which CI may not set.
IDENT = "flink-llm"
_JM_DAEMON = "standalonesession"
_TM_DAEMON = "taskexecutor"
_TERMINAL_JOB_STATES = frozenset({"FINISHED", "FAILED", "CANCELED", "SUSPENDED"})
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


#: Secrets that must not reach a Flink daemon's environment, which Flink logs.
SECRET_VARIABLES = ("OPENAI_API_KEY",)

#: Variables a local PyFlink run (mini-cluster, loopback worker) leaves in ``os.environ``.
#: Inherited by ``flink run``, PYTHON_LOOPBACK_SERVER_ADDRESS makes the *cluster's* Python
#: workers call back into that local process -- UDFs then silently run there -- so every
#: subprocess started here gets an environment without them.
PYFLINK_PROCESS_VARIABLES = frozenset(
    {
        "PYTHON_LOOPBACK_SERVER_ADDRESS",
        "PYFLINK_GATEWAY_DISABLED",
        "PYFLINK_GATEWAY_PORT",
        "_PYFLINK_CONN_INFO_PATH",
        "_PYTHON_WORKER_MEMORY_LIMIT",
        "_python_worker_execution_mode",
        "BOOT_LOG_DIR",
        "SEMI_PERSISTENT_DIRECTORY",
        "TABLE_LOCAL_TIME_ZONE",
        "FLINK_BIN_DIR",
        "FLINK_HOME",
        "FLINK_LIB_DIR",
        "FLINK_OPT_DIR",
        "FLINK_PLUGINS_DIR",
        "FLINK_CONF_DIR",
        "python",
    }
)


def clean_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) without :data:`PYFLINK_PROCESS_VARIABLES`."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items() if key not in PYFLINK_PROCESS_VARIABLES}


class ClusterError(FlinkLLMError):
    """The standalone cluster could not be started, reached, used or stopped."""


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What ``flink run`` did: the job it submitted (if any) and its exit status and output."""

    job_id: str | None
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> SubmitResult:
        """Return self, or raise :class:`ClusterError` with the output's tail if ``flink run`` failed."""
        if self.returncode != 0:
            raise ClusterError(
                f"flink run exited with {self.returncode}:\n{_tail(self.stdout + self.stderr, 40)}"
            )
        return self


def find_flink_home() -> Path:
    """The Flink distribution inside the installed apache-flink wheel (``.../pyflink``)."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("apache-flink is not installed in this Python environment")
    for location in spec.submodule_search_locations:
        home = Path(location)
        if (home / "bin" / "flink").exists() and any((home / "lib").glob("flink-dist*.jar")):
            return home
    raise ClusterError(f"no Flink distribution (bin/flink, lib/flink-dist*.jar) under {spec.origin}")


def flatten_config(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flink's reading of a nested config.yaml: ``{"rest": {"port": 1}}`` -> ``{"rest.port": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class StandaloneCluster:
    """One JobManager and N TaskManagers on 127.0.0.1, started from the wheel; a context manager.

    ``rest_port`` and ``rpc_port`` are the only fixed ports (TaskManagers, blob server and data
    ports are ephemeral; Prometheus takes the first free port of ``prometheus_ports`` per process),
    so a test picks two free ports and never clashes with a user's cluster on 8081/6123.
    ``config`` adds or overrides configuration keys; ``env`` is added to the environment of the
    daemons (and so of their Python workers -- which Flink writes into its logs: no secrets).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] = ".cluster",
        *,
        taskmanagers: int = 2,
        python: str | os.PathLike[str] | None = None,
        rest_port: int = 8081,
        rpc_port: int = 6123,
        prometheus_ports: str = "9249-9260",
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        flink_home: str | os.PathLike[str] | None = None,
    ) -> None:
        if taskmanagers < 0:
            raise ValueError(f"taskmanagers must be >= 0, got {taskmanagers}")
        self.workdir = Path(workdir).resolve()
        self.taskmanagers = taskmanagers
        self.python = str(python or sys.executable)
        self.rest_port = rest_port
        self.rpc_port = rpc_port
        self.prometheus_ports = prometheus_ports
        self.config = dict(config or {})
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.flink_home = Path(flink_home) if flink_home else find_flink_home()
        self.last_start_seconds: float | None = None
        self.last_stop_seconds: float | None = None

    @classmethod
    def from_workdir(cls, workdir: str | os.PathLike[str] = ".cluster", **kwargs: Any) -> StandaloneCluster:
        """The cluster whose configuration ``start()`` wrote into ``workdir`` (for stop/status)."""
        conf = Path(workdir) / "conf" / "config.yaml"
        if not conf.exists():
            raise ClusterError(f"{conf} does not exist: no cluster was started in {workdir}")
        flat = yaml.safe_load(conf.read_text()) or {}
        return cls(
            workdir,
            rest_port=int(flat.get("rest.port", 8081)),
            rpc_port=int(flat.get("jobmanager.rpc.port", 6123)),
            python=flat.get("python.executable"),
            prometheus_ports=str(flat.get("metrics.reporter.prom.port", "9249-9260")),
            **kwargs,
        )

    # ------------------------------------------------------------------ paths and environment
    @property
    def conf_dir(self) -> Path:
        return self.workdir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def pid_dir(self) -> Path:
        return self.workdir / "pid"

    @property
    def plugins_dir(self) -> Path:
        return self.workdir / "plugins"

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:<rest_port>``: the REST API and the web UI."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def jobmanager_address(self) -> str:
        """``127.0.0.1:<rest_port>``, the value of ``flink run -m``."""
        return f"127.0.0.1:{self.rest_port}"

    def flink_env(self) -> dict[str, str]:
        """The environment for Flink scripts: this process's, plus the cluster's directories."""
        # Also drops FLINK_HOME & co.: pointing elsewhere, they would mix two distributions.
        env = clean_environ()
        env.update(self.extra_env)
        for name in SECRET_VARIABLES:
            # Flink writes the Python workers' environment into its logs (field note 12).
            if env.pop(name, None) is not None:
                logger.warning(
                    "%s is not passed to the cluster: Flink would write it into its logs; "
                    "put the key in a file and set OPENAI_API_KEY_FILE instead",
                    name,
                )
        env.update(
            FLINK_CONF_DIR=str(self.conf_dir),
            FLINK_LOG_DIR=str(self.log_dir),
            FLINK_PID_DIR=str(self.pid_dir),
            FLINK_PLUGINS_DIR=str(self.plugins_dir),
            FLINK_IDENT_STRING=IDENT,
        )
        return env

    def effective_config(self) -> dict[str, Any]:
        """Our config.yaml, flattened, with this cluster's overrides applied."""
        flat = flatten_config(yaml.safe_load(CONFIG_PATH.read_text()))
        flat.update(
            {
                "taskmanager.host": "127.0.0.1",
                "rest.port": self.rest_port,
                "jobmanager.rpc.port": self.rpc_port,
                "metrics.reporter.prom.port": self.prometheus_ports,
                "python.executable": self.python,
                "python.client.executable": self.python,
            }
        )
        flat.update(self.config)
        return flat

    def prepare(self) -> None:
        """Write conf/, log/, pid/ and plugins/ into the working directory."""
        for directory in (self.conf_dir, self.log_dir, self.pid_dir, self.plugins_dir):
            directory.mkdir(parents=True, exist_ok=True)
        wheel_conf = self.flink_home / "conf"
        for pattern in ("log4j*.properties", "logback*.xml"):
            for source in wheel_conf.glob(pattern):
                shutil.copyfile(source, self.conf_dir / source.name)
        header = (
            "# Generated by flink_llm_udf.tools.cluster from flink_llm_udf/tools/cluster/conf/config.yaml;\n"
            "# edit that file (or pass --set), not this copy.\n"
        )
        body = yaml.safe_dump(self.effective_config(), default_flow_style=False, sort_keys=False, width=10**6)
        (self.conf_dir / "config.yaml").write_text(header + body)
        (self.conf_dir / "masters").write_text(f"{self.jobmanager_address}\n")
        (self.conf_dir / "workers").write_text("127.0.0.1\n" * max(self.taskmanagers, 1))
        prom = self.plugins_dir / "metrics-prometheus"
        if not prom.exists():
            source = self.flink_home / "plugins" / "metrics-prometheus"
            if not source.is_dir():
                source = self.flink_home / "opt"  # a full distribution keeps the jar in opt/
                jars = list(source.glob("flink-metrics-prometheus*.jar"))
                if not jars:
                    raise ClusterError(f"no flink-metrics-prometheus jar in {self.flink_home}")
                prom.mkdir()
                shutil.copyfile(jars[0], prom / jars[0].name)
            else:
                prom.symlink_to(source, target_is_directory=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> float:
        """Start the JobManager and ``taskmanagers`` TaskManagers; return the seconds it took.

        Waits (at most ``start_timeout``) until the REST API lists every TaskManager. On failure
        the cluster is stopped again and the error carries the tail of the JobManager log.
        """
        if self.jobmanager_pids() or self.taskmanager_pids():
            raise ClusterError(f"a cluster is already running from {self.workdir}; stop it first")
        for port in (self.rest_port, self.rpc_port):
            if not _port_free(port):
                raise ClusterError(
                    f"port {port} on 127.0.0.1 is in use (another Flink cluster?); "
                    "choose other ports (--rest-port/--rpc-port)"
                )
        began = time.monotonic()
        self.prepare()
        # The scripts return once their JVM is forked; TaskManagers retry until the JobManager
        # answers, so all of them start at once.
        try:
            scripts = [self._daemon_script("jobmanager.sh", "start")]
            scripts += [self._daemon_script("taskmanager.sh", "start") for _ in range(self.taskmanagers)]
            for proc in scripts:
                self._finish_script(proc)
            self._wait_for_taskmanagers(self.taskmanagers, began + self.start_timeout)
        except BaseException:
            self.stop()  # whatever did start
            raise
        self.last_start_seconds = time.monotonic() - began
        logger.info("cluster up at %s in %.1f s", self.rest_url, self.last_start_seconds)
        return self.last_start_seconds

    def start_taskmanager(self, *, wait: bool = True) -> int:
        """Start one more TaskManager (e.g. a replacement after :meth:`kill_taskmanager`); its PID.

        With ``wait``, returns once the JobManager lists this TaskManager (matched by its RPC port).
        """
        recorded = self._recorded_pids(_TM_DAEMON)
        self._finish_script(self._daemon_script("taskmanager.sh", "start"))
        new = [pid for pid in self._recorded_pids(_TM_DAEMON) if pid not in recorded]
        if not new:
            raise ClusterError(f"taskmanager.sh start recorded no new TaskManager:\n{self._log_tail()}")
        pid = new[-1]
        deadline = time.monotonic() + self.start_timeout
        # The recorded PID is a forked shell until it execs java; /proc may show it mid-exec.
        while pid not in self.flink_processes():
            if not _alive(pid):
                raise ClusterError(f"TaskManager {pid} exited right after start:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"process {pid} never became a TaskManager of this cluster")
            time.sleep(0.1)
        while wait and not self._registered(pid):
            if time.monotonic() > deadline:
                raise ClusterError(f"TaskManager {pid} did not register within {self.start_timeout} s")
            if not _alive(pid):
                raise ClusterError(f"TaskManager {pid} died while starting:\n{self._log_tail()}")
            time.sleep(0.25)
        return pid

    def _registered(self, pid: int) -> bool:
        """Whether the JobManager lists the TaskManager process ``pid`` (ids are ``host:rpcport-...``)."""
        try:
            listed = self.rest("/taskmanagers", timeout=2.0).get("taskmanagers", [])
        except ClusterError:
            return False
        ports = _listening_ports(pid)
        for tm in listed:
            port = tm.get("id", "").rsplit("-", 1)[0].rpartition(":")[2]
            if port.isdigit() and int(port) in ports:
                return True
        return False

    def stop(self) -> float:
        """Stop TaskManagers, then the JobManager; return the seconds it took.

        SIGTERM, then SIGKILL after ``stop_timeout``; raises :class:`ClusterError` if a process
        of this cluster is still alive afterwards.
        """
        began = time.monotonic()
        deadline = began + self.stop_timeout
        for pids in (self.taskmanager_pids(), self.jobmanager_pids()):
            _terminate(pids, deadline)
        _terminate(self.flink_processes(), deadline)  # anything started outside the PID files
        _terminate(self.python_workers(), deadline)  # workers a killed TaskManager left behind
        for pid_file in self.pid_dir.glob("*.pid"):
            pid_file.unlink()
        left = self.flink_processes()
        if left:
            raise ClusterError(f"Flink processes of {self.workdir} still alive after stop: {left}")
        self.last_stop_seconds = time.monotonic() - began
        logger.info("cluster stopped in %.1f s", self.last_stop_seconds)
        return self.last_stop_seconds

    def kill_taskmanager(self, pid: int | None = None) -> int:
        """SIGKILL one TaskManager (default: the newest) and wait until it is gone; its PID."""
        pids = self.taskmanager_pids()
        if pid is None:
            if not pids:
                raise ClusterError("no TaskManager is running")
            pid = pids[-1]
        elif pid not in pids:
            raise ClusterError(f"{pid} is not a TaskManager of this cluster (running: {pids})")
        workers = [worker for worker in self.python_workers() if _is_descendant(worker, pid)]
        os.kill(pid, signal.SIGKILL)
        _wait_gone([pid], time.monotonic() + 10.0)
        # A TaskManager's Python UDF workers outlive a SIGKILL (re-parented, waiting forever).
        _terminate(workers, time.monotonic() + 5.0)
        return pid

    def python_workers(self) -> list[int]:
        """PIDs of the Python UDF worker processes this cluster's TaskManagers started.

        Flink starts them through ``pyflink-udf-runner.sh`` with the TaskManager's environment
        (our ``FLINK_CONF_DIR``) plus ``BOOT_LOG_DIR``; the runner, its Python and its ``tee``.
        """
        conf = f"\0FLINK_CONF_DIR={self.conf_dir}\0".encode()

        def started_by_our_taskmanager(environ: bytes) -> bool:
            environ = b"\0" + environ  # every variable now starts with NUL
            return conf in environ and b"\0BOOT_LOG_DIR=" in environ

        return [
            pid
            for pid, environ in _proc_files("environ")
            if pid != os.getpid() and started_by_our_taskmanager(environ)
        ]

    def __enter__(self) -> StandaloneCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ processes
    def _recorded_pids(self, daemon: str) -> list[int]:
        """Every PID ``flink-daemon.sh`` recorded for ``daemon``, live or not, in start order."""
        pid_file = self.pid_dir / f"flink-{IDENT}-{daemon}.pid"
        if not pid_file.exists():
            return []
        return [int(line) for line in pid_file.read_text().split() if line.strip().isdigit()]

    def _pids_from_file(self, daemon: str) -> list[int]:
        pids = self._recorded_pids(daemon)
        mine = set(self.flink_processes())
        return [pid for pid in pids if pid in mine]

    def jobmanager_pids(self) -> list[int]:
        """PIDs of this cluster's live JobManager processes (0 or 1)."""
        return self._pids_from_file(_JM_DAEMON)

    def taskmanager_pids(self) -> list[int]:
        """PIDs of this cluster's live TaskManager processes, oldest first."""
        return self._pids_from_file(_TM_DAEMON)

    def flink_processes(self) -> list[int]:
        """Every live Flink JVM started with this cluster's conf dir (found through /proc).

        A daemon's PID is recorded while it is still the forked ``flink-daemon.sh`` shell that is
        about to exec java; such a process counts too.
        """
        marker = f"--configDir\0{self.conf_dir}\0".encode()
        return [
            pid
            for pid, cmdline in _proc_files("cmdline")
            if marker in cmdline and (b"org.apache.flink" in cmdline or b"flink-daemon.sh" in cmdline)
        ]

    def log_files(self) -> list[Path]:
        """The cluster's log files (``*.log`` and ``*.out`` of every process, client logs too)."""
        if not self.log_dir.exists():
            return []
        return sorted(p for p in self.log_dir.iterdir() if p.is_file())

    def prometheus_urls(self) -> list[str]:
        """``http://127.0.0.1:<port>/metrics`` for each port of ``prometheus_ports`` that a live
        process of this cluster listens on (read from /proc, so a user's cluster is never mixed in)."""
        wanted = _port_range(self.prometheus_ports)
        ports = {port for pid in self.flink_processes() for port in _listening_ports(pid) if port in wanted}
        return [f"http://127.0.0.1:{port}/metrics" for port in sorted(ports)]

    # ------------------------------------------------------------------ REST and jobs
    def rest(self, path: str, *, method: str = "GET", timeout: float = 5.0) -> Any:
        """GET (or PATCH, ...) ``path`` on the REST API; the decoded JSON."""
        request = urllib.request.Request(self.rest_url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ClusterError(f"{method} {self.rest_url}{path} failed: {exc}") from exc
        return json.loads(body) if body else None

    def overview(self) -> dict[str, Any]:
        """``/overview``: TaskManagers, slots, jobs by state, Flink version."""
        return self.rest("/overview")

    def submit_python(
        self,
        script: str | os.PathLike[str] | None,
        args: Sequence[str] = (),
        *,
        module: str | None = None,
        pyfiles: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        detached: bool = False,
        timeout: float = 300.0,
        flink_args: Sequence[str] = (),
    ) -> SubmitResult:
        """Run ``bin/flink run -m 127.0.0.1:<rest_port> [-d] -py script [-pyfs ...] args``.

        ``module`` runs ``-pym module`` instead of a script. ``pyfiles`` become ``-pyfs`` (shipped
        to every Python worker and put on its path). Attached runs return when the job ends;
        ``detached`` ones once it is submitted. The job id is parsed from the client's output
        (None if it printed none). ``timeout`` bounds the whole client run.
        """
        command = [str(self.flink_home / "bin" / "flink"), "run", "-m", self.jobmanager_address]
        if detached:
            command.append("-d")
        command += ["-pyclientexec", self.python, *flink_args]
        files = [str(Path(f).resolve()) for f in pyfiles]
        if files:
            command += ["-pyfs", ",".join(files)]
        if module:
            command += ["-pym", module]
        elif script is not None:
            command += ["-py", str(Path(script).resolve())]
        else:
            raise ValueError("submit_python needs a script or a module")
        command += list(args)
        run_env = self.flink_env()
        run_env.update(env or {})
        began = time.monotonic()
        try:
            done = subprocess.run(
                command, env=run_env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"flink run did not finish within {timeout} s: {command}") from exc
        output = done.stdout + done.stderr
        ids = _JOB_ID.findall(output)
        return SubmitResult(
            job_id=ids[-1] if ids else None,
            returncode=done.returncode,
            stdout=done.stdout,
            stderr=done.stderr,
            seconds=time.monotonic() - began,
        )

    def job(self, job_id: str) -> dict[str, Any]:
        """``/jobs/<id>``: name, state, vertices."""
        return self.rest(f"/jobs/{job_id}")

    def jobs(self) -> list[dict[str, Any]]:
        """``/jobs/overview``: every job the cluster knows, newest first."""
        return self.rest("/jobs/overview").get("jobs", [])

    def cancel_job(self, job_id: str) -> None:
        """Ask the cluster to cancel a job (returns at once; wait with :meth:`wait_for_job`)."""
        self.rest(f"/jobs/{job_id}?mode=cancel", method="PATCH")

    def wait_for_job(
        self,
        job_id: str,
        states: Iterable[str] = ("FINISHED",),
        timeout: float = 120.0,
        poll: float = 0.5,
    ) -> str:
        """Poll until the job is in one of ``states``; return that state.

        Raises :class:`ClusterError` on timeout, or when the job reaches a terminal state that
        was not asked for (with the root exception's first lines for a failed job).
        """
        wanted = {s.upper() for s in states}
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            state = self.job(job_id)["state"]
            if state in wanted:
                return state
            if state in _TERMINAL_JOB_STATES:
                raise ClusterError(
                    f"job {job_id} ended {state}, not {sorted(wanted)}{self._job_failure(job_id)}"
                )
            time.sleep(poll)
        raise ClusterError(f"job {job_id} still {state} after {timeout} s (waiting for {sorted(wanted)})")

    def _job_failure(self, job_id: str) -> str:
        try:
            root = self.rest(f"/jobs/{job_id}/exceptions").get("root-exception") or ""
        except ClusterError:
            return ""
        return ":\n" + "\n".join(root.splitlines()[:15]) if root else ""

    # ------------------------------------------------------------------ internals
    def _daemon_script(self, script: str, action: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.flink_home / "bin" / script), action],
            env=self.flink_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the daemons outlive `flink-llm cluster start`
        )

    def _finish_script(self, proc: subprocess.Popen[str]) -> None:
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            raise ClusterError(f"{proc.args} did not return within 60 s:\n{output}") from None
        if proc.returncode != 0:
            raise ClusterError(f"{proc.args} exited with {proc.returncode}:\n{output}")
        logger.debug("%s: %s", proc.args, output.strip())

    def _wait_for_taskmanagers(self, count: int, deadline: float) -> None:
        """Wait until ``count`` TaskManagers are registered AND have reported their slots.

        A TaskManager is listed as soon as it registers; its slot report follows a moment later
        (seen under load: 2 TaskManagers listed with 2 of 4 slots), and jobs need the slots.
        """
        slots_each = int(self.effective_config().get("taskmanager.numberOfTaskSlots", 1))
        registered, slots = -1, -1
        while time.monotonic() < deadline:
            if not self.jobmanager_pids():
                raise ClusterError(f"the JobManager died while starting:\n{self._log_tail()}")
            try:
                listed = self.rest("/taskmanagers", timeout=2.0).get("taskmanagers", [])
                registered = len(listed)
                slots = int(self.rest("/overview", timeout=2.0).get("slots-total", 0))
            except ClusterError:
                registered, slots = -1, -1
            if registered >= count and slots >= count * slots_each:
                return
            time.sleep(0.25)
        raise ClusterError(
            f"{self.rest_url}/taskmanagers listed {max(registered, 0)} of {count} TaskManagers "
            f"({max(slots, 0)} of {count * slots_each} slots) after {self.start_timeout} s:\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        tails = []
        for path in self.log_dir.glob("*"):
            if path.is_file() and path.stat().st_size:
                tails.append(f"--- {path.name}\n{_tail(path.read_text(errors='replace'), lines)}")
        return "\n".join(tails) or f"(no logs in {self.log_dir})"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers that will bind it: a port held only by TIME_WAIT connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_range(spec: str) -> set[int]:
    """Flink's port-range syntax: ``9249``, ``9249-9260``, ``9249,9251-9253``."""
    ports: set[int] = set()
    for part in str(spec).split(","):
        low, _, high = part.strip().partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state on sockets that process ``pid`` holds (Linux /proc)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _proc_files(name: str) -> list[tuple[int, bytes]]:
    """``(pid, /proc/<pid>/<name>)`` of every process readable now, by PID."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / name).read_bytes()))
            except OSError:
                continue  # gone, or not ours to read
    return sorted(found)


def _stat_after_name(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent PID, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own dead child not yet reaped) is gone for our purposes.
    fields = _stat_after_name(pid)
    return fields is not None and fields[0] != "Z"


def _wait_gone(pids: Iterable[int], deadline: float) -> list[int]:
    left = [pid for pid in pids if _alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if _alive(pid)]
    return left


def _is_descendant(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is ``pid``'s parent, grandparent, ... (read from /proc)."""
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        fields = _stat_after_name(pid)
        if fields is None:
            return False
        pid = int(fields[1])  # the parent PID
        if pid == ancestor:
            return True
    return False


def _terminate(pids: Sequence[int], deadline: float) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in _wait_gone(pids, deadline):
        logger.warning("process %s ignored SIGTERM; killing it", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_gone(pids, time.monotonic() + 5.0)


# ---------------------------------------------------------------------- command line
def _parse_set(values: Sequence[str]) -> dict[str, str]:
    config = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"--set expects key=value, got {item!r}")
        config[key.strip()] = value.strip()
    return config


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flink-llm cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a JobManager and TaskManagers on 127.0.0.1")
    stop = sub.add_parser("stop", help="stop the cluster started from --workdir")
    status = sub.add_parser("status", help="show the REST API's overview")
    for p in (start, stop, status):
        p.add_argument("--workdir", default=".cluster", help="conf/, log/, pid/ live here (default .cluster)")
    start.add_argument("--taskmanagers", type=int, default=2, help="number of TaskManagers (default 2)")
    start.add_argument("--python", default=sys.executable, help="Python for the workers and the client")
    start.add_argument("--rest-port", type=int, default=8081)
    start.add_argument("--rpc-port", type=int, default=6123)
    start.add_argument("--prometheus-ports", default="9249-9260")
    start.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the TaskManagers")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``flink-llm cluster start|stop|status``; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "start":
            cluster = StandaloneCluster(
                args.workdir,
                taskmanagers=args.taskmanagers,
                python=args.python,
                rest_port=args.rest_port,
                rpc_port=args.rpc_port,
                prometheus_ports=args.prometheus_ports,
                config=_parse_set(args.set),
                start_timeout=args.timeout,
            )
            seconds = cluster.start()
            print(f"Flink cluster up in {seconds:.1f} s: {cluster.taskmanagers} TaskManager(s)")
            print(f"  web UI / REST: {cluster.rest_url}")
            flink = cluster.flink_home / "bin" / "flink"
            print(f"  submit:        {flink} run -m {cluster.jobmanager_address} -py JOB.py")
            print(f"  logs:          {cluster.log_dir}")
            print(f"  stop:          flink-llm cluster stop --workdir {args.workdir}")
            return 0
        if args.command == "stop":
            cluster = StandaloneCluster.from_workdir(args.workdir, stop_timeout=args.timeout)
            seconds = cluster.stop()
            print(f"Flink cluster in {cluster.workdir} stopped in {seconds:.1f} s")
            return 0
        cluster = StandaloneCluster.from_workdir(args.workdir)
        overview = cluster.overview()
        print(f"{cluster.rest_url}: Flink {overview.get('flink-version')}")
        print(
            f"  TaskManagers {overview.get('taskmanagers')}, slots {overview.get('slots-available')}"
            f"/{overview.get('slots-total')} free"
        )
        print(
            f"  jobs running {overview.get('jobs-running')}, finished {overview.get('jobs-finished')}, "
            f"cancelled {overview.get('jobs-cancelled')}, failed {overview.get('jobs-failed')}"
        )
        for job in cluster.jobs():
            name = " ".join(job["name"].split())
            print(f"  {job['jid']}  {job['state']:<10} {name[:70]}{'...' if len(name) > 70 else ''}")
        return 0
    except (ClusterError, argparse.ArgumentTypeError) as exc:
        print(f"flink-llm cluster {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

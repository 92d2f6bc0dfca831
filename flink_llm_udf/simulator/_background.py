"""Run a simulator from tests, demos and benchmarks: in a thread or in a subprocess.

Both runners are context managers with the same interface (``base_url``, ``port``,
``stats()``, ``reset()``, ``update(**changes)``). Pick :class:`SimulatorThread` for tests
that drive the server from the same process, and :class:`SimulatorProcess` when the client
would otherwise share the GIL with the server (Flink Python workers, throughput benchmarks).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .._errors import FlinkLLMError, InvalidOptionError
from .._event_loops import new_event_loop
from ._behaviour import API_KEY_ENV, SimulatorConfig, config_to_argv
from ._server import RunningSimulator, SimulatorServer, start_simulator

__all__ = ["SimulatorError", "SimulatorProcess", "SimulatorThread"]

_READY = re.compile(rb"listening on (http://\S+?)/v1\s*$")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class SimulatorError(FlinkLLMError, RuntimeError):
    """The simulator could not be started, stopped or reached."""


class _BackgroundSimulator:
    """Shared context-manager plumbing; subclasses start and stop the server."""

    def __init__(
        self,
        config: SimulatorConfig | None,
        startup_timeout: float,
        stop_timeout: float,
        overrides: dict[str, Any],
    ) -> None:
        self.config = replace(config or SimulatorConfig(), **overrides)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (valid once started)."""
        if self._port is None:
            raise SimulatorError("the simulator is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.config.host}:{self.port}/v1"

    @property
    def admin_url(self) -> str:
        """Root of the admin endpoints, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.config.host}:{self.port}"

    def start(self) -> _BackgroundSimulator:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SimulatorThread(_BackgroundSimulator):
    """Simulator on its own event loop in a daemon thread of this process.

    ``SimulatorThread(config, **overrides)``: keyword overrides are applied to ``config`` (or
    to the defaults), e.g. ``SimulatorThread(latency_ms=20, max_in_flight=2)``.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        startup_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        **overrides: Any,
    ) -> None:
        super().__init__(config, startup_timeout, stop_timeout, overrides)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: RunningSimulator | None = None
        self._error: BaseException | None = None

    def start(self) -> SimulatorThread:
        """Start serving; returns once the port is bound."""
        if self._thread is not None:
            raise SimulatorError("the simulator thread is already started")
        ready = threading.Event()
        self._loop = new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="flink-llm-simulator", daemon=True
        )
        self._thread.start()
        if not ready.wait(self.startup_timeout):
            self.stop()
            raise SimulatorError(f"simulator did not start within {self.startup_timeout} s")
        if self._error is not None:
            self._thread.join(self.stop_timeout)
            self._thread = None
            raise SimulatorError(f"simulator failed to start: {self._error}") from self._error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            try:
                self._running = loop.run_until_complete(start_simulator(self.config))
                self._port = self._running.port
            except BaseException as exc:  # reported to start() in the caller's thread
                self._error = exc
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._running.close())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop the server, cancel requests in flight, and join the thread (bounded)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(self.stop_timeout)
        if thread.is_alive():
            raise SimulatorError(f"simulator thread did not stop within {self.stop_timeout} s")
        self._thread = None
        self._running = None
        self._port = None

    def _call(self, make_coro: Callable[[SimulatorServer], Coroutine[Any, Any, T]]) -> T:
        if self._running is None or self._loop is None:
            raise SimulatorError("the simulator is not running")
        future = asyncio.run_coroutine_threadsafe(make_coro(self._running.server), self._loop)
        return future.result(self.stop_timeout)

    def stats(self, *, include_requests: bool = False) -> dict[str, Any]:
        """Same JSON as ``GET /sim/stats`` (``include_requests`` adds ``requests``)."""

        async def get(server: SimulatorServer) -> dict[str, Any]:
            # A JSON round trip: the caller gets a deep copy shaped exactly like the HTTP answer.
            snapshot: dict[str, Any] = json.loads(
                json.dumps(server.snapshot(include_requests=include_requests))
            )
            return snapshot

        return self._call(get)

    def reset(self) -> None:
        """Same as ``POST /sim/reset``."""

        async def do(server: SimulatorServer) -> None:
            server.reset()

        self._call(do)

    def update(self, **changes: Any) -> SimulatorConfig:
        """Change runtime options (``InvalidOptionError``, a ``ValueError``, on bad ones)."""

        async def do(server: SimulatorServer) -> SimulatorConfig:
            return await server.apply_changes(changes)

        try:
            self.config = self._call(do)
        except TypeError as exc:  # same exception type as SimulatorProcess.update
            raise InvalidOptionError(str(exc)) from exc
        return self.config


class SimulatorProcess(_BackgroundSimulator):
    """Simulator in a child ``python -m flink_llm_udf.simulator`` process.

    Control goes through the admin HTTP endpoints. The API key, if any, is passed in the
    environment rather than on the command line.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        **overrides: Any,
    ) -> None:
        super().__init__(config, startup_timeout, stop_timeout, overrides)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Process id of the child."""
        if self._proc is None:
            raise SimulatorError("the simulator is not running")
        return self._proc.pid

    def start(self) -> SimulatorProcess:
        """Spawn the child and wait (bounded) for its ready line."""
        if self._proc is not None:
            raise SimulatorError("the simulator process is already started")
        env = dict(os.environ)
        # Import this very package in the child, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        if self.config.api_key is not None:
            env[API_KEY_ENV] = self.config.api_key
        else:
            env.pop(API_KEY_ENV, None)
        argv = [
            sys.executable,
            "-m",
            "flink_llm_udf.simulator",
            *config_to_argv(self.config, include_api_key=False),
        ]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        try:
            self._port = self._wait_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> int:
        assert proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SimulatorError(f"simulator process did not start within {self.startup_timeout} s")
                if selector.select(min(remaining, 0.5)):
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        code = proc.wait(self.stop_timeout)
                        raise SimulatorError(
                            f"simulator process exited with code {code} before it was ready (see its stderr)"
                        )
                    buffer += chunk
        line = buffer.split(b"\n", 1)[0]
        match = _READY.search(line)
        if match is None:
            raise SimulatorError(f"unexpected simulator output: {line[:200]!r}")
        return int(match.group(1).rsplit(b":", 1)[1])

    def stop(self) -> None:
        """SIGTERM, wait ``stop_timeout``, then SIGKILL if needed."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.stop_timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        self._port = None

    def _admin(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.admin_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.stop_timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            message = body.get("error", {}).get("message", str(exc))
            if exc.code == 400:
                raise InvalidOptionError(message) from None
            raise SimulatorError(f"{method} {path} failed: HTTP {exc.code}: {message}") from None
        except OSError as exc:
            raise SimulatorError(f"{method} {path} failed: {exc}") from exc

    def stats(self, *, include_requests: bool = False) -> dict[str, Any]:
        """``GET /sim/stats`` (``include_requests`` adds ``requests``)."""
        stats: dict[str, Any] = self._admin("GET", "/sim/stats" + ("?requests=1" if include_requests else ""))
        return stats

    def reset(self) -> None:
        """``POST /sim/reset``."""
        self._admin("POST", "/sim/reset", {})

    def update(self, **changes: Any) -> SimulatorConfig:
        """``POST /sim/config`` (``InvalidOptionError``, a ``ValueError``, on bad options)."""
        self._admin("POST", "/sim/config", changes)
        self.config = self.config.with_changes(changes)
        return self.config

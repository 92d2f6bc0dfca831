"""Simulator command line: run the server until SIGTERM/SIGINT.

Prints one line ``flink-llm simulator listening on http://HOST:PORT/v1`` (flushed) once the
port is bound, optionally writes the port to ``--port-file``, and exits 0 on a clean stop.
``main`` backs both ``python -m flink_llm_udf.simulator`` and ``flink-llm simulator``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from .._event_loops import run as run_event_loop
from ._behaviour import API_KEY_ENV, SimulatorConfig, build_parser, config_from_argv
from ._server import start_simulator

__all__ = ["main"]


def _write_port_file(path: str, port: int) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(target)  # atomic: a watcher never reads a half-written file


async def _serve(config: SimulatorConfig, port_file: str | None) -> int:
    running = await start_simulator(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signal support: rely on cancellation
    try:
        if port_file:
            _write_port_file(port_file, running.port)
        print(f"flink-llm simulator listening on {running.base_url}", flush=True)
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await running.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), serve until a signal, return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.api_key is None:
        args.api_key = os.environ.get(API_KEY_ENV) or None
    try:
        config = config_from_argv(args)
        logging.basicConfig(
            level=str(args.log_level).upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    except (TypeError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return run_event_loop(_serve(config, args.port_file))  # uvloop: more requests/s per core
    except OSError as exc:
        print(f"{parser.prog}: error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0

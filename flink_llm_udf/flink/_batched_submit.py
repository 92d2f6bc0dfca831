"""Cheaper hand-off of rows to PyFlink's async event loop (DataStream and SQL async functions).

PyFlink 2.x's ``AsyncFunctionRunner.run_async`` schedules every row with
``asyncio.run_coroutine_threadsafe``: a ``concurrent.futures.Future`` (with its Condition and
lock) nobody reads, plus one self-pipe write and one loop wake-up per row. At a few thousand rows
per second that is a large share of the worker's CPU (see ``flink-llm bench``). This patch queues
rows on a deque and wakes the loop once per burst; the loop starts one task per row, exactly as
before, so results, ordering and error handling are unchanged.

``FLINK_LLM_BATCHED_ASYNC_SUBMIT`` = ``auto`` (default: patch when PyFlink's runner has the
expected shape) or ``off``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import threading
from typing import Any

logger = logging.getLogger(__name__)

_MARKER = "_flink_llm_batched_submit"


def install_batched_submit() -> bool:
    """Patch ``AsyncFunctionRunner.run_async``; True when active. Idempotent, per process."""
    if os.environ.get("FLINK_LLM_BATCHED_ASYNC_SUBMIT", "auto").strip().lower() in ("off", "false", "0"):
        return False
    try:
        from pyflink.fn_execution.datastream.process.async_function.operation import AsyncFunctionRunner
    except ImportError:
        return False
    original = getattr(AsyncFunctionRunner, "run_async", None)
    if original is None or not hasattr(AsyncFunctionRunner, "exception_handler_wrapper"):
        return False  # a PyFlink whose runner we do not know: leave it alone
    if getattr(original, _MARKER, False):
        return True

    @functools.wraps(original)
    def run_async(self, async_function, record, result_handler):
        submitter = self.__dict__.get("_flink_llm_submitter")
        if submitter is None:
            submitter = self.__dict__.setdefault("_flink_llm_submitter", _Submitter(self))
        submitter.submit(async_function, record, result_handler)

    setattr(run_async, _MARKER, True)
    AsyncFunctionRunner.run_async = run_async
    logger.info("batched async submission active for PyFlink's AsyncFunctionRunner")
    return True


class _Submitter:
    """Rows from the bundle thread to the runner's loop: a deque plus at most one pending wake-up."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self._rows: collections.deque[tuple[Any, Any, Any]] = collections.deque()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()  # strong references: the loop keeps only weak ones

    def submit(self, async_function: Any, record: Any, result_handler: Any) -> None:
        self._rows.append((async_function, record, result_handler))
        with self._lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self._runner._loop.call_soon_threadsafe(self._start_rows)

    def _start_rows(self) -> None:
        with self._lock:
            self._wake_pending = False  # rows appended from now on schedule another wake-up
        loop, rows, tasks = self._runner._loop, self._rows, self._tasks
        wrap = self._runner.exception_handler_wrapper
        while rows:
            async_function, record, result_handler = rows.popleft()
            task = loop.create_task(wrap(async_function, record, result_handler))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

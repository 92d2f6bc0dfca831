"""Batched hand-off of rows to PyFlink's async loop (flink/_batched_submit.py).

Runs PyFlink's real ``AsyncFunctionRunner`` thread (no job needed) and feeds it from several
threads at once, as the bundle thread does: every row must be started exactly once and its
result handler completed exactly once, whatever the interleaving. The Flink job tests
(test_flink_datastream.py, test_flink_async_sql.py) run the patched path end to end.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pyflink.fn_execution.datastream.process.async_function import operation

from flink_llm_udf.flink._batched_submit import install_batched_submit


class Handler:
    """Stands in for PyFlink's ResultHandler: counts completions per record."""

    def __init__(self, done: dict, lock: threading.Lock) -> None:
        self.done, self.lock = done, lock

    def complete(self, result) -> None:
        with self.lock:
            self.done.setdefault(result[0], []).append("ok")

    def complete_exceptionally(self, error) -> None:
        with self.lock:
            self.done.setdefault(error.args[0], []).append("error")


def _unpatched():
    """PyFlink's own run_async (earlier Flink tests in this process may have patched the class)."""
    method = operation.AsyncFunctionRunner.run_async
    return getattr(method, "__wrapped__", method)


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(operation.AsyncFunctionRunner, "run_async", _unpatched())
    monkeypatch.delenv("FLINK_LLM_BATCHED_ASYNC_SUBMIT", raising=False)
    assert install_batched_submit() is True
    yield
    # monkeypatch restores the original run_async


@pytest.fixture
def runner():
    runner = operation.AsyncFunctionRunner()
    runner.daemon = True
    runner.start()
    runner.wait_ready()
    yield runner
    runner.stop()


def test_install_is_idempotent_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    original = _unpatched()
    monkeypatch.setattr(operation.AsyncFunctionRunner, "run_async", original)
    monkeypatch.setenv("FLINK_LLM_BATCHED_ASYNC_SUBMIT", "off")
    assert install_batched_submit() is False
    assert operation.AsyncFunctionRunner.run_async is original
    monkeypatch.setenv("FLINK_LLM_BATCHED_ASYNC_SUBMIT", "auto")
    assert install_batched_submit() is True
    patched = operation.AsyncFunctionRunner.run_async
    assert patched is not original and patched.__wrapped__ is original
    assert install_batched_submit() is True
    assert operation.AsyncFunctionRunner.run_async is patched  # not wrapped twice


@pytest.mark.parametrize("threads", [1, 4])
def test_every_row_runs_exactly_once(patched, runner, threads: int) -> None:
    rows_per_thread = 2_000
    done: dict = {}
    lock = threading.Lock()
    started = []

    async def invoke(record):
        started.append(record)
        await asyncio.sleep(0.001 * (record % 3))  # rows finish out of order
        if record % 97 == 0:
            raise ValueError(record)
        return [record]

    def feed(offset: int) -> None:
        for record in range(offset, offset + rows_per_thread):
            runner.run_async(invoke, record, Handler(done, lock))

    feeders = [threading.Thread(target=feed, args=(n * rows_per_thread,)) for n in range(threads)]
    for feeder in feeders:
        feeder.start()
    for feeder in feeders:
        feeder.join(30)
    total = threads * rows_per_thread
    deadline = time.monotonic() + 30
    while len(done) < total and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(started) == list(range(total))  # each row started once
    assert sorted(done) == list(range(total))
    assert all(len(outcomes) == 1 for outcomes in done.values())  # and completed once
    assert {r for r, o in done.items() if o == ["error"]} == {r for r in range(total) if r % 97 == 0}


def test_rows_run_concurrently_not_one_by_one(patched, runner) -> None:
    """A burst of rows is started together: 200 rows sleeping 0.2 s finish in well under 200 x 0.2 s."""
    done: dict = {}
    lock = threading.Lock()

    async def invoke(record):
        await asyncio.sleep(0.2)
        return [record]

    began = time.monotonic()
    for record in range(200):
        runner.run_async(invoke, record, Handler(done, lock))
    deadline = time.monotonic() + 20
    while len(done) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) == 200
    assert time.monotonic() - began < 5

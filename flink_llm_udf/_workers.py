"""Rows on a bounded pool of worker tasks, and cancelling groups of tasks cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def run_on_workers(
    count: int,
    row: Callable[[int, Callable[[], None]], Awaitable[T]],
    workers: int,
    deadline_s: float | None,
) -> list[T | None]:
    """Rows ``0..count-1`` run by at most ``workers`` tasks that take the next row when done.

    Cheaper than a task per row queued for a request slot: no per-row task, future and wake-up.
    ``row(index, hand_off)`` calls ``hand_off()`` before it waits to retry: its worker's place
    goes to a new worker (and its own worker ends with that row), so backoff never idles a slot.
    The first exception cancels the rest and is raised; rows unfinished at ``deadline_s`` are
    left None.
    """
    results: list[T | None] = [None] * count
    if count == 0:
        return results
    loop = asyncio.get_running_loop()
    indices = iter(range(count))
    finished = loop.create_future()
    running: set[asyncio.Task[None]] = set()

    def spawn() -> None:
        task = loop.create_task(work())
        running.add(task)
        task.add_done_callback(retire)

    def retire(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if finished.done():
            return
        error = None if task.cancelled() else task.exception()
        if error is not None:
            finished.set_exception(error)
        elif not running:
            finished.set_result(None)

    async def work() -> None:
        handed_off = False

        def hand_off() -> None:
            nonlocal handed_off
            if not handed_off:
                handed_off = True
                spawn()

        for index in indices:
            results[index] = await row(index, hand_off)
            if handed_off:
                return

    for _ in range(min(count, workers)):
        spawn()
    try:
        if deadline_s is None:
            await finished
        else:
            await asyncio.wait_for(asyncio.shield(finished), deadline_s)
    except (asyncio.TimeoutError, TimeoutError):
        error = finished.exception() if finished.done() and not finished.cancelled() else None
        if error is not None:
            raise error from None
    finally:
        await cancel_all(list(running))
        if not finished.done():
            finished.cancel()
        elif not finished.cancelled():
            finished.exception()  # retrieved: no "never retrieved" warning
    return results


async def gather_or_cancel(coroutines: list[Awaitable[Any]]) -> list[Any]:
    """``gather`` that cancels the siblings when one raises, and waits for them to finish."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await cancel_all(tasks)
        raise


async def cancel_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has finished."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

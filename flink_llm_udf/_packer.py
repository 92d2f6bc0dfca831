"""Packing: rows that arrive one at a time on an event loop, sent together in packs.

An embeddings endpoint takes many inputs per request, but the async entry points (Flink async
SQL, the DataStream ``AsyncFunction``) hand the engine one row at a time. ``Packer`` collects the
rows of one group (the model, say) into an open pack and sends the pack when it holds
``max_items`` rows, or ``max_wait_s`` after its first row arrived, whichever comes first: a busy
stream fills packs, a quiet one waits at most ``max_wait_s`` for company.

Each waiting row is one future, not one task: a pack costs one task (its send) and one timer, a
row a dict entry. A row whose caller is cancelled before its pack is handed to ``send_pack`` is
taken out of the pack, so nothing is sent for nobody; after that the pack goes on for the others.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class _Pack(Generic[K, T, R]):
    """One pack of one group: its waiting rows (future -> item, in arrival order) and its timer."""

    __slots__ = ("closed", "group", "members", "timer")

    def __init__(self, group: K) -> None:
        self.group = group
        self.members: dict[asyncio.Future[R], T] = {}
        self.closed = False  # sent or dropped: takes no more items
        self.timer: asyncio.Handle | None = None


class Packer(Generic[K, T, R]):
    """Send items of the same group together: ``await submit(group, item)`` returns its own result.

    ``send_pack(group, items)`` is called once per pack, in a task of its own (many packs may be
    in flight at once; bound them inside ``send_pack``), and must return one result per item, in
    order. If it raises, every row of that pack raises the same exception; if it returns the wrong
    number of results, every row raises ``RuntimeError``.

    A pack leaves when it holds ``max_items`` items (from the ``submit`` that filled it) or
    ``max_wait_s`` after its first item arrived; with ``max_wait_s == 0`` it leaves at the next
    turn of the event loop, so items submitted in the same turn still travel together. Items of
    different groups never share a pack.

    ``loop_time`` is the clock a pack's deadline is computed on (``loop_time() + max_wait_s``,
    handed to ``loop.call_at``), so it must read the event loop's own clock; it defaults to the
    running loop's ``time`` (``time.monotonic`` for asyncio's loops). Do not pass a fake clock.

    A ``submit`` cancelled before ``send_pack`` got its pack takes its item out (a pack left empty
    is dropped with its timer); cancelled later, it just never sees its result. If the send itself
    is cancelled (the loop shutting down), so are the rows of its pack.
    """

    __slots__ = ("_closed", "_in_flight", "_loop_time", "_open", "_send_pack", "max_items", "max_wait_s")

    def __init__(
        self,
        send_pack: Callable[[K, list[T]], Awaitable[list[R]]],
        max_items: int,
        max_wait_s: float,
        *,
        loop_time: Callable[[], float] | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        if not (max_wait_s >= 0 and math.isfinite(max_wait_s)):
            raise ValueError(f"max_wait_s must be a finite number >= 0, got {max_wait_s}")
        self._send_pack = send_pack
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self._loop_time = loop_time
        self._open: dict[K, _Pack[K, T, R]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, group: K, item: T) -> R:
        """Add ``item`` to the open pack of ``group`` and return its result once the pack is back."""
        if self._closed:
            raise RuntimeError("the packer is closed; submit was called after aclose")
        loop = asyncio.get_running_loop()
        pack = self._open.get(group)
        if pack is None:
            pack = self._open[group] = _Pack(group)
            if self.max_wait_s == 0:
                pack.timer = loop.call_soon(self._send, pack)
            else:
                now = loop.time() if self._loop_time is None else self._loop_time()
                pack.timer = loop.call_at(now + self.max_wait_s, self._send, pack)
        future: asyncio.Future[R] = loop.create_future()
        pack.members[future] = item
        if len(pack.members) >= self.max_items:
            self._send(pack)
        try:
            return await future
        except asyncio.CancelledError:
            if not pack.closed:
                del pack.members[future]
                if not pack.members:
                    self._discard(pack)
            raise

    async def aclose(self) -> None:
        """Send every open pack now and wait for all packs in flight; later submits are refused."""
        self._closed = True
        for pack in list(self._open.values()):
            self._send(pack)
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    def _discard(self, pack: _Pack[K, T, R]) -> None:
        """Close ``pack`` without sending it: its timer stops and its group gets a new pack."""
        pack.closed = True
        if pack.timer is not None:
            pack.timer.cancel()
        if self._open.get(pack.group) is pack:
            del self._open[pack.group]

    def _send(self, pack: _Pack[K, T, R]) -> None:
        if pack.closed:
            return
        self._discard(pack)
        task = asyncio.get_running_loop().create_task(self._run(pack.group, pack.members))
        self._in_flight.add(task)
        task.add_done_callback(partial(self._finished, pack.members))

    def _finished(self, members: dict[asyncio.Future[R], T], task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # A send cancelled (at loop shutdown, say), even before it started: so are its rows.
        for future in members:
            future.cancel()

    async def _run(self, group: K, members: dict[asyncio.Future[R], T]) -> None:
        # A caller cancelled since it joined may not have run its cleanup yet: leave its item out.
        futures = [future for future in members if not future.done()]
        if not futures:
            return
        items = [members[future] for future in futures]
        try:
            results = await self._send_pack(group, items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"send_pack returned {len(results)} results for {len(items)} items (group {group!r})"
                )
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():  # its caller was cancelled after the pack left
                future.set_result(result)

"""Request slots: at most N requests in flight on one event loop, handed out first come, first served.

``asyncio.Semaphore`` does the same job, but every ``acquire`` builds a coroutine and scans the
waiters even when a slot is free; the engine takes a slot per request, so here a free slot is
taken by a plain method call (``take_now``) and only a caller that must wait awaits ``wait``.
"""

from __future__ import annotations

import asyncio
from collections import deque


class RequestSlots:
    """``size`` slots; ``take_now() or await wait()`` takes one, ``give_back()`` returns it.

    A returned slot goes straight to the longest waiter (no barging: a newcomer cannot take a
    slot someone is queued for). A waiter cancelled after its slot was handed over passes the
    slot on, so cancellation never loses a slot. ``resize`` changes the number of slots while
    they are in use: a smaller size takes effect as slots come back.
    """

    __slots__ = ("_free", "_waiters", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._free = size
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    def take_now(self) -> bool:
        """Take a free slot if there is one (never when others are queued); True if taken."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait in line for a slot (after ``take_now`` said no)."""
        if self.take_now():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed a slot, then cancelled: pass it on
            raise

    def give_back(self) -> None:
        """Return a slot: to the first waiter still waiting, else to the free pool."""
        if self._free < 0:  # the size shrank below the slots in use: this one goes away
            self._free += 1
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def resize(self, size: int) -> None:
        """Allow ``size`` slots from now on (at least 1); waiters get new slots at once."""
        size = max(1, size)
        self._free += size - self.size
        self.size = size
        waiters = self._waiters
        while self._free > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._free -= 1
                waiter.set_result(None)

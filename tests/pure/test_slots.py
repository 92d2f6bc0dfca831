"""RequestSlots: the engine's bound on requests in flight, first come first served, never leaking a slot."""

from __future__ import annotations

import asyncio

import pytest

from flink_llm_udf._slots import RequestSlots


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


async def take(slots: RequestSlots) -> None:
    if not slots.take_now():
        await slots.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("size", [0, -1])
def test_size_below_one_is_refused(size):
    with pytest.raises(ValueError, match="size"):
        RequestSlots(size)


def test_free_slots_are_taken_without_waiting_until_none_is_left():
    slots = RequestSlots(3)
    assert [slots.take_now() for _ in range(4)] == [True, True, True, False]
    assert slots.in_use == 3
    slots.give_back()
    assert (slots.in_use, slots.take_now()) == (2, True)


def test_waiters_get_slots_in_arrival_order_and_newcomers_do_not_barge():
    async def main():
        slots, order = RequestSlots(1), []
        assert slots.take_now()

        async def worker(name):
            await take(slots)
            order.append(name)

        tasks = [asyncio.create_task(worker(name)) for name in "abc"]
        await settle()
        assert order == []
        slots.give_back()  # goes to "a", not to whoever asks next
        assert not slots.take_now()
        await settle()
        assert order == ["a"]
        slots.give_back()
        slots.give_back()
        await asyncio.gather(*tasks)
        assert order == ["a", "b", "c"] and slots.in_use == 1

    run(main())


@pytest.mark.parametrize("when", ["while-waiting", "after-the-hand-over"])
def test_a_cancelled_waiter_never_loses_a_slot(when):
    async def main():
        slots = RequestSlots(1)
        assert slots.take_now()
        first = asyncio.create_task(take(slots))
        second = asyncio.create_task(take(slots))
        await settle()
        if when == "while-waiting":
            first.cancel()
            await settle()
            slots.give_back()  # skips the cancelled waiter
        else:
            slots.give_back()  # handed to `first`, which is cancelled before it runs
            first.cancel()
        await asyncio.wait_for(second, 1)
        assert first.cancelled() and slots.in_use == 1
        slots.give_back()
        assert slots.in_use == 0 and slots.take_now()

    run(main())


def test_many_tasks_never_exceed_the_bound_and_every_slot_comes_back():
    async def main():
        slots, busy, peak = RequestSlots(4), 0, 0

        async def request(i):
            nonlocal busy, peak
            await take(slots)
            try:
                busy += 1
                peak = max(peak, busy)
                await asyncio.sleep(0.001 * (i % 3))
                if i % 7 == 0:
                    raise RuntimeError("a failed request still gives its slot back")
            finally:
                busy -= 1
                slots.give_back()

        results = await asyncio.gather(*(request(i) for i in range(200)), return_exceptions=True)
        assert sum(isinstance(r, RuntimeError) for r in results) == 29
        assert peak == 4 and slots.in_use == 0

    run(main())


def test_resizing_shrinks_as_slots_come_back_and_grows_at_once():
    async def main() -> None:
        slots = RequestSlots(4)
        assert all(slots.take_now() for _ in range(4))
        slots.resize(2)
        assert not slots.take_now()
        slots.give_back()
        slots.give_back()  # two of the four in use went away
        assert slots.in_use == 2 and not slots.take_now()
        slots.give_back()
        assert slots.take_now()  # one of two free again
        waiter = asyncio.ensure_future(slots.wait())
        await asyncio.sleep(0)
        slots.resize(3)  # growing hands the new slot to the waiter
        await asyncio.wait_for(waiter, 1.0)
        assert slots.in_use == 3
        slots.resize(0)
        assert slots.size == 1

    asyncio.run(main())

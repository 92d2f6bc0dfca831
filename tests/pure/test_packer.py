"""Packer: rows arriving one at a time leave in packs of one group, each row getting its own result."""

from __future__ import annotations

import asyncio
import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flink_llm_udf._packer import Packer


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


async def settle(turns: int = 5) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


class Recorder:
    """A ``send_pack`` that records each pack and answers ``"<group>:<item>"`` per item."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.packs: list[tuple[str, list[str]]] = []
        self.gate = gate

    async def __call__(self, group: str, items: list[str]) -> list[str]:
        self.packs.append((group, list(items)))
        if self.gate is not None:
            await self.gate.wait()
        return [f"{group}:{item}" for item in items]


def no_unretrieved_exceptions(loop: asyncio.AbstractEventLoop) -> list[dict]:
    """Record what the loop's exception handler is called with ("exception never retrieved" and co)."""
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    return reported


@pytest.mark.parametrize(
    ("max_items", "max_wait_s", "message"),
    [
        (0, 0.01, "max_items"),
        (-1, 0.01, "max_items"),
        (2, -0.1, "max_wait_s"),
        (2, float("nan"), "max_wait_s"),
    ],
)
def test_bad_sizes_and_waits_are_refused(max_items, max_wait_s, message):
    with pytest.raises(ValueError, match=message):
        Packer(Recorder(), max_items, max_wait_s)


def test_a_pack_leaves_as_soon_as_it_holds_max_items_without_waiting_for_the_timer():
    async def main():
        send = Recorder()
        packer = Packer(send, 3, 5.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(packer.submit("m", str(i)) for i in range(6)))
        assert loop.time() - started < 1.0
        assert results == [f"m:{i}" for i in range(6)]
        seventh = asyncio.create_task(packer.submit("m", "6"))
        await settle()
        assert not seventh.done()  # alone in its pack, waiting for company or its timer
        await packer.aclose()
        assert seventh.result() == "m:6"
        assert send.packs == [("m", ["0", "1", "2"]), ("m", ["3", "4", "5"]), ("m", ["6"])]

    run(main())


def test_a_full_pack_cancels_its_timer():
    async def main():
        send = Recorder()
        packer = Packer(send, 2, 0.02)
        assert await asyncio.gather(packer.submit("m", "a"), packer.submit("m", "b")) == ["m:a", "m:b"]
        await asyncio.sleep(0.06)  # the timer would have fired by now
        assert send.packs == [("m", ["a", "b"])]

    run(main())


def test_a_lone_item_leaves_after_max_wait_on_the_loop_clock():
    async def main():
        send = Recorder()
        packer = Packer(send, 10, 0.02)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await packer.submit("m", "a") == "m:a"
        assert 0.015 <= loop.time() - started <= 0.2
        assert send.packs == [("m", ["a"])]

    run(main())


def test_items_arriving_within_the_wait_share_a_pack_timed_from_the_first():
    async def main():
        send = Recorder()
        packer = Packer(send, 10, 0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.create_task(packer.submit("m", "a"))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(packer.submit("m", "b"))
        assert await asyncio.gather(first, second) == ["m:a", "m:b"]
        assert 0.04 <= loop.time() - started <= 0.2  # not 0.02 + 0.05
        assert send.packs == [("m", ["a", "b"])]

    run(main())


def test_a_zero_wait_packs_what_arrives_in_the_same_turn_and_no_more():
    async def main():
        send = Recorder()
        packer = Packer(send, 10, 0)
        assert await asyncio.gather(*(packer.submit("m", str(i)) for i in range(4))) == [
            f"m:{i}" for i in range(4)
        ]
        later = asyncio.create_task(packer.submit("m", "later"))
        await settle()  # a few turns of the loop, no timer
        assert later.result() == "m:later"
        assert send.packs == [("m", ["0", "1", "2", "3"]), ("m", ["later"])]

    run(main())


def test_the_loop_time_given_is_the_clock_deadlines_are_computed_on():
    async def main():
        loop = asyncio.get_running_loop()
        send = Recorder()
        # A clock 5 s behind the loop's: a deadline 5 s after it is the loop's now, to the tick.
        packer = Packer(send, 10, 5.0, loop_time=lambda: loop.time() - 5.0)
        started = loop.time()
        assert await packer.submit("m", "a") == "m:a"
        assert loop.time() - started < 1.0

    run(main())


def test_groups_never_share_a_pack_and_each_fills_on_its_own():
    async def main():
        send = Recorder()
        packer = Packer(send, 2, 0.02)
        arrivals = [("x", "1"), ("y", "2"), ("x", "3"), ("z", "4"), ("y", "5"), ("y", "6")]
        results = await asyncio.gather(*(packer.submit(group, item) for group, item in arrivals))
        assert results == [f"{group}:{item}" for group, item in arrivals]
        assert sorted(send.packs) == [("x", ["1", "3"]), ("y", ["2", "5"]), ("y", ["6"]), ("z", ["4"])]

    run(main())


def test_results_go_back_in_order_even_when_packs_return_out_of_order():
    async def main():
        slow = asyncio.Event()

        async def send(group, items):
            if group == "slow":
                await slow.wait()
            return [item.upper() for item in items]

        packer = Packer(send, 3, 0)
        late = asyncio.gather(*(packer.submit("slow", item) for item in "abc"))
        assert await asyncio.gather(*(packer.submit("fast", item) for item in "def")) == ["D", "E", "F"]
        slow.set()
        assert await late == ["A", "B", "C"]

    run(main())


def test_many_packs_are_in_flight_at_once():
    async def main():
        gate = asyncio.Event()
        send = Recorder(gate)
        packer = Packer(send, 2, 0)
        rows = asyncio.gather(*(packer.submit("m", str(i)) for i in range(6)))
        await settle()
        assert len(send.packs) == 3  # all sent, none back yet
        gate.set()
        assert await rows == [f"m:{i}" for i in range(6)]

    run(main())


def test_a_failed_pack_raises_its_exception_in_every_row_of_that_pack_only():
    async def main():
        reported = no_unretrieved_exceptions(asyncio.get_running_loop())
        boom = ValueError("the endpoint said no")

        async def send(group, items):
            if group == "bad":
                raise boom
            return items

        packer = Packer(send, 3, 0.01)
        outcomes = await asyncio.gather(
            *(packer.submit(group, item) for group, item in [("bad", "a"), ("ok", "b"), ("bad", "c")]),
            return_exceptions=True,
        )
        assert outcomes[0] is boom and outcomes[2] is boom and outcomes[1] == "b"
        gc.collect()
        assert reported == []

    run(main())


@pytest.mark.parametrize("answer", [["only one"], ["one", "two", "three"], []])
def test_a_wrong_number_of_results_fails_every_row_with_a_runtime_error(answer):
    async def main():
        async def send(group, items):
            return answer

        packer = Packer(send, 2, 0.01)
        outcomes = await asyncio.gather(
            packer.submit("m", "a"), packer.submit("m", "b"), return_exceptions=True
        )
        for outcome in outcomes:
            assert isinstance(outcome, RuntimeError)
            assert f"returned {len(answer)} results for 2 items" in str(outcome)
            assert "'m'" in str(outcome)

    run(main())


def test_a_row_cancelled_before_its_pack_leaves_is_never_sent():
    async def main():
        send = Recorder()
        packer = Packer(send, 3, 0.02)
        first = asyncio.create_task(packer.submit("m", "a"))
        gone = asyncio.create_task(packer.submit("m", "gone"))
        await settle()
        gone.cancel()
        await settle()
        # "gone" left the pack: two more items are needed to fill it, not one.
        third = asyncio.create_task(packer.submit("m", "b"))
        await settle()
        assert send.packs == []
        fourth = asyncio.create_task(packer.submit("m", "c"))
        assert await asyncio.gather(first, third, fourth) == ["m:a", "m:b", "m:c"]
        assert gone.cancelled()
        assert send.packs == [("m", ["a", "b", "c"])]

    run(main())


def test_a_row_cancelled_in_the_same_turn_its_timer_fires_is_left_out():
    async def main():
        send = Recorder()
        packer = Packer(send, 10, 0)
        kept = asyncio.create_task(packer.submit("m", "a"))
        gone = asyncio.create_task(packer.submit("m", "gone"))
        await asyncio.sleep(0)  # both joined; the send is due next turn, before `gone` can clean up
        gone.cancel()
        assert await kept == "m:a"
        assert send.packs == [("m", ["a"])]
        with pytest.raises(asyncio.CancelledError):
            await gone

    run(main())


def test_a_pack_whose_only_row_is_cancelled_is_dropped_and_its_group_starts_afresh():
    async def main():
        send = Recorder()
        packer = Packer(send, 2, 0.02)
        gone = asyncio.create_task(packer.submit("m", "gone"))
        await settle()
        gone.cancel()
        await asyncio.sleep(0.05)  # past the dropped pack's deadline
        assert send.packs == []
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await packer.submit("m", "a") == "m:a"
        assert loop.time() - started >= 0.015  # a fresh pack, with a fresh timer
        assert send.packs == [("m", ["a"])]

    run(main())


@pytest.mark.parametrize("failing", [False, True])
def test_a_row_cancelled_after_its_pack_left_does_not_stop_the_others(failing):
    async def main():
        reported = no_unretrieved_exceptions(asyncio.get_running_loop())
        gate = asyncio.Event()
        packs = []

        async def send(group, items):
            packs.append(list(items))
            await gate.wait()
            if failing:
                raise OSError("reset")
            return [item.upper() for item in items]

        packer = Packer(send, 3, 0)
        tasks = [asyncio.create_task(packer.submit("m", item)) for item in "abc"]
        await settle()
        assert packs == [["a", "b", "c"]]
        tasks[1].cancel()
        await settle()
        gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(outcomes[1], asyncio.CancelledError)
        if failing:
            assert isinstance(outcomes[0], OSError) and outcomes[0] is outcomes[2]
        else:
            assert (outcomes[0], outcomes[2]) == ("A", "C")
        gc.collect()
        assert reported == []

    run(main())


def test_a_row_cancelled_after_its_exception_was_set_but_before_it_ran_leaves_nothing_unretrieved():
    async def main():
        reported = no_unretrieved_exceptions(asyncio.get_running_loop())

        async def send(group, items):
            raise ValueError("boom")

        packer = Packer(send, 2, 0)
        rows: list[asyncio.Task] = []

        async def first_row():
            try:
                await packer.submit("m", "a")
            except ValueError:
                rows[1].cancel()  # its future holds the exception already; it has not run yet
                raise

        rows += [asyncio.create_task(first_row()), asyncio.create_task(packer.submit("m", "b"))]
        outcomes = await asyncio.gather(*rows, return_exceptions=True)
        assert isinstance(outcomes[0], ValueError) and isinstance(outcomes[1], asyncio.CancelledError)
        del rows[:], outcomes
        gc.collect()
        assert reported == []

    run(main())


def test_aclose_sends_what_is_pending_waits_for_packs_in_flight_and_refuses_more():
    async def main():
        gate = asyncio.Event()
        send = Recorder(gate)
        packer = Packer(send, 10, 60.0)
        loop = asyncio.get_running_loop()
        rows = asyncio.gather(*(packer.submit(group, "a") for group in "xy"))
        await settle()
        assert send.packs == []
        closing = asyncio.create_task(packer.aclose())
        await settle()
        assert sorted(send.packs) == [("x", ["a"]), ("y", ["a"])]
        assert not closing.done()  # the packs are still in flight
        loop.call_later(0.01, gate.set)
        started = loop.time()
        await closing
        assert loop.time() - started < 1.0
        assert rows.done() and rows.result() == ["x:a", "y:a"]
        with pytest.raises(RuntimeError, match="closed"):
            await packer.submit("x", "b")

    run(main())


def test_a_cancelled_send_cancels_its_rows():
    async def main():
        send = Recorder(asyncio.Event())  # never opens
        packer = Packer(send, 2, 0)
        rows = [asyncio.create_task(packer.submit("m", item)) for item in "ab"]
        await settle()
        (in_flight,) = packer._in_flight
        in_flight.cancel()
        outcomes = await asyncio.gather(*rows, return_exceptions=True)
        assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)

    run(main())


GROUPS = ("g0", "g1", "g2")


class PackFailed(Exception):
    def __init__(self, items: list[int]) -> None:
        super().__init__(items)
        self.items = list(items)


arrival = st.tuples(
    st.sampled_from(GROUPS),
    st.integers(0, 3),  # loop turns to let pass before the next row arrives
    st.one_of(st.none(), st.integers(0, 4)),  # cancel the row this many turns after it arrived
)


@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(arrival, max_size=40),
    max_items=st.integers(1, 8),
    max_wait_s=st.sampled_from([0.0, 0.0005]),
    # per pack, cycled: loop turns before it answers, and whether it fails instead
    answers=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=5),
)
def test_every_row_gets_its_own_result_from_exactly_one_pack_of_one_group(
    arrivals, max_items, max_wait_s, answers
):
    async def main():
        reported = no_unretrieved_exceptions(asyncio.get_running_loop())
        packs: list[tuple[str, list[int]]] = []
        sent: set[int] = set()
        sent_before_cancel: dict[int, bool] = {}

        async def send(group, items):
            packs.append((group, list(items)))
            sent.update(items)
            turns, fails = answers[len(packs) % len(answers)]
            await settle(turns)
            if fails:
                raise PackFailed(items)
            return [(group, item) for item in items]

        packer = Packer(send, max_items, max_wait_s)

        async def cancel_later(index, task, turns):
            await settle(turns)
            sent_before_cancel[index] = index in sent
            task.cancel()

        tasks, cancellers = [], []
        for index, (group, turns, cancel_after) in enumerate(arrivals):
            task = asyncio.create_task(packer.submit(group, index))
            tasks.append(task)
            if cancel_after is not None:
                cancellers.append(asyncio.create_task(cancel_later(index, task, cancel_after)))
            await settle(turns)
        await asyncio.gather(*cancellers)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await packer.aclose()

        every_item = [item for _, items in packs for item in items]
        assert len(every_item) == len(set(every_item)), "an item was sent twice"
        for group, items in packs:
            assert 1 <= len(items) <= max_items
            assert all(arrivals[item][0] == group for item in items), "groups mixed in one pack"
            assert items == sorted(items), "a pack lost the arrival order"
        for index, ((group, _, cancel_after), outcome) in enumerate(zip(arrivals, outcomes, strict=True)):
            if isinstance(outcome, asyncio.CancelledError):
                assert cancel_after is not None
                if not sent_before_cancel[index]:
                    assert index not in sent, "a row cancelled before its pack left was sent anyway"
            elif isinstance(outcome, PackFailed):
                assert index in outcome.items, "a row got another pack's exception"
            else:
                assert outcome == (group, index)
                assert index in sent
        failed = any(isinstance(outcome, PackFailed) for outcome in outcomes)
        del tasks, cancellers, outcomes
        if failed:  # a traceback makes a cycle; without one the futures are gone already
            gc.collect()
        assert reported == []

    run(main())

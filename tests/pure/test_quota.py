"""The quota gate's arithmetic, on a fake clock: budgets, calibration, pauses, AIMD, estimates."""

from __future__ import annotations

import asyncio

import pytest

from flink_llm_udf import (
    EndpointConnectionError,
    EndpointStatusError,
    EndpointTimeoutError,
    OpenAICompatProvider,
)
from flink_llm_udf._quota import AIMD, Bucket, QuotaGate, RateLimitHeaders, TokenEstimator, parse_reset
from flink_llm_udf._wire import resolve_call


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("2h", 7200.0),
        ("0.75", 0.75),
        ("7", 7.0),
        (None, None),
        ("soon", None),
        ("-1", None),
        ("1x", None),
        ("nan", None),
    ],
)
def test_parse_reset(text, seconds):
    assert parse_reset(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_rate_limit_headers_are_read_when_present_and_none_otherwise():
    headers = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": "100ms",
        "x-ratelimit-limit-tokens": "60000",
        "x-ratelimit-remaining-tokens": "59000",
        "x-ratelimit-reset-tokens": "1s",
    }
    assert RateLimitHeaders.of(headers) == RateLimitHeaders(600, 599, 0.1, 60000, 59000, 1.0)
    assert RateLimitHeaders.of({"content-type": "application/json"}) is None


def test_a_bucket_spaces_takes_at_its_rate_and_refunds():
    bucket = Bucket(rate=10.0, now=0.0)  # 10 per second, 10 saved at most
    assert [bucket.take(1, 0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(1, 0.0) == pytest.approx(0.1)  # the 11th waits a tenth of a second
    assert bucket.take(1, 0.0) == pytest.approx(0.2)
    bucket.give(2, 0.0)
    assert bucket.take(1, 0.0) == pytest.approx(0.1)
    assert bucket.take(1, 5.0) == 0.0  # refilled, capped at the capacity
    bucket.drain(5.0)
    assert bucket.take(1, 5.0) == pytest.approx(0.1)


def test_aimd_halves_once_per_round_trip_and_grows_back_one_per_window():
    aimd = AIMD(ceiling=16)
    assert aimd.overload(now=10.0, round_trip_s=0.5) and aimd.allowed == 8
    assert not aimd.overload(now=10.2, round_trip_s=0.5) and aimd.allowed == 8  # same round trip
    assert aimd.overload(now=10.6, round_trip_s=0.5) and aimd.allowed == 4
    grown = [aimd.success() for _ in range(4)]
    assert grown == [False, False, False, True] and aimd.allowed == 5
    for _ in range(200):
        aimd.success()
    assert aimd.allowed == 16
    for step in range(10):
        aimd.overload(now=20.0 + step, round_trip_s=0.5)
    assert aimd.allowed == 1


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gate(time: FakeTime, **kwargs) -> tuple[QuotaGate, list[int]]:
    changes: list[int] = []
    options = {"requests_per_minute": None, "tokens_per_minute": None, "subtasks": 1, "max_concurrency": 16}
    options.update(kwargs)
    made = QuotaGate(clock=time.clock, sleep=time.sleep, on_concurrency=changes.append, **options)
    return made, changes


async def admit(made: QuotaGate, tokens: int = 0) -> float:
    wait, taken = made.reserve(tokens)
    held = await made.settle(wait, taken, tokens) if wait > 0 else 0.0
    made.sent(tokens)
    return held


def test_without_a_budget_requests_go_at_once():
    time = FakeTime()
    made, _ = gate(time)
    assert asyncio.run(asyncio.wait_for(_admit_many(made, 1000), 5)) == 0.0
    assert made.usage().requests_last_minute == 1000 and made.usage().requests_per_minute_limit is None


async def _admit_many(made: QuotaGate, count: int, tokens: int = 0) -> float:
    return sum([await admit(made, tokens) for _ in range(count)])


def test_a_job_wide_budget_is_split_across_subtasks():
    time = FakeTime()
    made, _ = gate(time, requests_per_minute=1200, subtasks=4)  # 300 a minute here: 5 a second
    assert made.usage().requests_per_minute_limit == 300
    held = asyncio.run(_admit_many(made, 5 + 50))  # 5 saved, then 50 at 5 a second, one by one
    assert held == pytest.approx(50 * 0.2)
    assert time.now == pytest.approx(100.0 + 10.0)


def test_tokens_are_estimated_then_corrected_by_the_reply():
    time = FakeTime()
    made, _ = gate(time, tokens_per_minute=6000)  # 100 tokens a second, 100 saved
    assert asyncio.run(admit(made, 100)) == 0.0
    made.reply(200, {}, 0.1, used_tokens=40, estimate=100)  # 60 come back
    assert asyncio.run(admit(made, 60)) == 0.0
    assert asyncio.run(admit(made, 50)) == pytest.approx(0.5)
    assert made.usage().tokens_last_minute == 100 + 60 + 50 - 60


def test_a_429_pauses_the_subtask_for_its_retry_after_then_halves_concurrency():
    time = FakeTime()
    made, changes = gate(time)
    headers = {"x-ratelimit-reset-requests": "40s", "retry-after": "1"}  # reset: until *full*
    made.reply(429, headers, 0.1, None, 0)
    made.overloaded(429, 1.0, headers)
    assert made.paused_until == pytest.approx(101.0) and changes == [8]
    assert made.usage().rate_limited == 1
    assert asyncio.run(admit(made)) == pytest.approx(1.0)
    assert asyncio.run(admit(made)) == 0.0


def test_a_429_without_retry_after_waits_for_one_request_to_refill():
    time = FakeTime()
    made, _ = gate(time, subtasks=2)
    made.overloaded(429, None, {"x-ratelimit-limit-requests": "600", "x-ratelimit-reset-requests": "59s"})
    assert made.paused_until == pytest.approx(100.1)
    made.overloaded(429, None, {})
    assert made.paused_until == pytest.approx(101.0)


def test_a_503_with_retry_after_pauses_too_and_a_timeout_only_shrinks():
    time = FakeTime()
    made, changes = gate(time)
    made.overloaded(503, 1.5, {})
    assert made.paused_until == pytest.approx(101.5)
    time.now += 2
    made.overloaded(None, None, {})
    assert made.paused_until == pytest.approx(101.5) and changes == [8, 4]


def test_the_servers_headers_calibrate_a_missing_budget_and_hold_an_exhausted_key():
    time = FakeTime()
    made, _ = gate(time, subtasks=2)
    made.reply(
        200, {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "500"}, 0.1, None, 0
    )
    assert made.usage().requests_per_minute_limit == 300  # the key's limit, this subtask's half
    made.reply(
        200,
        {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": "1",
            "x-ratelimit-reset-requests": "1.5s",
        },
        0.1,
        None,
        0,
    )
    # less left than one request per subtask: held until one more per subtask has refilled
    assert made.paused_until == pytest.approx(100.0 + (2 - 1) * 60 / 600)


def test_a_configured_budget_is_not_replaced_by_the_servers_headers():
    time = FakeTime()
    made, _ = gate(time, requests_per_minute=60)
    made.reply(200, {"x-ratelimit-limit-requests": "6000"}, 0.1, None, 0)
    assert made.usage().requests_per_minute_limit == 60


def test_headers_are_looked_for_only_while_the_server_may_send_them():
    time = FakeTime()
    made, _ = gate(time)
    for _ in range(20):
        made.reply(200, {}, 0.1, None, 0)
    made.reply(200, {"x-ratelimit-limit-requests": "600"}, 0.1, None, 0)  # no longer probed
    assert made.usage().requests_per_minute_limit is None
    made.reply(429, {"x-ratelimit-limit-requests": "600"}, 0.1, None, 0)  # a 429 always is
    assert made.usage().requests_per_minute_limit == 600


def test_adaptive_concurrency_can_be_turned_off():
    time = FakeTime()
    made, changes = gate(time, adaptive=False)
    made.overloaded(429, 1.0, {})
    assert changes == [] and made.usage().concurrency_limit == 16


@pytest.mark.parametrize(
    ("options", "texts", "expected"),
    [
        ({"system_prompt": "", "max_tokens": 10}, "hello world", 2 + 7 + 10),
        ({"system_prompt": "Be brief.", "max_tokens": 10, "n": 2}, "hello world", 2 + (3 + 4) + 7 + 20),
        ({"system_prompt": ""}, "hello world", 2 + 7 + 256),
        ({"task": "embeddings"}, ["hello world", "hello"], 2 + 1),
    ],
)
def test_token_estimates_count_the_prompt_and_the_completion(options, texts, expected):
    spec = resolve_call(OpenAICompatProvider(endpoint="http://127.0.0.1:1/v1", model="gpt-4", **options), {})
    assert TokenEstimator(spec, completion_estimate=256).estimate(texts) == expected


def test_the_servers_headers_can_be_ignored():
    time = FakeTime()
    made, _ = gate(time, read_headers=False)
    made.reply(
        200, {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0"}, 0.1, None, 0
    )
    made.reply(429, {"x-ratelimit-limit-requests": "600"}, 0.1, None, 0)
    assert made.usage().requests_per_minute_limit is None and made.paused_until == 0.0


@pytest.mark.parametrize(
    ("error", "acts"),
    [
        (EndpointStatusError("HTTP 429", retryable=True, status=429), True),
        (EndpointStatusError("HTTP 503", retryable=True, status=503, retry_after=2.0), True),
        (EndpointStatusError("HTTP 503", retryable=True, status=503), False),  # failing, not asking
        (EndpointStatusError("HTTP 500", retryable=True, status=500), False),
        (EndpointTimeoutError("no complete response within 1 s", retryable=True), True),
        (EndpointConnectionError("connection error: reset", retryable=True), False),
    ],
)
def test_the_gate_acts_on_429s_503s_with_retry_after_and_timeouts_only(error, acts):
    from flink_llm_udf._engine import _overloaded

    assert _overloaded(error) is acts

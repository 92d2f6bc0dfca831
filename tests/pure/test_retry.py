"""Retry decisions: which failures retry, how long to wait, how many attempts, then what."""

from __future__ import annotations

import email.utils

import pytest
from multidict import CIMultiDict

from flink_llm_udf._retry import (
    JITTER,
    MAX_EXPONENTIAL_BACKOFF_S,
    RetryPolicy,
    backoff_delay,
    delay_before_retry,
    is_retryable_status,
    parse_retry_after,
)


@pytest.mark.parametrize(
    "k,backoff,base,delay",
    [
        (1, "FIXED", 1.0, 1.0),
        (2, "FIXED", 1.0, 1.0),
        (50, "FIXED", 1.0, 1.0),
        (10**9, "FIXED", 0.5, 0.5),
        (3, "FIXED", 120.0, 120.0),  # FIXED is the base interval, uncapped
        (1, "FIXED", 0.0, 0.0),
        (1, "EXPONENTIAL", 1.0, 1.0),
        (2, "EXPONENTIAL", 1.0, 2.0),
        (3, "EXPONENTIAL", 1.0, 4.0),
        (4, "EXPONENTIAL", 1.0, 8.0),
        (6, "EXPONENTIAL", 1.0, 32.0),
        (7, "EXPONENTIAL", 1.0, 60.0),
        (1, "EXPONENTIAL", 0.5, 0.5),
        (4, "EXPONENTIAL", 0.5, 4.0),
        (1, "EXPONENTIAL", 120.0, 60.0),
        (30, "EXPONENTIAL", 0.001, 60.0),
        (64, "EXPONENTIAL", 1.0, 60.0),
        (65, "EXPONENTIAL", 1.0, 60.0),
        (1100, "EXPONENTIAL", 1.0, 60.0),
        (10**6, "EXPONENTIAL", 1e-9, 60.0),
        (10**18, "EXPONENTIAL", 1.0, 60.0),
        (5, "EXPONENTIAL", 0.0, 0.0),
    ],
)
def test_backoff_delay(k, backoff, base, delay):
    assert backoff_delay(k, backoff, base) == pytest.approx(delay)
    assert MAX_EXPONENTIAL_BACKOFF_S == 60.0


@pytest.mark.parametrize("k", [0, -1])
def test_backoff_delay_counts_from_one(k):
    with pytest.raises(ValueError):
        backoff_delay(k, "FIXED", 1.0)


NOW = 1_700_000_000.0


def http_date(offset_s: float) -> str:
    return email.utils.formatdate(NOW + offset_s, usegmt=True)


@pytest.mark.parametrize(
    "headers,seconds",
    [
        ({}, None),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "0"}, 0.0),
        ({"RETRY-AFTER": "1.5"}, 1.5),
        ({"Retry-After": " 3 "}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # ms is more precise: it wins
        ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
        ({"retry-after-ms": "-5", "Retry-After": "9"}, 9.0),
        ({"Retry-After": http_date(30)}, 30.0),
        ({"Retry-After": http_date(-30)}, 0.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "Wed, 99 Foo 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"retry-after-ms": "inf"}, None),
        ({"retry-after-ms": "nan"}, None),
    ],
)
def test_parse_retry_after(headers, seconds):
    result = parse_retry_after(headers, now=NOW)
    if seconds is None:
        assert result is None
    else:
        assert result == pytest.approx(seconds, abs=1e-6)


def test_parse_retry_after_on_case_insensitive_multidict():
    assert parse_retry_after(CIMultiDict({"Retry-After": "4"})) == 4.0
    assert parse_retry_after(CIMultiDict({"Retry-After-MS": "40"})) == pytest.approx(0.04)


@pytest.mark.parametrize(
    "status,retryable",
    [
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (520, True),
        (599, True),
        (400, False),
        (401, False),
        (402, False),
        (403, False),
        (404, False),
        (405, False),
        (413, False),
        (415, False),
        (422, False),
        (451, False),
    ],
)
def test_is_retryable_status(status, retryable):
    assert is_retryable_status(status, {}) is retryable


@pytest.mark.parametrize(
    "status,header,retryable",
    [
        (400, "true", True),
        (404, "TRUE", True),
        (422, " true ", True),
        (503, "false", False),
        (429, "False", False),
        (500, "FALSE", False),
        (503, "maybe", True),
        (400, "maybe", False),
        (400, "", False),
    ],
)
def test_x_should_retry_overrides(status, header, retryable):
    assert is_retryable_status(status, {"x-should-retry": header}) is retryable
    assert is_retryable_status(status, CIMultiDict({"X-Should-Retry": header})) is retryable


@pytest.mark.parametrize(
    "strategy,retry_num,fallback,attempts,final",
    [
        ("RETRY", 0, "FAILOVER", 1, "FAILOVER"),
        ("RETRY", 3, "FAILOVER", 4, "FAILOVER"),
        ("RETRY", 100, "IGNORE", 101, "IGNORE"),
        ("FAILOVER", 100, "IGNORE", 1, "FAILOVER"),
        ("FAILOVER", 5, "FAILOVER", 1, "FAILOVER"),
        ("IGNORE", 100, "FAILOVER", 1, "IGNORE"),
        ("IGNORE", 0, "IGNORE", 1, "IGNORE"),
    ],
)
def test_policy_attempts_and_final_action(strategy, retry_num, fallback, attempts, final):
    policy = RetryPolicy(strategy, retry_num, "FIXED", 1.0, fallback)
    assert policy.max_attempts == attempts
    assert policy.final_action == final


def test_policy_defaults_match_provider_defaults():
    assert RetryPolicy() == RetryPolicy.from_provider_values("RETRY", 100, "FIXED", "1s", "FAILOVER")


@pytest.mark.parametrize("interval,seconds", [("1s", 1.0), ("500 ms", 0.5), ("2 min", 120.0), ("250", 0.25)])
def test_policy_from_provider_values_parses_duration(interval, seconds):
    policy = RetryPolicy.from_provider_values("RETRY", 2, "EXPONENTIAL", interval, "IGNORE")
    assert policy.base_interval_s == seconds
    assert policy.backoff == "EXPONENTIAL"


@pytest.mark.parametrize(
    "policy,worst",
    [
        (RetryPolicy("RETRY", 3, "FIXED", 1.0), 3.0),
        (RetryPolicy("RETRY", 4, "EXPONENTIAL", 1.0), 1 + 2 + 4 + 8),
        (RetryPolicy("RETRY", 0, "EXPONENTIAL", 1.0), 0.0),
        (RetryPolicy("IGNORE", 10, "FIXED", 1.0), 0.0),
        (RetryPolicy("RETRY", 8, "EXPONENTIAL", 1.0), 1 + 2 + 4 + 8 + 16 + 32 + 60 + 60),
    ],
)
def test_worst_case_backoff(policy, worst):
    assert policy.worst_case_backoff_s() == pytest.approx(worst)


@pytest.mark.parametrize(
    "backoff,k,retry_after,delay",
    [
        ("FIXED", 1, None, 1.0),
        ("FIXED", 1, 0.5, 1.0),  # shorter Retry-After does not shorten the backoff
        ("FIXED", 1, 2.0, 2.0),  # longer Retry-After is honoured
        ("EXPONENTIAL", 3, 3.0, 4.0),
        ("EXPONENTIAL", 3, 5.0, 5.0),
        ("EXPONENTIAL", 10, 90.0, 90.0),
        ("FIXED", 2, 0.0, 1.0),
    ],
)
def test_delay_before_retry(backoff, k, retry_after, delay):
    policy = RetryPolicy("RETRY", 10, backoff, 1.0, "FAILOVER")
    assert delay_before_retry(policy, k, retry_after, uniform=lambda: 0.0) == pytest.approx(delay)
    stretched = delay_before_retry(policy, k, retry_after, uniform=lambda: 1.0)
    assert stretched == pytest.approx(delay * (1 + JITTER))


@pytest.mark.parametrize(("backoff", "retry_after"), [("FIXED", None), ("EXPONENTIAL", None), ("FIXED", 2.0)])
def test_jitter_spreads_rows_hit_together_and_never_shortens_the_floor(backoff, retry_after):
    policy = RetryPolicy("RETRY", 10, backoff, 0.5, "FAILOVER")
    floor = delay_before_retry(policy, 2, retry_after, uniform=lambda: 0.0)
    delays = [delay_before_retry(policy, 2, retry_after) for _ in range(200)]  # one 429, 200 rows
    assert all(floor <= d <= floor * (1 + JITTER) for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # they do not come back together
    assert max(delays) - min(delays) > floor * JITTER / 2

"""Tables for the simulator's pure parts: replies, directives, fault choice, limits and quotas, config.

Quota arithmetic runs on an injected clock (every call takes ``now``), so nothing sleeps.
"""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from flink_llm_udf.simulator import (
    DEFAULT_QUOTA_MAX_TOKENS,
    Directive,
    DirectiveError,
    SimulatorConfig,
    chat_quota_tokens,
    embeddings_quota_tokens,
    expected_chat_choice,
    expected_chat_reply,
    expected_embedding,
    expected_prompt_tokens,
    parse_directive,
    quota_key_label,
)
from flink_llm_udf.simulator._behaviour import build_parser, config_from_argv, config_to_argv
from flink_llm_udf.simulator._bodies import concurrency_error_body, quota_error_body
from flink_llm_udf.simulator._faults import (
    directive_fault,
    format_seconds,
    latency_s,
    random_fault_name,
)
from flink_llm_udf.simulator._limits import (
    FixedWindow,
    KeyQuota,
    QuotaRefusal,
    TokenBucket,
    admit_quota,
    ceil_ms,
    format_duration,
    rate_limit_headers,
)


def user(content: object) -> dict[str, object]:
    return {"role": "user", "content": content}


@pytest.mark.parametrize(
    ("messages", "kwargs", "expected"),
    [
        ([user("hello")], {}, "ANSWER[hello]"),
        ([{"role": "system", "content": "be brief"}, user("hello")], {}, "ANSWER[hello]"),
        ([user("row 1"), user("Summarize")], {}, "ANSWER[row 1] PROMPT[Summarize]"),
        (
            [user("a"), {"role": "assistant", "content": "x"}, user("b"), user("c")],
            {},
            "ANSWER[a] PROMPT[b] PROMPT[c]",
        ),
        ([user("hello")], {"choice_index": 2}, "ANSWER[hello] #2"),
        (
            [
                user(
                    [
                        {"type": "text", "text": "what is"},
                        {"type": "image_url", "image_url": {"url": "http://x/cat.png"}},
                    ]
                )
            ],
            {},
            "ANSWER[what is http://x/cat.png]",
        ),
        ([user("a]b\\c")], {}, "ANSWER[a\\]b\\\\c]"),
        ([{"role": "system", "content": "only system"}], {}, "ANSWER[]"),
        ([user("one two three four")], {"max_tokens": 2}, "ANSWER[one two"),
        ([user("one two")], {"max_tokens": 2}, "ANSWER[one two]"),
        ([user("one two three")], {"stop": "two"}, "ANSWER[one "),
        ([user("one two three")], {"stop": ["three", "one"]}, "ANSWER["),
        ([user("one two three")], {"stop": ["zzz", ""]}, "ANSWER[one two three]"),
    ],
)
def test_expected_chat_reply_table(messages: list, kwargs: dict, expected: str) -> None:
    assert expected_chat_reply(messages, **kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "finish_reason"),
    [
        ({}, "stop"),
        ({"max_tokens": 1}, "length"),
        ({"max_tokens": 3}, "stop"),
        ({"stop": "b"}, "stop"),
        ({"stop": "a", "max_tokens": 1}, "stop"),
    ],
)
def test_finish_reason(kwargs: dict, finish_reason: str) -> None:
    assert expected_chat_choice([user("a b")], **kwargs).finish_reason == finish_reason


def test_reply_is_injective_over_tricky_inputs() -> None:
    cases = [
        [user("a] PROMPT[b")],
        [user("a"), user("b")],
        [user("a\\"), user("b")],
        [user("a\\] PROMPT[b")],
        [user("x #1")],
    ]
    replies = {expected_chat_reply(m) for m in cases}
    replies.add(expected_chat_reply([user("x")], choice_index=1))
    assert len(replies) == len(cases) + 1


def test_json_object_reply_is_valid_json_even_when_cut() -> None:
    content = expected_chat_reply(
        [user('say "hi" now')], max_tokens=1, response_format={"type": "json_object"}
    )
    assert json.loads(content) == {"answer": "ANSWER[say", "input": 'say "hi" now'}


def test_prompt_tokens_count_words_of_every_message() -> None:
    messages = [{"role": "system", "content": "be brief"}, user("one two three")]
    assert expected_prompt_tokens(messages) == 5


@pytest.mark.parametrize("dims", [2, 16, 1536])
def test_embedding_is_deterministic_and_unit_length(dims: int) -> None:
    vector = expected_embedding("hello", dims)
    assert len(vector) == dims
    assert vector == expected_embedding("hello", dims)
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-9)
    assert vector != expected_embedding("hello!", dims)


def test_embedding_default_dimensions() -> None:
    assert len(expected_embedding("x")) == 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain row", None),
        ("[sim:status=404] row", Directive(status=404)),
        ("row [sim:fail=3,status=503]", Directive(status=503, fail=3)),
        ("[sim:reset]", Directive(reset=True)),
        ("[sim:malformed]", Directive(malformed="json")),
        ("[sim:malformed=shape]", Directive(malformed="shape")),
        ("[sim:hang]", Directive(hang=True)),
        ("[sim:hang=2.5]", Directive(hang=True, hang_s=2.5)),
        ("[sim:slow=500]", Directive(slow_ms=500.0)),
        (
            "[sim:status=429, retry_after=2][sim:retry_after_ms=150]",
            Directive(status=429, retry_after=2.0, retry_after_ms=150),
        ),
        ("[sim:should_retry=false,status=500]", Directive(status=500, should_retry=False)),
    ],
)
def test_parse_directive_table(text: str, expected: Directive | None) -> None:
    assert parse_directive(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "[sim:bogus]",
        "[sim:status=abc]",
        "[sim:status=99]",
        "[sim:should_retry=maybe]",
        "[sim:slow=-1]",
        "[sim:status=404",
        "[sim:malformed=xml]",
        "[sim:reset=1]",
    ],
)
def test_parse_directive_rejects(text: str) -> None:
    with pytest.raises(DirectiveError):
        parse_directive(text)


@pytest.mark.parametrize(
    ("directive", "attempt", "kind", "status", "headers"),
    [
        (Directive(status=404), 7, "status", 404, ()),
        (Directive(fail=2), 1, "status", 500, ()),
        (Directive(fail=2, status=503), 3, None, None, None),
        (
            Directive(status=503, retry_after=2.0, retry_after_ms=150, should_retry=False),
            1,
            "status",
            503,
            (("Retry-After", "2"), ("retry-after-ms", "150"), ("x-should-retry", "false")),
        ),
        (Directive(reset=True, fail=1), 1, "reset", 200, ()),
        (Directive(malformed="shape"), 1, "malformed", 200, ()),
        (Directive(hang=True, hang_s=0.5), 1, "ok", 200, ()),
        (Directive(slow_ms=10.0), 1, None, None, None),
    ],
)
def test_directive_fault_table(
    directive: Directive, attempt: int, kind: str | None, status: int | None, headers: tuple | None
) -> None:
    fault = directive_fault(directive, attempt, SimulatorConfig())
    if kind is None:
        assert fault is None
        return
    assert fault is not None
    assert (fault.kind, fault.status, fault.headers) == (kind, status, headers)


@pytest.mark.parametrize(
    ("rates", "draw", "expected"),
    [
        ({}, 0.0, None),
        ({"fault_500": 1.0}, 0.999, "fault_500"),
        ({"fault_500": 0.2, "fault_503": 0.3}, 0.1, "fault_500"),
        ({"fault_500": 0.2, "fault_503": 0.3}, 0.4, "fault_503"),
        ({"fault_500": 0.2, "fault_503": 0.3}, 0.5, None),
        ({"fault_malformed": 0.5}, 0.25, "fault_malformed"),
        ({"fault_timeout": 0.1, "fault_reset": 0.1}, 0.15, "fault_reset"),
    ],
)
def test_random_fault_name_table(rates: dict, draw: float, expected: str | None) -> None:
    assert random_fault_name(SimulatorConfig(**rates), draw) == expected


def test_latency_tail_and_jitter_bounds() -> None:
    rng = random.Random(1)
    config = SimulatorConfig(latency_ms=100, latency_jitter_ms=10, tail_fraction=0.5, tail_multiplier=10)
    samples = [latency_s(config, rng) for _ in range(400)]
    assert all(0.09 <= s <= 0.11 or 0.9 <= s <= 1.1 for s in samples)
    assert 100 < sum(s > 0.5 for s in samples) < 300


@pytest.mark.parametrize(("seconds", "text"), [(1, "1"), (2.0, "2"), (0.25, "0.25"), (0.0001, "0")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_fixed_window_admits_limit_then_reports_time_left() -> None:
    window = FixedWindow(60.0)
    assert [window.acquire(2, t) for t in (100.0, 101.0)] == [None, None]
    assert window.acquire(2, 130.0) == pytest.approx(30.0)
    assert window.acquire(2, 160.0) is None  # the window rolled
    window.reset()
    assert window.acquire(2, 161.0) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"fault_500": 1.5},
        {"latency_ms": -1},
        {"port": 70000},
        {"models": []},
        {"max_in_flight": 0},
        {"record_requests": "yes"},
        {"seed": 1.5},
        {"models": "m"},
    ],
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises((TypeError, ValueError)):
        SimulatorConfig(**bad)


def test_config_with_changes_refuses_host_and_port() -> None:
    with pytest.raises(ValueError, match="port"):
        SimulatorConfig().with_changes({"port": 1})
    assert SimulatorConfig().with_changes({"models": ["a", "b"]}).models == ("a", "b")


def test_config_round_trips_through_argv() -> None:
    config = SimulatorConfig(
        models=("a", "b"), latency_ms=5.5, max_in_flight=3, record_requests=True, api_key="k", fault_503=0.25
    )
    argv = config_to_argv(config)
    assert "--latency-ms" in argv and "--record-requests" in argv
    assert config_from_argv(build_parser().parse_args(argv)) == config
    assert "k" not in config_to_argv(config, include_api_key=False)
    assert config.to_dict()["api_key"] == "***"


# =================================================================== quotas (per key)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "1ms"),  # rounded up: waiting the header's time is always enough
        (0.012, "12ms"),
        (0.1, "100ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (19.998, "19.998s"),
        (59.9991, "1m0s"),
        (60.0, "1m0s"),
        (360.0, "6m0s"),
        (252.172, "4m12.172s"),
        (3600.0, "1h0m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_format_duration_is_go_style_rounded_up_to_the_millisecond(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("seconds", "ms"), [(0.0, 0), (0.1, 100), (0.3, 300), (1.2, 1200), (0.0011, 2)])
def test_ceil_ms_ignores_float_noise(seconds: float, ms: int) -> None:
    assert ceil_ms(seconds) == ms


# ------------------------------------------------------------------------- the bucket


@pytest.mark.parametrize(
    ("limit", "takes", "now", "used", "remaining", "reset_s"),
    [
        # 60 per minute refills 1 per second.
        (60, [(1, 0.0)], 0.0, 1.0, 59, 1.0),
        (60, [(1, 0.0)], 0.5, 0.5, 59, 0.5),
        (60, [(1, 0.0)], 5.0, 0.0, 60, 0.0),
        (60, [(10, 0.0), (10, 2.0)], 2.0, 18.0, 42, 18.0),
        # 600 per minute refills 10 per second: one request is "full again" after 100 ms.
        (600, [(1, 0.0)], 0.0, 1.0, 599, 0.1),
        (600, [(600, 0.0)], 30.0, 300.0, 300, 30.0),
        # 60,000 tokens per minute refill 1,000 per second.
        (60_000, [(59_800, 0.0)], 0.0, 59_800.0, 200, 59.8),
        (60_000, [(59_800, 0.0)], 0.3, 59_500.0, 500, 59.5),
        # A clock going back counts as no time.
        (60, [(30, 10.0)], 5.0, 30.0, 30, 30.0),
    ],
)
def test_bucket_refills_continuously_at_limit_per_minute(
    limit: int, takes: list[tuple[int, float]], now: float, used: float, remaining: int, reset_s: float
) -> None:
    bucket = TokenBucket()
    for cost, at in takes:
        bucket.take(cost, limit, at)
    assert bucket.used(limit, now) == pytest.approx(used)
    assert bucket.remaining(limit, now) == remaining
    assert bucket.reset_s(limit, now) == pytest.approx(reset_s)


@pytest.mark.parametrize(
    ("limit", "used", "cost", "wait"),
    [
        (600, 599, 1, None),  # exactly fits
        (600, 600, 1, 0.1),  # one request's refill: 100 ms
        (3, 3, 1, 20.0),
        (60_000, 59_800, 500, 0.3),  # OpenAI's example: try again in 300ms
        (60_000, 59_800, 200, None),
        (100, 0, 101, math.inf),  # larger than the whole limit: never fits
        (100, 0, 100, None),
    ],
)
def test_bucket_wait_is_the_time_until_the_cost_fits(
    limit: int, used: int, cost: int, wait: float | None
) -> None:
    bucket = TokenBucket()
    if used:
        bucket.take(used, limit, 0.0)
    got = bucket.wait(cost, limit, 0.0)
    assert got == (None if wait is None else pytest.approx(wait))


def test_bucket_float_noise_never_flips_an_admission() -> None:
    bucket = TokenBucket()
    for i in range(600):  # 600 RPM, one request every 100 ms: each one just fits
        at = i * 0.1
        assert bucket.wait(1, 600, at) is None, i
        bucket.take(1, 600, at)
    assert bucket.remaining(600, 59.9) == 599


def test_bucket_keeps_what_was_used_when_the_limit_changes() -> None:
    bucket = TokenBucket()
    bucket.take(6, 6, 0.0)  # 6 per minute: empty
    assert bucket.wait(1, 6, 0.0) == pytest.approx(10.0)
    assert bucket.wait(1, 12, 0.0) is None  # a higher limit has room at once
    assert bucket.remaining(3, 0.0) == 0  # a lower one is simply exhausted
    assert bucket.reset_s(3, 0.0) == pytest.approx(120.0)


# --------------------------------------------------------------------------- admission


def test_rpm_burst_then_refill_and_refusals_take_nothing() -> None:
    key = KeyQuota("anonymous")
    admitted = [admit_quota(key, 3, None, 10, 0.0) for _ in range(3)]
    assert admitted == [None, None, None]
    refusal = admit_quota(key, 3, None, 10, 1.0)
    assert refusal == QuotaRefusal("quota_rpm", 3, 3, 1, pytest.approx(19.0))
    assert admit_quota(key, 3, None, 10, 5.0) is not None
    assert key.admitted_requests == 3 and key.admitted_tokens == 30
    assert admit_quota(key, 3, None, 10, 20.0) is None  # one request refilled after 20 s
    assert admit_quota(key, 3, None, 10, 20.0) is not None


def test_tpm_refusal_takes_nothing_so_a_smaller_request_still_fits() -> None:
    key = KeyQuota("anonymous")
    assert admit_quota(key, 10, 100, 60, 0.0) is None
    refusal = admit_quota(key, 10, 100, 60, 0.0)
    assert refusal == QuotaRefusal("quota_tpm", 100, 60, 60, pytest.approx(12.0))
    assert key.requests.remaining(10, 0.0) == 9  # the refused request used no request either
    assert admit_quota(key, 10, 100, 40, 0.0) is None
    assert (key.admitted_requests, key.admitted_tokens) == (2, 100)


def test_rpm_is_checked_before_tpm() -> None:
    key = KeyQuota("anonymous")
    assert admit_quota(key, 1, 100, 100, 0.0) is None
    refusal = admit_quota(key, 1, 100, 100, 0.0)
    assert refusal is not None and refusal.label == "quota_rpm"


def test_request_larger_than_the_tpm_limit_is_too_large() -> None:
    key = KeyQuota("anonymous")
    refusal = admit_quota(key, None, 100, 101, 0.0)
    assert refusal is not None and refusal.too_large and refusal.label == "quota_tpm"
    assert refusal.retry_headers() == ()
    assert key.tokens.remaining(100, 0.0) == 100


@pytest.mark.parametrize(
    ("wait", "headers"),
    [
        (0.1, (("Retry-After", "1"), ("retry-after-ms", "100"))),
        (1.0, (("Retry-After", "1"), ("retry-after-ms", "1000"))),
        (1.0004, (("Retry-After", "2"), ("retry-after-ms", "1001"))),
        (19.998, (("Retry-After", "20"), ("retry-after-ms", "19998"))),
    ],
)
def test_retry_headers_round_up(wait: float, headers: tuple[tuple[str, str], ...]) -> None:
    assert QuotaRefusal("quota_rpm", 1, 1, 1, wait).retry_headers() == headers


def test_rate_limit_headers_per_configured_dimension_in_openai_order() -> None:
    key = KeyQuota("anonymous")
    admit_quota(key, 600, 60_000, 500, 0.0)
    assert rate_limit_headers(key, 600, 60_000, 0.0) == [
        ("x-ratelimit-limit-requests", "600"),
        ("x-ratelimit-limit-tokens", "60000"),
        ("x-ratelimit-remaining-requests", "599"),
        ("x-ratelimit-remaining-tokens", "59500"),
        ("x-ratelimit-reset-requests", "100ms"),
        ("x-ratelimit-reset-tokens", "500ms"),
    ]
    assert rate_limit_headers(key, None, 60_000, 0.25) == [
        ("x-ratelimit-limit-tokens", "60000"),
        ("x-ratelimit-remaining-tokens", "59750"),
        ("x-ratelimit-reset-tokens", "250ms"),
    ]
    assert rate_limit_headers(key, 600, None, 1.0)[1:] == [
        ("x-ratelimit-remaining-requests", "600"),
        ("x-ratelimit-reset-requests", "0s"),
    ]
    assert rate_limit_headers(key, None, None, 1.0) == []


def test_key_clear_keeps_requests_in_flight() -> None:
    key = KeyQuota("anonymous")
    admit_quota(key, 1, 10, 5, 0.0)
    key.in_flight = 2
    key.clear()
    assert key.snapshot() == {"requests": 0, "tokens": 0, "in_flight": 2}
    assert admit_quota(key, 1, 10, 5, 0.0) is None


# ------------------------------------------------------------------------ token counts


@pytest.mark.parametrize(
    ("messages", "max_tokens", "n", "default", "expected"),
    [
        ([user("one two three")], None, 1, DEFAULT_QUOTA_MAX_TOKENS, 3 + DEFAULT_QUOTA_MAX_TOKENS),
        ([user("one two three")], 100, 1, 16, 103),
        ([user("one two three")], 100, 3, 16, 303),
        ([{"role": "system", "content": "be brief"}, user("hi")], 5, 1, 16, 8),
        ([user("hi")], None, 2, 0, 1),
    ],
)
def test_chat_quota_tokens_is_prompt_words_plus_n_times_max_tokens(
    messages: list[dict[str, str]], max_tokens: int | None, n: int, default: int, expected: int
) -> None:
    assert chat_quota_tokens(messages, max_tokens, n, default) == expected


def test_embeddings_quota_tokens_is_the_input_words() -> None:
    assert embeddings_quota_tokens(["a b", "c", ""]) == 3


def test_key_labels_hide_the_key_and_separate_keys() -> None:
    assert quota_key_label(None) == quota_key_label("") == "anonymous"
    a, b = quota_key_label("Bearer sk-a"), quota_key_label("Bearer sk-b")
    assert a != b and re.fullmatch(r"key-[0-9a-f]{12}", a) and "sk-a" not in a


# ------------------------------------------------------------------------------ bodies


def test_quota_error_bodies_read_like_openais() -> None:
    rpm = quota_error_body(QuotaRefusal("quota_rpm", 600, 600, 1, 0.1), "gpt-x")["error"]
    assert rpm["type"] == "requests" and rpm["code"] == "rate_limit_exceeded" and rpm["param"] is None
    assert rpm["message"].startswith(
        "Rate limit reached for gpt-x in organization org-simulator on requests per min (RPM): "
        "Limit 600, Used 600, Requested 1. Please try again in 100ms."
    )
    tpm = quota_error_body(QuotaRefusal("quota_tpm", 60_000, 59_800, 500, 0.3), "gpt-x")["error"]
    assert tpm["type"] == "tokens"
    assert (
        "on tokens per min (TPM): Limit 60000, Used 59800, Requested 500. Please try again in 300ms."
        in (tpm["message"])
    )
    large = quota_error_body(QuotaRefusal("quota_tpm", 100, 0, 101, math.inf), "m")["error"]
    assert large["message"].startswith("Request too large for m") and "try again" not in large["message"]
    busy = concurrency_error_body(4, 4, 1.0)["error"]
    assert busy["code"] == "rate_limit_exceeded" and "concurrent requests: Limit 4, Used 4" in busy["message"]


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "bad",
    [
        {"quota_rpm": 0},
        {"quota_tpm": -1},
        {"quota_max_concurrent": 0},
        {"quota_rpm": 1.5},
        {"quota_headers": "yes"},
        {"quota_default_max_tokens": -1},
    ],
)
def test_quota_option_validation(bad: dict) -> None:
    with pytest.raises((TypeError, ValueError)):
        SimulatorConfig(**bad)


def test_quota_options_round_trip_through_argv_and_change_at_runtime() -> None:
    config = SimulatorConfig(
        quota_rpm=600,
        quota_tpm=60_000,
        quota_max_concurrent=8,
        quota_headers=False,
        quota_default_max_tokens=4,
    )
    argv = config_to_argv(config)
    assert argv == [
        "--quota-rpm",
        "600",
        "--quota-tpm",
        "60000",
        "--quota-max-concurrent",
        "8",
        "--no-quota-headers",
        "--quota-default-max-tokens",
        "4",
    ]
    assert config_from_argv(build_parser().parse_args(argv)) == config
    assert config.has_quota and not SimulatorConfig().has_quota
    assert SimulatorConfig().with_changes({"quota_tpm": 10}).has_quota
    help_text = build_parser().format_help()
    for flag in ("--quota-rpm", "--quota-tpm", "--quota-max-concurrent", "--quota-headers"):
        assert flag in help_text

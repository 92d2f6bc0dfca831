"""Tables for the simulator's pure parts: replies, directives, fault choice, limits, config."""

from __future__ import annotations

import json
import math
import random

import pytest

from flink_llm_udf.simulator import (
    Directive,
    DirectiveError,
    SimulatorConfig,
    expected_chat_choice,
    expected_chat_reply,
    expected_embedding,
    expected_prompt_tokens,
    parse_directive,
)
from flink_llm_udf.simulator._behaviour import build_parser, config_from_argv, config_to_argv
from flink_llm_udf.simulator._faults import (
    directive_fault,
    format_seconds,
    latency_s,
    random_fault_name,
)
from flink_llm_udf.simulator._limits import FixedWindow


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

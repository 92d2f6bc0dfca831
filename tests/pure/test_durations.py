"""Flink-style durations: ``1s``, ``500 ms``, ``2 min``, ``1h``; a bare number is milliseconds."""

from __future__ import annotations

import pytest

from flink_llm_udf._durations import parse_duration


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("1s", 1.0),
        ("1 s", 1.0),
        ("0s", 0.0),
        ("30s", 30.0),
        ("1sec", 1.0),
        ("2 secs", 2.0),
        ("1 second", 1.0),
        ("5 seconds", 5.0),
        ("500 ms", 0.5),
        ("500ms", 0.5),
        ("1 milli", 0.001),
        ("20 millis", 0.02),
        ("1 millisecond", 0.001),
        ("250 milliseconds", 0.25),
        ("2 min", 120.0),
        ("2min", 120.0),
        ("3m", 180.0),
        ("1 minute", 60.0),
        ("10 minutes", 600.0),
        ("1h", 3600.0),
        ("2 hours", 7200.0),
        ("1 hour", 3600.0),
        ("1d", 86400.0),
        ("2 days", 172800.0),
        ("1500 us", 0.0015),
        ("1 µs", 1e-6),
        ("1000000 ns", 0.001),
        ("250", 0.25),
        ("0", 0.0),
        ("1000", 1.0),
        ("  1s  ", 1.0),
        ("1S", 1.0),
        ("500 MS", 0.5),
        ("2 Min", 120.0),
        ("1H", 3600.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "s",
        "ms",
        "soon",
        "-1s",
        "+1s",
        "1.5s",
        "1,5s",
        "1e3",
        "1 s s",
        "1s 2ms",
        "1 fortnight",
        "1 sx",
        "1 mins30",
        "one second",
        "0x10",
        "1_000",
    ],
)
def test_bad_durations_raise_value_error(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)

"""Parse Flink-style durations (``1s``, ``500 ms``, ``2 min``, ``1h``) into seconds."""

from __future__ import annotations

import re

_UNIT_SECONDS: dict[str, float] = {}
for _names, _seconds in (
    (("d", "day", "days"), 86400.0),
    (("h", "hour", "hours"), 3600.0),
    (("min", "m", "minute", "minutes"), 60.0),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("ms", "milli", "millis", "millisecond", "milliseconds"), 1e-3),
    (("us", "µs", "micro", "micros", "microsecond", "microseconds"), 1e-6),
    (("ns", "nano", "nanos", "nanosecond", "nanoseconds"), 1e-9),
):
    for _name in _names:
        _UNIT_SECONDS[_name] = _seconds

_DURATION = re.compile(r"^\s*(\d+)\s*([a-zµ]*)\s*$")


def parse_duration(text: str) -> float:
    """Return the duration in seconds; a bare number is milliseconds, as in Flink.

    Raises ``ValueError`` (without naming an option: callers add that) on anything else.
    """
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (expected e.g. '1s', '500 ms', '2 min', '1h')")
    amount, unit = int(match.group(1)), match.group(2) or "ms"
    if unit not in _UNIT_SECONDS:
        raise ValueError(f"unknown time unit {unit!r} in {text!r} (use ms, s, min, h or d)")
    return amount * _UNIT_SECONDS[unit]

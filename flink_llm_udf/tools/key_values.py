"""The ``--set KEY=VALUE`` arguments of the tools' command lines (cluster, sql, bench)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["parse_key_values"]


def parse_key_values(items: Iterable[str]) -> list[tuple[str, str]]:
    """``KEY=VALUE`` strings as stripped ``(key, value)`` pairs, in order.

    Raises ValueError naming the first item without ``=`` or with an empty key.
    """
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs

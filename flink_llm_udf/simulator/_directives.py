"""Input-directed faults: ``[sim:...]`` directives embedded in a row's text.

A directive is looked for only in the first user message of a chat request, or in each
embedding input, and only when that text contains ``[sim:`` (so ordinary rows pay one
substring test). Syntax: ``[sim:item,item,...]`` where an item is ``key`` or ``key=value``;
several ``[sim:...]`` groups in one text are merged, later items win. The directive text is
part of the input, so it also appears in the deterministic reply.

==========================  ===============================================================
``status=404``              answer that status with an OpenAI error body
``fail=3``                  apply the fault only to the first 3 attempts of this exact text,
                            then answer normally; alone it means ``status=500``
``reset``                   drop the connection without an answer
``malformed``               200 whose body is not JSON (``malformed=shape``: valid JSON
                            without ``choices``/``data``)
``hang`` / ``hang=2.5``     wait ``timeout_hang_s`` (or the given seconds), then answer
``slow=500``                add 500 ms latency (not a failure; applies to every attempt)
``retry_after=2``           add ``Retry-After: 2`` to the injected failure
``retry_after_ms=150``      add ``retry-after-ms: 150`` to the injected failure
``should_retry=false``      add ``x-should-retry: false`` (or ``true``) to the failure
``invalid_json``            200 whose content is not JSON (structured requests only, see
                            :mod:`._replies`; other requests are answered normally)
``schema_violation``        200 whose content is JSON violating the request's schema
                            (structured requests only)
==========================  ===============================================================

Examples: ``"[sim:status=404] row 7"``, ``"[sim:fail=2,status=503,retry_after=0] row 8"``,
``"[sim:fail=1,reset] row 9"``, ``"[sim:fail=2,schema_violation] row 10"`` (a structured
reply that is wrong twice, then right). Unknown keys or bad values make the request a 400, so a typo
never silently turns into a success.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._errors import FlinkLLMError

__all__ = ["MARKER", "Directive", "DirectiveError", "parse_directive"]

MARKER = "[sim:"
_GROUP = re.compile(r"\[sim:([^\]]*)\]")


class DirectiveError(FlinkLLMError, ValueError):
    """A ``[sim:...]`` directive has an unknown key or a bad value."""


@dataclass(frozen=True, slots=True)
class Directive:
    """Parsed ``[sim:...]`` items; ``None``/``False`` means "not requested"."""

    status: int | None = None
    fail: int | None = None
    reset: bool = False
    malformed: str | None = None
    hang_s: float | None = None
    hang: bool = False
    slow_ms: float = 0.0
    retry_after: float | None = None
    retry_after_ms: int | None = None
    should_retry: bool | None = None
    invalid_json: bool = False
    schema_violation: bool = False

    @property
    def has_fault(self) -> bool:
        """True when the directive asks for a failure (not just latency or headers)."""
        return (
            self.status is not None
            or self.fail is not None
            or self.reset
            or self.malformed is not None
            or self.hang
            or self.invalid_json
            or self.schema_violation
        )


def _int(key: str, value: str | None, low: int, high: int) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise DirectiveError(f"[sim:{key}=...] needs an integer, got {value!r}") from None
    if not low <= number <= high:
        raise DirectiveError(f"[sim:{key}=...] must be in [{low}, {high}], got {number}")
    return number


def _seconds(key: str, value: str | None) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise DirectiveError(f"[sim:{key}=...] needs a number, got {value!r}") from None
    if not 0.0 <= number <= 86_400_000.0:
        raise DirectiveError(f"[sim:{key}=...] must be a non-negative number, got {value!r}")
    return number


def parse_directive(text: str) -> Directive | None:
    """Parse every ``[sim:...]`` group in ``text``; ``None`` when there is none."""
    if MARKER not in text:
        return None
    groups = _GROUP.findall(text)
    if not groups:
        raise DirectiveError(f"unterminated [sim:...] directive in {text[:80]!r}")
    items: dict[str, str | None] = {}
    for group in groups:
        for item in group.split(","):
            item = item.strip()
            if item:
                key, sep, value = item.partition("=")
                items[key.strip()] = value.strip() if sep else None
    fields: dict[str, Any] = {}
    for key, value in items.items():
        if key == "status":
            fields["status"] = _int(key, value, 100, 599)
        elif key == "fail":
            fields["fail"] = _int(key, value, 0, 1_000_000_000)
        elif key in ("reset", "invalid_json", "schema_violation") and value is None:
            fields[key] = True
        elif key == "malformed":
            if value not in (None, "json", "shape"):
                raise DirectiveError(f"[sim:malformed=...] must be json or shape, got {value!r}")
            fields["malformed"] = value or "json"
        elif key == "hang":
            fields["hang"] = True
            fields["hang_s"] = None if value is None else _seconds(key, value)
        elif key == "slow":
            fields["slow_ms"] = _seconds(key, value)
        elif key == "retry_after":
            fields["retry_after"] = _seconds(key, value)
        elif key == "retry_after_ms":
            fields["retry_after_ms"] = _int(key, value, 0, 86_400_000)
        elif key == "should_retry":
            if value not in ("true", "false"):
                raise DirectiveError(f"[sim:should_retry=...] must be true or false, got {value!r}")
            fields["should_retry"] = value == "true"
        else:
            raise DirectiveError(f"unknown simulator directive {key!r} in [sim:...]")
    return Directive(**fields)

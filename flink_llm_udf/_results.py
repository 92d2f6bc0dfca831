"""Per-row outcomes as values: the Flink adapters turn them into NULL, an error column or a raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from ._wire import Usage

__all__ = ["FAILED", "IGNORED", "NULL_INPUT", "OK", "SKIPPED", "Outcome", "RowResult", "Usage"]

#: What happened to a row; the constants below name each value.
Outcome = Literal["ok", "null_input", "skipped", "ignored", "failed"]

OK: Final[Outcome] = "ok"  # the endpoint answered; value holds the answer
NULL_INPUT: Final[Outcome] = "null_input"  # the input was NULL: nothing was sent
SKIPPED: Final[Outcome] = "skipped"  # over max_context_size with a skipped action: nothing was sent
IGNORED: Final[Outcome] = "ignored"  # failed, and IGNORE (strategy or fallback) turned it into NULL
FAILED: Final[Outcome] = "failed"  # failed under FAILOVER: the caller raises RowFailedError


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one input row.

    ``value`` is the first choice's text (chat), a ``list[float]`` (embeddings) or None;
    ``choices`` holds every choice when the provider asks for ``n > 1``; ``error`` never holds
    the API key; ``status`` is the last HTTP status seen; ``attempts`` the requests made;
    ``throttled_s`` the time the row waited for the quota (not counted against its deadline);
    ``cached`` whether the answer came without a request of its own (from the result cache, or
    shared with an identical request in flight); ``cost`` what the row's requests cost at the
    configured prices (0 for a cached answer; None without prices). ``value`` is a dict (or list)
    for structured output.
    """

    value: Any
    outcome: Outcome = OK
    error: str | None = None
    status: int | None = None
    attempts: int = 0
    usage: Usage | None = None
    choices: tuple[str, ...] = ()
    latency_s: float = 0.0
    throttled_s: float = 0.0
    cached: bool = False
    cost: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the endpoint answered (the outcome is ``OK``)."""
        return self.outcome == OK

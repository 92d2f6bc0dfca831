"""Per-row outcomes as values: the Flink adapters turn them into NULL, an error column or a raise."""

from __future__ import annotations

from dataclasses import dataclass

from ._wire import Usage

__all__ = ["FAILED", "IGNORED", "NULL_INPUT", "OK", "SKIPPED", "RowResult", "Usage"]

OK = "ok"  # the endpoint answered; value holds the answer
NULL_INPUT = "null_input"  # the input was NULL: nothing was sent
SKIPPED = "skipped"  # over max_context_size with a skipped action: nothing was sent
IGNORED = "ignored"  # failed, and IGNORE (strategy or fallback) turned it into NULL
FAILED = "failed"  # failed under FAILOVER: the caller raises RowFailedError


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one input row.

    ``value`` is the first choice's text (chat), a ``list[float]`` (embeddings) or None;
    ``choices`` holds every choice when the provider asks for ``n > 1``; ``error`` never holds
    the API key; ``status`` is the last HTTP status seen; ``attempts`` the requests made.
    """

    value: str | list[float] | None
    outcome: str = OK
    error: str | None = None
    status: int | None = None
    attempts: int = 0
    usage: Usage | None = None
    choices: tuple[str, ...] = ()
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == OK

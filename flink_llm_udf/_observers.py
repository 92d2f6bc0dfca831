"""What the engine reports while it works, and an in-memory implementation.

The engine calls an ``EngineObserver``; the Flink adapters implement it on Flink's metric group
(``flink_llm_udf.flink``) under the names in ``METRIC_NAMES``.
"""

from __future__ import annotations

import collections
import threading
from typing import Protocol

from ._results import FAILED, IGNORED, NULL_INPUT, OK, SKIPPED, RowResult

# Stable, documented metric names (Flink exposes them under the operator's "flink_llm" group).
METRIC_NAMES = {
    "requests": "requests sent to the endpoint (every attempt)",
    "requestErrors": "requests that failed (HTTP error, connection error, timeout, malformed body)",
    "retries": "attempts made after a row's first",
    "rowsSucceeded": "rows with an answer",
    "rowsFailed": "rows that failed under FAILOVER",
    "rowsIgnored": "rows that failed and became NULL under IGNORE",
    "rowsSkipped": "rows skipped by max-context-size (no request)",
    "rowsNull": "NULL input rows (no request)",
    "promptTokens": "prompt tokens the endpoint reported",
    "completionTokens": "completion tokens the endpoint reported",
    "requestLatencyP50Ms": "median latency of the last 1,024 requests, in milliseconds",
    "requestLatencyP99Ms": "99th-percentile latency of the last 1,024 requests, in milliseconds",
}
LATENCY_WINDOW = 1024


class EngineObserver(Protocol):
    """Callbacks the engine makes; implementations must be cheap and must not raise."""

    def request_done(self, latency_s: float, ok: bool) -> None: ...
    def retry(self) -> None: ...
    def row_done(self, result: RowResult) -> None: ...


class NullObserver:
    """Observes nothing."""

    def request_done(self, latency_s: float, ok: bool) -> None:
        pass

    def retry(self) -> None:
        pass

    def row_done(self, result: RowResult) -> None:
        pass


_ROW_COUNTER = {
    OK: "rowsSucceeded",
    FAILED: "rowsFailed",
    IGNORED: "rowsIgnored",
    SKIPPED: "rowsSkipped",
    NULL_INPUT: "rowsNull",
}


class CountingObserver:
    """Thread-safe counters under ``METRIC_NAMES``, plus request latencies for percentiles."""

    def __init__(self, keep_latencies: int = LATENCY_WINDOW) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {name: 0 for name in METRIC_NAMES if "Latency" not in name}
        self.latencies_s: collections.deque[float] = collections.deque(maxlen=keep_latencies)

    def request_done(self, latency_s: float, ok: bool) -> None:
        with self._lock:
            self.counts["requests"] += 1
            if not ok:
                self.counts["requestErrors"] += 1
            self.latencies_s.append(latency_s)

    def retry(self) -> None:
        with self._lock:
            self.counts["retries"] += 1

    def row_done(self, result: RowResult) -> None:
        with self._lock:
            self.counts[_ROW_COUNTER[result.outcome]] += 1
            if result.usage is not None:
                self.counts["promptTokens"] += result.usage.prompt_tokens
                self.counts["completionTokens"] += result.usage.completion_tokens

    def latency_percentile_ms(self, q: float) -> float:
        """Latency percentile ``q`` (0..1) over the recent window, in ms; 0 before any request."""
        with self._lock:
            ordered = sorted(self.latencies_s)
        if not ordered:
            return 0.0
        return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def value(self, name: str) -> float:
        """The current value of metric ``name`` (a count, or a latency percentile in ms)."""
        if name == "requestLatencyP50Ms":
            return self.latency_percentile_ms(0.5)
        if name == "requestLatencyP99Ms":
            return self.latency_percentile_ms(0.99)
        return self.counts[name]

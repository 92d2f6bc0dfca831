"""What the engine reports while it works, and an in-memory implementation.

The engine calls an ``EngineObserver``; the Flink adapters implement it on Flink's metric group
(``flink_llm_udf.flink``) under the names in ``METRIC_NAMES``.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ._results import FAILED, IGNORED, NULL_INPUT, OK, SKIPPED, RowResult

if TYPE_CHECKING:
    from ._quota import QuotaUsage

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
    "promptTokens": "prompt tokens the endpoint reported (rows answered by a request of their own)",
    "completionTokens": "completion tokens the endpoint reported (rows answered by a request of their own)",
    "costMicros": "cost of the requests at the configured prices, in millionths of the price's unit",
    "rowsCached": "rows answered without a request of their own (cache, or the same request in flight)",
    "cacheHits": "result-cache lookups that found an answer",
    "cacheMisses": "result-cache lookups that found none",
    "cacheErrors": "result-cache lookups or stores that failed (the store unreachable): the rows were sent",
    "budgetRefused": "requests refused because the token or cost budget was spent",
    "requestLatencyP50Ms": "median latency of the last 1,024 requests, in milliseconds",
    "requestLatencyP99Ms": "99th-percentile latency of the last 1,024 requests, in milliseconds",
    "rateLimited": "replies with HTTP 429 (rate limited)",
    "throttledMs": "time requests were held back by the quota gate, in milliseconds (summed over rows)",
    "concurrencyLimit": "requests allowed in flight now (adaptive: halves on 429s and timeouts)",
    "requestsLastMinute": "requests sent in the last minute",
    "tokensLastMinute": "tokens used in the last minute (estimates, corrected by replies)",
    "requestsPerMinuteLimit": "this subtask's share of the requests-per-minute quota (0: none)",
    "tokensPerMinuteLimit": "this subtask's share of the tokens-per-minute quota (0: none)",
}
#: Metrics read from the quota gate rather than counted here.
QUOTA_METRICS = frozenset(
    {
        "rateLimited",
        "throttledMs",
        "concurrencyLimit",
        "requestsLastMinute",
        "tokensLastMinute",
        "requestsPerMinuteLimit",
        "tokensPerMinuteLimit",
    }
)
#: Metrics the engine counts itself (its cache and spend guard), read through ``attach_counts``.
ENGINE_COUNTS = frozenset({"cacheHits", "cacheMisses", "cacheErrors", "budgetRefused"})
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
        self.counts: dict[str, int] = {
            name: 0
            for name in METRIC_NAMES
            if "Latency" not in name and name not in QUOTA_METRICS and name not in ENGINE_COUNTS
        }
        self.latencies_s: collections.deque[float] = collections.deque(maxlen=keep_latencies)
        self.cost = 0.0
        self._quota: Callable[[], QuotaUsage] | None = None
        self._engine_counts: Callable[[], dict[str, float]] | None = None

    def attach_quota(self, usage: Callable[[], QuotaUsage]) -> None:
        """Read the quota metrics from ``usage`` (the engine attaches its gate)."""
        self._quota = usage

    def attach_counts(self, counts: Callable[[], dict[str, float]]) -> None:
        """Read the cache and budget metrics from ``counts`` (the engine attaches its own)."""
        self._engine_counts = counts

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
            if result.cached:
                self.counts["rowsCached"] += 1
            elif result.usage is not None:
                self.counts["promptTokens"] += result.usage.prompt_tokens
                self.counts["completionTokens"] += result.usage.completion_tokens
            if result.cost:
                self.cost += result.cost
                self.counts["costMicros"] = round(self.cost * 1e6)

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
        if name in QUOTA_METRICS:
            return self._quota_value(name)
        if name in ENGINE_COUNTS:
            return 0.0 if self._engine_counts is None else self._engine_counts()[name]
        return self.counts[name]

    def _quota_value(self, name: str) -> float:
        if self._quota is None:
            return 0.0
        usage = self._quota()
        return {
            "rateLimited": usage.rate_limited,
            "throttledMs": 1000.0 * usage.throttled_s,
            "concurrencyLimit": usage.concurrency_limit,
            "requestsLastMinute": usage.requests_last_minute,
            "tokensLastMinute": usage.tokens_last_minute,
            "requestsPerMinuteLimit": usage.requests_per_minute_limit or 0.0,
            "tokensPerMinuteLimit": usage.tokens_per_minute_limit or 0.0,
        }[name]

"""Retry decisions as small pure functions: what to retry, how long to wait, how often.

The rules are the provider contract's: HTTP 408, 409, 429 and >= 500, connection errors,
timeouts and malformed 2xx bodies are retryable; ``x-should-retry`` overrides the status; the
delay before retry k is the base interval (FIXED) or base * 2**(k-1) capped at 60 s
(EXPONENTIAL), stretched when the server's ``Retry-After`` / ``retry-after-ms`` asks for longer,
then stretched by up to 25 % at random (never shortened).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._durations import parse_duration
from ._options import ErrorHandlingStrategy, RetryBackoffStrategy, RetryFallbackStrategy

MAX_EXPONENTIAL_BACKOFF_S = 60.0
RETRYABLE_STATUSES = frozenset({408, 409, 429})
#: The most a retry's delay is stretched at random, as a share of its floor.
JITTER = 0.25


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a row's failures are handled: the provider's five error-handling options, parsed."""

    strategy: ErrorHandlingStrategy = "RETRY"
    retry_num: int = 100  # retries after the first attempt (RETRY only)
    backoff: RetryBackoffStrategy = "FIXED"
    base_interval_s: float = 1.0
    fallback: RetryFallbackStrategy = "FAILOVER"  # once retries are spent

    @classmethod
    def from_provider_values(
        cls,
        strategy: ErrorHandlingStrategy,
        retry_num: int,
        backoff: RetryBackoffStrategy,
        base_interval: str,
        fallback: RetryFallbackStrategy,
    ) -> RetryPolicy:
        return cls(strategy, retry_num, backoff, parse_duration(base_interval), fallback)

    @property
    def max_attempts(self) -> int:
        """Requests a row may make: ``retry_num + 1`` under RETRY, else one."""
        return self.retry_num + 1 if self.strategy == "RETRY" else 1

    @property
    def final_action(self) -> RetryFallbackStrategy:
        """What happens to a row whose attempts are spent: ``FAILOVER`` (raise) or ``IGNORE`` (NULL)."""
        if self.strategy == "RETRY":
            return self.fallback
        return self.strategy

    def worst_case_backoff_s(self) -> float:
        """Sum of every backoff delay a row could wait (ignoring Retry-After)."""
        return sum(backoff_delay(k, self.backoff, self.base_interval_s) for k in range(1, self.max_attempts))


def backoff_delay(retry_number: int, backoff: str, base_interval_s: float) -> float:
    """Seconds to wait before retry ``retry_number`` (1-based); overflow-safe for any k."""
    if retry_number < 1:
        raise ValueError(f"retry_number starts at 1, got {retry_number}")
    if backoff == "FIXED":
        return base_interval_s
    if base_interval_s <= 0:
        return 0.0
    # 2**(k-1) overflows float for large k; past the cap the answer is the cap anyway.
    if retry_number > 64:
        return MAX_EXPONENTIAL_BACKOFF_S
    return min(base_interval_s * 2.0 ** (retry_number - 1), MAX_EXPONENTIAL_BACKOFF_S)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``; else None.

    ``Retry-After`` may be seconds or an HTTP date. Unparseable, negative or non-finite values are
    ignored.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms)
            if math.isfinite(value) and value >= 0:
                return value / 1000.0
        except ValueError:
            pass
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(seconds, 0.0)


def is_retryable_status(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a response with this status may succeed on another attempt."""
    override = _header(headers, "x-should-retry")
    if override is not None:
        if override.strip().lower() == "true":
            return True
        if override.strip().lower() == "false":
            return False
    return status in RETRYABLE_STATUSES or status >= 500


def delay_before_retry(
    policy: RetryPolicy,
    retry_number: int,
    retry_after_s: float | None,
    uniform: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry ``retry_number``: a floor plus up to ``JITTER`` of it at random.

    The floor is the spec's backoff, or the server's Retry-After when it asks for longer; the
    jitter only ever adds, so rows that one 429 hit together do not all come back at once and
    none comes back sooner than asked. ``uniform`` returns a number in [0, 1).
    """
    floor = backoff_delay(retry_number, policy.backoff, policy.base_interval_s)
    if retry_after_s is not None and retry_after_s > floor:
        floor = retry_after_s
    return floor + floor * JITTER * uniform()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "getone"):
        # plain dicts are case-sensitive; aiohttp's CIMultiDict is not
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value

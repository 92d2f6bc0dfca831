"""Admission limits as pure arithmetic: the old ``rate_per_minute`` window and the quotas.

``rate_per_minute`` (:class:`FixedWindow`): the first admitted request opens a window of
``window_s`` seconds; up to ``limit`` requests are admitted in it, later ones are refused with
the time left until the window closes. It counts requests only and sends no ``x-ratelimit-*``
headers.

Quotas (``quota_rpm``, ``quota_tpm``, ``quota_max_concurrent``), kept per API key in a
:class:`KeyQuota`, model a hosted API's per-minute limits (OpenAI's "rate limits" guide: the
allowance "replenishes at the rate" of the limit):

* **Window.** Each dimension is a :class:`TokenBucket`: an allowance of ``limit`` units that
  refills continuously at ``limit / 60`` units per second, never above ``limit``. A request
  costs 1 request and its estimated tokens; it is admitted only if it fits both dimensions,
  and then takes from both. A refused request takes nothing.
* **Tokens of a request** (:func:`chat_quota_tokens`): the prompt's words as the simulator
  counts ``usage.prompt_tokens`` (every message's text) plus ``n`` times ``max_tokens``
  (``max_completion_tokens`` when ``max_tokens`` is absent; ``quota_default_max_tokens`` when
  both are). An embeddings request costs its inputs' words. The amount is charged when the
  request is admitted and kept: it is not reconciled with the reply's ``usage``, as OpenAI
  computes the limit before the completion exists.
* **Headers** (:func:`rate_limit_headers`), for each configured dimension:
  ``x-ratelimit-limit-*`` the limit, ``x-ratelimit-remaining-*`` ``floor(limit - used)`` and
  ``x-ratelimit-reset-*`` the time until the allowance is full again (``used`` divided by the
  refill rate: OpenAI's "time until the rate limit resets to its initial state"), written as
  Go durations rounded up to the millisecond (``0s``, ``12ms``, ``1.5s``, ``6m0s``).
* **Refusals** (:class:`QuotaRefusal`): the wait is the time until the request would fit
  (``(used + cost - limit) / rate``); ``Retry-After`` is its ceiling in whole seconds and
  ``retry-after-ms`` its ceiling in milliseconds. A request costing more tokens than the whole
  ``quota_tpm`` can never fit: it is refused with no wait ("Request too large").

Everything takes the time as a parameter, so tests never sleep.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._behaviour import DEFAULT_QUOTA_MAX_TOKENS
from ._replies import count_words, expected_prompt_tokens

__all__ = [
    "DEFAULT_QUOTA_MAX_TOKENS",
    "QUOTA_WINDOW_S",
    "FixedWindow",
    "KeyQuota",
    "QuotaRefusal",
    "admit_quota",
    "ceil_ms",
    "chat_quota_tokens",
    "embeddings_quota_tokens",
    "format_duration",
    "quota_key_label",
    "rate_limit_headers",
]

#: The quotas' window: limits are per minute, the allowance refills over this many seconds.
QUOTA_WINDOW_S = 60.0

#: Label of the bucket shared by requests without an ``Authorization`` header.
ANONYMOUS = "anonymous"


class FixedWindow:
    """Admit at most ``limit`` requests per ``window_s``-second window."""

    __slots__ = ("_count", "_start", "window_s")

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._start: float | None = None
        self._count = 0

    def acquire(self, limit: int, now: float) -> float | None:
        """Count a request at ``now``: ``None`` if admitted, else seconds until the window rolls."""
        if self._start is None or now - self._start >= self.window_s:
            self._start = now
            self._count = 0
        if self._count >= limit:
            return max(self._start + self.window_s - now, 0.0)
        self._count += 1
        return None

    def reset(self) -> None:
        """Forget the current window."""
        self._start = None
        self._count = 0


def ceil_ms(seconds: float) -> int:
    """``seconds`` in whole milliseconds, rounded up (float noise below a nanosecond ignored)."""
    return max(math.ceil(round(seconds * 1000.0, 6)), 0)


def format_duration(seconds: float) -> str:
    """A Go-style duration rounded up to the millisecond, as OpenAI's reset headers write it.

    >>> [format_duration(s) for s in (0, 0.012, 1, 1.5, 360, 252.172, 3600)]
    ['0s', '12ms', '1s', '1.5s', '6m0s', '4m12.172s', '1h0m0s']
    """
    ms = ceil_ms(seconds)
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class TokenBucket:
    """An allowance of ``limit`` units refilling at ``limit / window_s`` per second.

    Stored as ``used`` (what the allowance lacks to be full) at the last time it was looked
    at; the limit is passed to every call, so a runtime change of the limit keeps what was
    used and applies the new rate from then on. A clock that goes back counts as no time.
    """

    __slots__ = ("_stamp", "_used", "window_s")

    def __init__(self, window_s: float = QUOTA_WINDOW_S) -> None:
        self.window_s = window_s
        self._used = 0.0
        self._stamp: float | None = None

    def used(self, limit: int, now: float) -> float:
        """Units used and not yet refilled at ``now``."""
        if self._stamp is not None and now > self._stamp:
            # Rounded to a billionth of a unit: float noise never flips an admission.
            self._used = round(max(self._used - (now - self._stamp) * limit / self.window_s, 0.0), 9)
        if self._stamp is None or now > self._stamp:
            self._stamp = now
        return self._used

    def wait(self, cost: int, limit: int, now: float) -> float | None:
        """``None`` if ``cost`` fits at ``now``, else seconds until it does (inf: never)."""
        over = round(self.used(limit, now) + cost - limit, 9)
        if over <= 0:
            return None
        if cost > limit:
            return math.inf
        return over * self.window_s / limit

    def take(self, cost: int, limit: int, now: float) -> None:
        """Use ``cost`` units at ``now`` (the caller checked :meth:`wait` first)."""
        self._used = self.used(limit, now) + cost

    def remaining(self, limit: int, now: float) -> int:
        """Whole units available at ``now`` (``x-ratelimit-remaining-*``)."""
        return max(math.floor(round(limit - self.used(limit, now), 9)), 0)

    def reset_s(self, limit: int, now: float) -> float:
        """Seconds until the allowance is full again (``x-ratelimit-reset-*``)."""
        return self.used(limit, now) * self.window_s / limit

    def clear(self) -> None:
        """Back to a full allowance."""
        self._used = 0.0
        self._stamp = None


def quota_key_label(authorization: str | None) -> str:
    """How stats name a key's bucket: ``anonymous``, or ``key-`` and a digest of the header.

    The label never shows the key itself; tests compute it from the header they sent.
    """
    if not authorization:
        return ANONYMOUS
    return "key-" + hashlib.sha256(authorization.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class KeyQuota:
    """One API key's quota state: both buckets, its requests in flight and what it was admitted."""

    __slots__ = ("admitted_requests", "admitted_tokens", "in_flight", "label", "requests", "tokens")

    def __init__(self, label: str, window_s: float = QUOTA_WINDOW_S) -> None:
        self.label = label
        self.requests = TokenBucket(window_s)
        self.tokens = TokenBucket(window_s)
        self.in_flight = 0
        self.admitted_requests = 0
        self.admitted_tokens = 0

    def clear(self) -> None:
        """Full allowances and zero counters; the live ``in_flight`` gauge is kept."""
        self.requests.clear()
        self.tokens.clear()
        self.admitted_requests = 0
        self.admitted_tokens = 0

    def snapshot(self) -> dict[str, int]:
        """JSON-ready counters for ``/sim/stats``."""
        return {
            "requests": self.admitted_requests,
            "tokens": self.admitted_tokens,
            "in_flight": self.in_flight,
        }


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """Why a request does not fit: ``label`` ``quota_rpm`` or ``quota_tpm``, and the numbers.

    ``used`` is rounded up, so ``used + requested > limit`` holds as the message states it;
    ``wait_s`` is ``math.inf`` when the request is larger than the whole limit.
    """

    label: str
    limit: int
    used: int
    requested: int
    wait_s: float

    @property
    def too_large(self) -> bool:
        """The request can never fit: waiting does not help."""
        return math.isinf(self.wait_s)

    def retry_headers(self) -> tuple[tuple[str, str], ...]:
        """``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``; none if too large."""
        if self.too_large:
            return ()
        ms = ceil_ms(self.wait_s)
        return (("Retry-After", str(max(math.ceil(ms / 1000), 1))), ("retry-after-ms", str(ms)))


def admit_quota(
    state: KeyQuota, rpm: int | None, tpm: int | None, tokens: int, now: float
) -> QuotaRefusal | None:
    """Admit one request costing ``tokens`` at ``now`` (``None``) or say which limit refuses it.

    Requests per minute are checked first; a refused request takes nothing from either bucket.
    """
    if rpm is not None:
        wait = state.requests.wait(1, rpm, now)
        if wait is not None:
            used = math.ceil(state.requests.used(rpm, now))
            return QuotaRefusal("quota_rpm", rpm, used, 1, wait)
    if tpm is not None:
        wait = state.tokens.wait(tokens, tpm, now)
        if wait is not None:
            used = math.ceil(state.tokens.used(tpm, now))
            return QuotaRefusal("quota_tpm", tpm, used, tokens, wait)
        state.tokens.take(tokens, tpm, now)
    if rpm is not None:
        state.requests.take(1, rpm, now)
    state.admitted_requests += 1
    state.admitted_tokens += tokens
    return None


def rate_limit_headers(
    state: KeyQuota, rpm: int | None, tpm: int | None, now: float
) -> list[tuple[str, str]]:
    """The ``x-ratelimit-*`` headers of the configured dimensions, in OpenAI's order."""
    limits: list[tuple[str, str]] = []
    remaining: list[tuple[str, str]] = []
    resets: list[tuple[str, str]] = []
    for name, limit, bucket in (("requests", rpm, state.requests), ("tokens", tpm, state.tokens)):
        if limit is None:
            continue
        limits.append((f"x-ratelimit-limit-{name}", str(limit)))
        remaining.append((f"x-ratelimit-remaining-{name}", str(bucket.remaining(limit, now))))
        resets.append((f"x-ratelimit-reset-{name}", format_duration(bucket.reset_s(limit, now))))
    return limits + remaining + resets


def chat_quota_tokens(
    messages: Iterable[Mapping[str, Any]],
    max_tokens: int | None,
    n: int = 1,
    default_max_tokens: int = DEFAULT_QUOTA_MAX_TOKENS,
) -> int:
    """Tokens a chat request is charged: prompt words plus ``n`` times ``max_tokens`` (or the default).

    ``max_tokens`` is what the request asked for (``max_completion_tokens`` when it gave no
    ``max_tokens``), ``None`` when it gave neither.
    """
    completion = default_max_tokens if max_tokens is None else max_tokens
    return expected_prompt_tokens(messages) + n * completion


def embeddings_quota_tokens(inputs: Iterable[str]) -> int:
    """Tokens an embeddings request is charged: its inputs' words (its ``usage.prompt_tokens``)."""
    return sum(count_words(text) for text in inputs)

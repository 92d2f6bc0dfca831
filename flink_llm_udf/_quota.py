"""Quota-aware calling: request and token budgets per minute, 429 storms contained, AIMD.

Hosted APIs limit requests and tokens per minute per key. The ``QuotaGate`` of one engine (one
Flink subtask) admits a request only when

- the pause after a 429 (or a 503 with ``Retry-After``) is over: one such answer holds the whole
  subtask for the server's ``Retry-After``, instead of every row retrying on its own;
- its share of the requests-per-minute budget has room (a token bucket refilling at
  ``limit / 60`` per second, holding at most one second's worth, so it neither bursts past the
  quota nor idles);
- its share of the tokens-per-minute budget has room for the request's estimate (prompt tokens
  counted with tiktoken plus ``max_tokens``, or ``DEFAULT_COMPLETION_ESTIMATE``), which the
  reply's ``usage`` then corrects.

A budget is job-wide: each of ``subtasks`` engines takes ``1 / subtasks`` of it. Where the
server sends OpenAI's ``x-ratelimit-*`` headers, they calibrate the budget (the server's limit,
split the same way, when none is configured) and hold requests when the server says the key has
nothing left until its reset. Requests in flight follow AIMD: the limit halves on a 429 or a
timeout (once per round trip) and grows by one per window of successes, between 1 and
``max_concurrency``. Time a row spends held by the gate does not count against its deadline.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import TokenizerUnavailableError
from ._tokens import load_encoding

if TYPE_CHECKING:
    from ._wire import CallSpec

logger = logging.getLogger(__name__)

#: What a request's completion is assumed to cost when ``max_tokens`` is not set.
DEFAULT_COMPLETION_ESTIMATE = 256
#: Replies read for ``x-ratelimit-*`` headers before the gate stops looking (a 429 looks again).
HEADER_PROBE_REPLIES = 16
#: The budget's bucket holds at most this many seconds of refill (the largest burst).
BURST_S = 1.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(text: str | None) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value (``1s``, ``6m0s``, ``20ms``, ``0.5``), or None."""
    if text is None:
        return None
    raw = text.strip()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw.replace(" ", ""):
            return None
        unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
        seconds = sum(float(number) * unit[name] for number, name in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """OpenAI's ``x-ratelimit-*`` reply headers (DeepSeek and Azure send the same names)."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests_s: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens_s: float | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> RateLimitHeaders | None:
        """The headers' values, or None when the reply carries none of them."""

        def number(name: str) -> float | None:
            value = headers.get(name)
            try:
                return None if value is None else float(value)
            except ValueError:
                return None

        found = cls(
            number("x-ratelimit-limit-requests"),
            number("x-ratelimit-remaining-requests"),
            parse_reset(headers.get("x-ratelimit-reset-requests")),
            number("x-ratelimit-limit-tokens"),
            number("x-ratelimit-remaining-tokens"),
            parse_reset(headers.get("x-ratelimit-reset-tokens")),
        )
        return None if found == cls() else found


class Bucket:
    """A token bucket: ``rate`` units per second, at most ``capacity`` saved; may go negative.

    ``take(n)`` always succeeds and says how long to wait before the units are covered, so a
    request larger than the capacity still goes, once its debt is paid. ``give(n)`` refunds.
    """

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, rate: float, now: float, burst_s: float = BURST_S) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * burst_s)
        self.level = self.capacity
        self.updated = now

    def retune(self, rate: float, now: float, burst_s: float = BURST_S) -> None:
        """A new rate from now on (the saved units kept, up to the new capacity)."""
        self._refill(now)
        self.rate = rate
        self.capacity = max(1.0, rate * burst_s)
        self.level = min(self.level, self.capacity)

    def take(self, units: float, now: float) -> float:
        """Take ``units``; the seconds until the bucket is no longer in debt (0 if it is not)."""
        self._refill(now)
        self.level -= units
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def give(self, units: float, now: float) -> None:
        self._refill(now)
        self.level = min(self.capacity, self.level + units)

    def drain(self, now: float) -> None:
        """Nothing saved from now on (the server says the budget is spent)."""
        self._refill(now)
        self.level = min(self.level, 0.0)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now


class AIMD:
    """Additive increase, multiplicative decrease of the requests allowed in flight."""

    __slots__ = ("_last_decrease", "_successes", "ceiling", "limit")

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self._successes = 0
        self._last_decrease = -math.inf

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    def success(self) -> bool:
        """One success; True when the allowed number grew."""
        if self.limit >= self.ceiling:
            return False
        self._successes += 1
        if self._successes < self.allowed:  # one step per window of as many successes
            return False
        self._successes = 0
        before = self.allowed
        self.limit = min(float(self.ceiling), self.limit + 1.0)
        return self.allowed != before

    def overload(self, now: float, round_trip_s: float) -> bool:
        """A 429 or a timeout: halve, at most once per round trip; True when it shrank."""
        if now - self._last_decrease < round_trip_s:
            return False
        self._last_decrease = now
        before = self.allowed
        self.limit = max(1.0, self.limit / 2.0)
        self._successes = 0
        return self.allowed != before


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """What the gate has done, for metrics: all per subtask."""

    concurrency_limit: int
    throttled_s: float
    rate_limited: int
    requests_last_minute: int
    tokens_last_minute: int
    requests_per_minute_limit: float | None
    tokens_per_minute_limit: float | None


class QuotaGate:
    """Admits one engine's requests within its share of the quota (see the module docstring)."""

    def __init__(
        self,
        *,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        subtasks: int,
        max_concurrency: int,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
        on_concurrency: Callable[[int], None],
        adaptive: bool = True,
        read_headers: bool = True,
    ) -> None:
        self.subtasks = max(1, subtasks)
        self._clock = clock
        self._sleep = sleep
        self._on_concurrency = on_concurrency
        now = clock()
        self.configured_rpm = requests_per_minute
        self.configured_tpm = tokens_per_minute
        self.rpm = None if requests_per_minute is None else requests_per_minute / self.subtasks
        self.tpm = None if tokens_per_minute is None else tokens_per_minute / self.subtasks
        self._requests = None if self.rpm is None else Bucket(self.rpm / 60.0, now)
        self._tokens = None if self.tpm is None else Bucket(self.tpm / 60.0, now)
        self.aimd = AIMD(max_concurrency)
        self.adaptive = adaptive
        self.paused_until = 0.0
        self.throttled_s = 0.0
        self.rate_limited = 0
        self.read_headers = read_headers
        self._probe = HEADER_PROBE_REPLIES if read_headers else 0
        # [second, requests, tokens] of the last minute, and their sums: metrics read only the
        # sums, from another thread, so nothing is iterated while the engine's loop changes it
        self._seconds: deque[list[int]] = deque()
        self._minute_requests = 0
        self._minute_tokens = 0
        self._round_trip_s = 1.0

    @property
    def counts_tokens(self) -> bool:
        """Whether requests need a token estimate (a tokens-per-minute budget is in force)."""
        return self._tokens is not None

    def reserve(self, tokens: int) -> tuple[float, bool]:
        """Try to take a request's units now: (seconds to wait, whether the units were taken).

        ``tokens`` is the request's estimate (0 when no token budget is in force). Taken units
        are paid for by waiting the seconds returned; while the subtask is paused nothing is
        taken and the wait is the pause.
        """
        now = self._clock()
        if now < self.paused_until:
            return self.paused_until - now, False
        wait = 0.0 if self._requests is None else self._requests.take(1, now)
        if self._tokens is not None:
            wait = max(wait, self._tokens.take(tokens, now))
        return wait, True

    async def settle(self, wait: float, taken: bool, tokens: int) -> float:
        """Wait out a ``reserve`` that did not let the request go at once; the seconds waited."""
        waited = 0.0
        while wait > 0:
            await self._hold(wait)
            waited += wait
            if taken and self.paused_until <= self._clock():
                break  # the units were taken and their debt is paid
            if taken:
                self._refund(tokens)  # a 429 arrived meanwhile: wait for the pause, then again
            wait, taken = self.reserve(tokens)
        return waited

    def sent(self, tokens: int) -> None:
        """Count a request that went (for the per-minute figures)."""
        self._count(1, tokens)

    def _count(self, requests: int, tokens: int) -> None:
        """Add to the last minute's figures, dropping what is older (on the engine's loop only).

        One entry per second, not per request: fixed memory, nothing for the collector to walk.
        """
        second = int(self._clock())
        seconds = self._seconds
        if seconds and seconds[-1][0] == second:
            current = seconds[-1]
            current[1] += requests
            current[2] += tokens
        else:
            seconds.append([second, requests, tokens])
            while seconds[0][0] <= second - 60:
                _, old_requests, old_tokens = seconds.popleft()
                self._minute_requests -= old_requests
                self._minute_tokens -= old_tokens
        self._minute_requests += requests
        self._minute_tokens += tokens

    def reply(
        self,
        status: int,
        headers: Mapping[str, str],
        latency_s: float,
        used_tokens: int | None,
        estimate: int,
    ) -> None:
        """Learn from a reply: its usage, the server's rate-limit headers, a 429."""
        now = self._clock()
        self._round_trip_s = 0.8 * self._round_trip_s + 0.2 * max(latency_s, 0.001)
        if used_tokens is not None and used_tokens != estimate:
            self._reconcile(used_tokens - estimate, now)
        if (status == 429 and self.read_headers) or self._probe > 0:
            calibration = RateLimitHeaders.of(headers)
            if calibration is not None:
                self._probe = HEADER_PROBE_REPLIES
                self._calibrate(calibration, now)
            elif self._probe > 0:
                self._probe -= 1
        if status < 400 and self.adaptive and self.aimd.success():
            self._on_concurrency(self.aimd.allowed)

    def overloaded(self, status: int | None, retry_after_s: float | None, headers: Mapping[str, str]) -> None:
        """A 429, a 503 with ``Retry-After``, or a timeout (``status`` None): pause and shrink."""
        now = self._clock()
        if status == 429 or (status == 503 and retry_after_s is not None):
            if status == 429:
                self.rate_limited += 1
                if self.read_headers:
                    self._probe = HEADER_PROBE_REPLIES
            if retry_after_s is not None:
                pause = retry_after_s
            else:
                pause = self._until_one_fits(headers if self.read_headers else {})
            self.paused_until = max(self.paused_until, now + pause)
        if self.adaptive and self.aimd.overload(now, self._round_trip_s):
            self._on_concurrency(self.aimd.allowed)

    def usage(self) -> QuotaUsage:
        """The gate's figures now; safe to call from another thread (a metrics reporter)."""
        return QuotaUsage(
            self.aimd.allowed,
            self.throttled_s,
            self.rate_limited,
            self._minute_requests,
            max(0, self._minute_tokens),
            self.rpm,
            self.tpm,
        )

    async def _hold(self, seconds: float) -> None:
        self.throttled_s += seconds
        await self._sleep(seconds)

    def _refund(self, tokens: int) -> None:
        now = self._clock()
        if self._requests is not None:
            self._requests.give(1, now)
        if self._tokens is not None:
            self._tokens.give(tokens, now)

    def _reconcile(self, difference: int, now: float) -> None:
        """The reply used ``difference`` tokens more (or fewer) than estimated."""
        if self._tokens is not None:
            if difference > 0:
                self._tokens.take(difference, now)
            else:
                self._tokens.give(-difference, now)
        self._count(0, difference)

    def _calibrate(self, seen: RateLimitHeaders, now: float) -> None:
        if self.configured_rpm is None and seen.limit_requests:
            self.rpm = seen.limit_requests / self.subtasks
            self._requests = self._retuned(self._requests, self.rpm, now)
        if self.configured_tpm is None and seen.limit_tokens:
            self.tpm = seen.limit_tokens / self.subtasks
            self._tokens = self._retuned(self._tokens, self.tpm, now)
        # The key has nothing left for this subtask's share: hold until that much has refilled
        # (the reset headers say when the budget is *full* again, which can be a minute away).
        if seen.remaining_requests is not None and seen.remaining_requests < self.subtasks:
            if seen.limit_requests:
                missing = self.subtasks - max(0.0, seen.remaining_requests)
                hold = missing * 60.0 / seen.limit_requests
            else:
                hold = seen.reset_requests_s or 1.0
            self.paused_until = max(self.paused_until, now + hold)
            if self._requests is not None:
                self._requests.drain(now)
        # Less left for the key than a second of every subtask's share: spend none saved.
        tokens, remaining = self._tokens, seen.remaining_tokens
        if tokens is not None and remaining is not None and remaining < tokens.capacity * self.subtasks:
            tokens.drain(now)

    def _until_one_fits(self, headers: Mapping[str, str]) -> float:
        """A 429 without ``Retry-After``: the refill time of one request, else of a second."""
        seen = RateLimitHeaders.of(headers)
        if seen is not None and seen.limit_requests:
            return max(60.0 / seen.limit_requests, 0.05)
        return 1.0

    @staticmethod
    def _retuned(bucket: Bucket | None, per_minute: float, now: float) -> Bucket:
        if bucket is None:
            return Bucket(per_minute / 60.0, now)
        bucket.retune(per_minute / 60.0, now)
        return bucket


class TokenEstimator:
    """A request's tokens before it is sent, as the quota counts them.

    The prompt is counted with tiktoken (the model's encoding, ``cl100k_base`` when unknown):
    the row's text, the system and user prompts, and a few tokens of chat framing per message;
    the completion is ``max_tokens`` (times ``n``), or ``completion_estimate`` when unset.
    Without a tiktoken encoding it falls back to four characters per token.
    """

    def __init__(self, spec: CallSpec, completion_estimate: int) -> None:
        self._encode: Callable[[str], int] = _approximate
        try:
            encoding = load_encoding(spec.model)
        except TokenizerUnavailableError as exc:
            logger.warning("estimating tokens as characters / 4 for the token budget: %s", exc)
        else:
            self._encode = lambda text: len(encoding.encode(text, disallowed_special=()))
        chat = spec.task == "chat/completions"
        prompts = [text for text in (spec.system_prompt, spec.user_prompt) if text] if chat else []
        self._overhead = sum(self._encode(text) + 4 for text in prompts) + (7 if chat else 0)
        response_format = spec.base_body.get("response_format")
        if chat and isinstance(response_format, dict) and "json_schema" in response_format:
            # the schema is prompt too (servers turn it into grammar and instructions)
            self._overhead += self._encode(json.dumps(response_format["json_schema"]))
        max_tokens = spec.base_body.get("max_tokens")
        per_choice = max_tokens if isinstance(max_tokens, int) else completion_estimate
        choices = spec.base_body.get("n")
        self._completion = per_choice * (choices if isinstance(choices, int) else 1) if chat else 0

    def estimate(self, texts: str | list[str]) -> int:
        """Prompt plus completion tokens of one request carrying ``texts``."""
        rows = [texts] if isinstance(texts, str) else texts
        return sum(self._encode(text) for text in rows) + self._overhead + self._completion


def _approximate(text: str) -> int:
    return len(text) // 4 + 1

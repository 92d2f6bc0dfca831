"""Fault and latency decisions: small pure functions, the server only carries them out.

Random faults use one uniform draw per request from the simulator's seeded generator,
compared against the cumulative rates in :data:`~._behaviour.FAULT_FIELDS` order
(500, 503, 429, timeout, reset, malformed, invalid_json, schema_violation), so
``fault_500=1.0`` fails every request and a given seed and arrival order always fail the same
requests. ``invalid_json`` and ``schema_violation`` are content faults: a 200 whose structured
reply is spoiled (see :mod:`._replies`); they apply to ``json_schema``/``json_object`` requests
only, and any other request that draws one is answered normally (and nothing is counted). A
directive fault (see :mod:`._directives`) takes precedence over random faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._behaviour import FAULT_FIELDS, SimulatorConfig
from ._directives import Directive

__all__ = [
    "Fault",
    "directive_fault",
    "format_seconds",
    "latency_s",
    "random_fault",
    "random_fault_name",
    "retry_headers",
]

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do instead of (or before) a normal answer.

    ``kind`` is ``"status"`` (error body with ``status``), ``"reset"`` (drop the connection),
    ``"malformed"`` (200 with a broken body, ``variant`` ``json`` or ``shape``),
    ``"invalid_json"`` / ``"schema_violation"`` (200 with spoiled structured content, for
    structured requests only) or ``"ok"`` (answer normally). ``delay_s`` is waited first
    (timeouts, hangs). ``label`` is the key counted in ``/sim/stats`` ``faults``.
    """

    kind: str
    label: str
    status: int = 200
    variant: str = "json"
    delay_s: float = 0.0
    headers: Headers = ()


def format_seconds(seconds: float) -> str:
    """Header value for a delay in seconds: ``"2"`` when integral, else ``"0.25"``."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def retry_headers(
    retry_after_s: float | None, retry_after_ms: int | None = None, should_retry: bool | None = None
) -> Headers:
    """The ``Retry-After`` / ``retry-after-ms`` / ``x-should-retry`` headers that were asked for."""
    headers: list[tuple[str, str]] = []
    if retry_after_s is not None:
        headers.append(("Retry-After", format_seconds(retry_after_s)))
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", str(retry_after_ms)))
    if should_retry is not None:
        headers.append(("x-should-retry", "true" if should_retry else "false"))
    return tuple(headers)


def latency_s(config: SimulatorConfig, rng: random.Random) -> float:
    """Latency for one request: fixed +/- uniform jitter, times the multiplier in the tail."""
    ms = config.latency_ms
    if config.latency_jitter_ms:
        ms += rng.uniform(-config.latency_jitter_ms, config.latency_jitter_ms)
    if config.tail_fraction and rng.random() < config.tail_fraction:
        ms *= config.tail_multiplier
    return max(ms, 0.0) / 1000.0


def random_fault_name(config: SimulatorConfig, draw: float) -> str | None:
    """The fault field whose cumulative-rate slot contains ``draw`` in [0, 1), if any."""
    edge = 0.0
    for name in FAULT_FIELDS:
        rate = getattr(config, name)
        edge += rate
        if rate and draw < edge:
            return name
    return None


def random_fault(config: SimulatorConfig, rng: random.Random) -> Fault | None:
    """Draw once and turn the chosen random fault (if any) into a :class:`Fault`."""
    name = random_fault_name(config, rng.random())
    if name is None:
        return None
    if name == "fault_429":
        ms = round(config.retry_after_s * 1000) if config.retry_after_ms_header else None
        return Fault("status", name, status=429, headers=retry_headers(config.retry_after_s, ms))
    if name == "fault_timeout":
        return Fault("ok", name, delay_s=config.timeout_hang_s)
    if name == "fault_reset":
        return Fault("reset", name)
    if name == "fault_malformed":
        return Fault("malformed", name, variant="json" if rng.random() < 0.5 else "shape")
    if name == "fault_invalid_json":
        return Fault("invalid_json", name)
    if name == "fault_schema_violation":
        return Fault("schema_violation", name)
    return Fault("status", name, status=500 if name == "fault_500" else 503)


def directive_fault(directive: Directive, attempt: int, config: SimulatorConfig) -> Fault | None:
    """The fault a directive asks for on this (1-based) attempt, or ``None`` to answer normally."""
    if not directive.has_fault or (directive.fail is not None and attempt > directive.fail):
        return None
    headers = retry_headers(directive.retry_after, directive.retry_after_ms, directive.should_retry)
    delay = 0.0
    if directive.hang:
        delay = config.timeout_hang_s if directive.hang_s is None else directive.hang_s
    if directive.reset:
        return Fault("reset", "directive_reset", delay_s=delay)
    if directive.malformed is not None:
        return Fault("malformed", "directive_malformed", variant=directive.malformed, delay_s=delay)
    if directive.invalid_json:
        return Fault("invalid_json", "directive_invalid_json", delay_s=delay)
    if directive.schema_violation:
        return Fault("schema_violation", "directive_schema_violation", delay_s=delay)
    if directive.status is None and directive.hang:
        return Fault("ok", "directive_hang", delay_s=delay)
    status = 500 if directive.status is None else directive.status
    return Fault("status", f"directive_status_{status}", status=status, delay_s=delay, headers=headers)

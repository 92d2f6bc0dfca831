"""Pure arithmetic over a case's samples: steady-state rate, CPU per row, percentiles, ratios.

A sample is ``(t, requests, cpu_python_s, cpu_jvm_s)``: wall time, the simulator's request
counter and the CPU seconds the processes had used. The steady-state window is where the
request counter climbs from ``lo`` to ``hi`` of its final value: it leaves out job start-up
and the drain at the end, and every quantity is interpolated at the window's two edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Sample = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Window:
    """The steady-state window: its edges, and the requests and CPU seconds spent inside."""

    t0: float
    t1: float
    requests: float
    cpu_python_s: float
    cpu_jvm_s: float

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan


def _at_level(samples: Sequence[Sample], level: float) -> tuple[float, float, float]:
    """(t, cpu_python, cpu_jvm) interpolated where the request counter first reaches ``level``."""
    previous = samples[0]
    for sample in samples:
        if sample[1] >= level:
            t0, n0, p0, j0 = previous
            t1, n1, p1, j1 = sample
            f = 0.0 if n1 == n0 else (level - n0) / (n1 - n0)
            return t0 + f * (t1 - t0), p0 + f * (p1 - p0), j0 + f * (j1 - j0)
        previous = sample
    raise ValueError(f"the request counter never reached {level}")


def steady_window(samples: Sequence[Sample], total: float, lo: float = 0.1, hi: float = 0.9) -> Window:
    """The window where the request counter goes from ``lo * total`` to ``hi * total``."""
    if not samples or total <= 0:
        raise ValueError("no samples, or no requests")
    ordered = sorted(samples)
    a, b = lo * total, hi * total
    t0, p0, j0 = _at_level(ordered, a)
    t1, p1, j1 = _at_level(ordered, b)
    return Window(t0, t1, b - a, p1 - p0, j1 - j0)


def first_request_time(samples: Sequence[Sample]) -> float | None:
    """Time of the first sample that saw a request (the poll interval bounds its error)."""
    for t, n, _, _ in sorted(samples):
        if n > 0:
            return t
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 1]; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def limit_rows_per_s(concurrency: int, latency_ms: float, rows_per_request: int = 1) -> float:
    """Little's law: C requests in flight, each taking L, each carrying k rows."""
    return concurrency * rows_per_request * 1000.0 / latency_ms


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or not reference or math.isnan(value) or math.isnan(reference):
        return None
    return value / reference

"""``flink-llm bench``: the steady-state arithmetic (pure), and a real ``--quick`` run (Flink).

The Flink test checks that the output is complete and self-consistent, never how fast this
machine is: every entry point measured, positive rates, ratios that follow from the reported
rates, a latency record, the engine's CPU per row, and a PNG that decodes.
"""

from __future__ import annotations

import math

import pytest

from flink_llm_udf.tools.bench.plan import (
    ENGINE_CPU,
    ENTRY_POINTS,
    LATENCY,
    NAIVE,
    REPLAY,
    SIMULATOR,
    THROUGHPUT,
    build_plan,
    rows_for,
)
from flink_llm_udf.tools.bench.stats import (
    first_request_time,
    limit_rows_per_s,
    percentile,
    ratio,
    steady_window,
)


# --- pure ------------------------------------------------------------------------------------
def _linear(rate: float, start: float, total: int, step: float = 0.2, cpu_per_request: float = 0.001):
    """Samples of a counter that is 0 until ``start`` and then climbs at ``rate`` to ``total``."""
    samples, t = [], 0.0
    while True:
        n = min(total, max(0.0, (t - start) * rate))
        samples.append((t, n, n * cpu_per_request, n * cpu_per_request / 4))
        if n >= total:
            return samples
        t += step


@pytest.mark.parametrize("rate,start,total", [(640.0, 7.0, 6400), (10.0, 3.0, 40), (2560.0, 0.5, 25600)])
def test_steady_window_recovers_a_constant_rate(rate, start, total):
    window = steady_window(_linear(rate, start, total), total)
    assert window.requests_per_s == pytest.approx(rate, rel=1e-6)
    assert window.requests == pytest.approx(0.8 * total)
    assert window.cpu_python_s == pytest.approx(0.8 * total * 0.001)
    assert window.cpu_jvm_s == pytest.approx(0.8 * total * 0.001 / 4)
    assert first_request_time(_linear(rate, start, total)) == pytest.approx(start, abs=0.2 + 1e-9)


def test_steady_window_leaves_out_a_slow_start_and_a_slow_drain():
    # 100 requests trickle in over 10 s, 800 at 400/s, the last 100 over 10 s again.
    samples = [(0.0, 0, 0, 0), (10.0, 100, 0, 0), (12.0, 900, 0, 0), (22.0, 1000, 0, 0)]
    assert steady_window(samples, 1000).requests_per_s == pytest.approx(400.0)


def test_steady_window_needs_requests():
    with pytest.raises(ValueError):
        steady_window([], 10)
    with pytest.raises(ValueError):
        steady_window([(0.0, 5, 0, 0)], 10)


@pytest.mark.parametrize(
    "values,q,expected",
    [
        ([], 0.5, math.nan),
        ([3.0], 0.5, 3.0),
        ([4, 1, 3, 2], 0.5, 2),
        ([4, 1, 3, 2], 0.9, 4),
        (list(range(1, 101)), 0.5, 50),
    ],
)
def test_percentile(values, q, expected):
    got = percentile(values, q)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


@pytest.mark.parametrize(
    "c,latency_ms,k,expected",
    [(64, 100, 1, 640), (256, 100, 1, 2560), (16, 50, 1, 320), (64, 100, 16, 10240)],
)
def test_limit_is_littles_law(c, latency_ms, k, expected):
    assert limit_rows_per_s(c, latency_ms, k) == expected


def test_ratio_handles_missing_references():
    assert ratio(5.0, 10.0) == 0.5
    assert ratio(5.0, None) is None and ratio(None, 1.0) is None and ratio(5.0, 0.0) is None


@pytest.mark.parametrize("quick", [True, False])
def test_every_plan_measures_every_entry_point_once_at_least(quick):
    cases = build_plan(quick=quick)
    measured = {c.entry for c in cases if c.kind == THROUGHPUT}
    assert measured == set(ENTRY_POINTS)
    assert len({c.name for c in cases}) == len(cases)
    assert [c.entry for c in cases].count(NAIVE) == 1
    assert any(c.kind == LATENCY for c in cases)
    # The engine's CPU both ways: engine-bound (replayed reply) and simulator-bound.
    assert {c.endpoint for c in cases if c.kind == ENGINE_CPU} == {REPLAY, SIMULATOR}
    assert all(c.endpoint == SIMULATOR for c in cases if c.kind != ENGINE_CPU)
    embeddings = {c.rows_per_request for c in cases if c.task == "embeddings"}
    assert embeddings == {1, 16}


def test_rows_for_targets_seconds_at_the_limit():
    assert rows_for(256, 100, target_s=10, minimum=2000) == 25600
    assert rows_for(16, 100, target_s=10, minimum=2000) == 2000
    assert rows_for(64, 100, target_s=10, minimum=0, rows_per_request=16, maximum=60_000) == 60000

"""``flink-llm bench``: the steady-state arithmetic, the plan, the targets and the missing extra.

The real ``--quick`` run is ``tests/flink/test_bench_quick_run.py``; it checks that the output
is complete and self-consistent, never how fast this machine is.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest

from flink_llm_udf.flink._tuning import recommended_settings
from flink_llm_udf.tools.bench.child import flink_conf, plumbing_conf
from flink_llm_udf.tools.bench.plan import (
    CHAT,
    ENGINE_CPU,
    ENTRY_POINTS,
    LATENCY,
    NAIVE,
    README,
    README_ENTRY_POINTS,
    REPLAY,
    SIMULATOR,
    THROUGHPUT,
    TUNED,
    Case,
    build_plan,
    readme_twin,
    rows_for,
)
from flink_llm_udf.tools.bench.report import setup_table, targets, twins
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


# --- the README twins ------------------------------------------------------------------------
def _is_plain_throughput(case: Case) -> bool:
    return case.kind == THROUGHPUT and case.task == CHAT and not case.tail_fraction


@pytest.mark.parametrize("levels", [None, (64, 256)])
def test_a_full_plan_runs_each_flink_throughput_and_latency_case_as_the_readme_writes_it(levels):
    cases = build_plan(quick=False, concurrencies=levels)
    for index, case in enumerate(cases):
        if (
            case.setup == TUNED
            and case.entry in README_ENTRY_POINTS
            and (_is_plain_throughput(case) or case.kind == LATENCY)
        ):
            twin = cases[index + 1]  # right after its tuned case: the two see the same conditions
            assert twin == dataclasses.replace(case, name=twin.name, setup=README), case.name
            assert twin.name == case.name.replace("-", "-readme-", 1)
    readme = [c for c in cases if c.setup == README]
    # four entries at each level, and the four latency cases; no tail, embeddings or engine twin
    assert len(readme) == 4 * len(levels or (16, 64, 256)) + 4
    assert {c.entry for c in readme} == set(README_ENTRY_POINTS)
    assert all(_is_plain_throughput(c) or c.kind == LATENCY for c in readme)
    assert len({c.name for c in cases}) == len(cases)
    assert "sql_async-readme-latency" in {c.name for c in readme}
    assert "pandas_udf-readme-c64" in {c.name for c in readme}


def test_entries_keep_their_readme_and_latency_cases():
    cases = build_plan(quick=False, concurrencies=(64, 256), entries=("sql_async",))
    assert [c.name for c in cases if c.kind != THROUGHPUT or not c.tail_fraction] == [
        "sql_async-c64",
        "sql_async-readme-c64",
        "sql_async-c256",
        "sql_async-readme-c256",
        "sql_async-latency",
        "sql_async-readme-latency",
    ]


def test_quick_plans_are_unchanged():
    cases = build_plan(quick=True)
    assert all(c.setup == TUNED for c in cases)
    assert [c.name for c in cases] == [
        "naive_udf",
        "pandas_udf-c64",
        "datastream_unordered-c64",
        "datastream_ordered-c64",
        "sql_async-c64",
        "engine-c64",
        "engine-embed-k1-c64",
        "engine-embed-k16-c64",
        "pandas_udf-embed-k16-c64",
        "pandas_udf-latency",
        "engine-cpu",
        "engine-cpu-simulator",
    ]
    assert next(c for c in cases if c.kind == LATENCY).rows == 25


def test_readme_cases_get_only_the_plumbing_configuration():
    case = Case("sql_async-c64", THROUGHPUT, "sql_async", concurrency=64)
    spec = {"flink_conf": {"python.fn-execution.bundle.size": "3*C"}}
    tuned = flink_conf(case, spec)
    assert tuned == {**plumbing_conf(), **recommended_settings(64), "python.fn-execution.bundle.size": "192"}
    assert flink_conf(readme_twin(case), spec) == plumbing_conf()
    assert not set(plumbing_conf()) & set(recommended_settings(64))


# --- targets and the side-by-side table ------------------------------------------------------
def _throughput(case: Case, rows_per_s: float) -> dict:
    limit = case.concurrency * 10.0
    return {
        **case.to_dict(),
        "latency_ms": 100.0,
        "ok": True,
        "error": None,
        "rows_per_s": rows_per_s,
        "limit_rows_per_s": limit,
        "ratio_to_limit": round(rows_per_s / limit, 4),
        "ratio_to_baseline": rows_per_s / 9.8,
    }


def _latency(case: Case, p50: float, p99: float) -> dict:
    return {
        **case.to_dict(),
        "latency_ms": 100.0,
        "ok": True,
        "error": None,
        "p50_ms": p50,
        "p90_ms": (p50 + p99) / 2,
        "p99_ms": p99,
        "max_ms": p99 + 1,
    }


def test_targets_hold_for_both_setups_and_compare_readme_with_tuned():
    c64 = Case("datastream_ordered-c64", THROUGHPUT, "datastream_ordered", concurrency=64)
    c256 = dataclasses.replace(c64, name="datastream_ordered-c256", concurrency=256)
    slow = Case("datastream_ordered-latency", LATENCY, "datastream_ordered", rows=200, rows_per_second=5.0)
    records = [
        _throughput(c64, 625.0),
        _throughput(readme_twin(c64), 560.0),  # 0.875 of the limit, 0.9 of tuned
        _throughput(c256, 2400.0),
        _throughput(readme_twin(c256), 2380.0),
        _latency(slow, 250.0, 450.0),
        _latency(readme_twin(slow), 1200.0, 2100.0),  # Flink's 1 s bundle timer
    ]
    met = {t["target"]: t["met"] for t in targets(records)}
    assert met["datastream_ordered tuned C=64 ratio_to_limit >= 0.95"] is True
    assert met["datastream_ordered readme C=64 ratio_to_limit >= 0.95"] is False
    assert met["datastream_ordered readme C=256 ratio_to_limit >= 0.9"] is True
    assert met["datastream_ordered readme C=64 ratio_to_baseline >= 30"] is True
    within = {k.split()[0]: v for k, v in met.items() if "within noise" in k}
    assert within == {"datastream_ordered-readme-c64": False, "datastream_ordered-readme-c256": True}
    assert "datastream_ordered-readme-c64 rows/s >= 0.95 x datastream_ordered-c64" in str(met)
    latency = {k: v for k, v in met.items() if "rows/s" in k and "<=" in k and "L +" in k}
    assert latency == {
        "datastream_ordered tuned p50 <= L + 200 ms = 300 ms at 5 rows/s": True,
        "datastream_ordered tuned p99 <= L + 500 ms = 600 ms at 5 rows/s": True,
        "datastream_ordered readme p50 <= L + 200 ms = 300 ms at 5 rows/s": False,
        "datastream_ordered readme p99 <= L + 500 ms = 600 ms at 5 rows/s": False,
    }
    assert [(r["name"], t["name"]) for r, t in twins(records)] == [
        ("datastream_ordered-readme-c64", "datastream_ordered-c64"),
        ("datastream_ordered-readme-c256", "datastream_ordered-c256"),
        ("datastream_ordered-readme-latency", "datastream_ordered-latency"),
    ]
    side = setup_table(records).splitlines()
    assert "625.0 (0.98)" in side[2] and "560.0 (0.88)" in side[2] and side[2].split()[-3] == "0.90"
    assert "250 / 350 / 450" in side[4] and "1200 / 1650 / 2100" in side[4]
    assert setup_table(records[:1]) == ""


def test_the_pandas_path_has_no_latency_target():
    slow = Case("pandas_udf-latency", LATENCY, "pandas_udf", rows=200, rows_per_second=5.0)
    assert targets([_latency(slow, 1000.0, 2000.0)]) == []


# --- the bench extra -------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["psutil", "matplotlib"])
def test_the_bench_says_which_extra_to_install(module, monkeypatch, capsys, tmp_path):
    from flink_llm_udf.tools.bench import main

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert main(["--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and module in err[0] and "pip install 'flink-llm-udf[bench]'" in err[0]
    assert not (tmp_path / "out").exists()


def test_the_cli_runs_the_check_too(monkeypatch, capsys):
    from flink_llm_udf.tools.cli import main

    monkeypatch.setitem(sys.modules, "psutil", None)
    assert main(["bench", "--quick"]) == 2
    assert "flink-llm-udf[bench]" in capsys.readouterr().err

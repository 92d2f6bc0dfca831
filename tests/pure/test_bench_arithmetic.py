"""``flink-llm bench``: the steady-state arithmetic, the plan, the targets and the missing extra.

The real ``--quick`` run is ``tests/flink/test_bench_quick_run.py``; it checks that the output
is complete and self-consistent, never how fast this machine is.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types

import pytest

from flink_llm_udf.flink._tuning import recommended_settings
from flink_llm_udf.tools.bench.child import engine_settings, flink_conf, plumbing_conf, provider_for
from flink_llm_udf.tools.bench.plan import (
    CHAT,
    ENGINE,
    ENGINE_CPU,
    ENTRY_POINTS,
    LATENCY,
    NAIVE,
    PANDAS,
    QUOTA,
    QUOTA_ENTRY_POINTS,
    QUOTA_OFF,
    QUOTA_ON,
    README,
    README_ENTRY_POINTS,
    REPLAY,
    SIMULATOR,
    SQL_ASYNC,
    THROUGHPUT,
    TUNED,
    Case,
    build_plan,
    quota_cases,
    quota_rows_per_s,
    readme_twin,
    rows_for,
    simulator_settings,
    with_rows_scaled,
)
from flink_llm_udf.tools.bench.report import (
    case_record,
    progress_line,
    quota_pairs,
    quota_table,
    quota_targets,
    setup_table,
    table,
    targets,
    twins,
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
    # (its embed-pack cases: tests/pure/test_bench_pay_once.py)
    assert [
        c.name for c in cases if (c.kind != THROUGHPUT or not c.tail_fraction) and "embed-pack" not in c.name
    ] == [
        "sql_async-c64",
        "sql_async-readme-c64",
        "sql_async-c256",
        "sql_async-readme-c256",
        "sql_async-latency",
        "sql_async-readme-latency",
        "sql_async-quota",
        "sql_async-quota-off",
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


# --- the quota cases (issue 12) --------------------------------------------------------------
def test_a_full_plan_runs_each_entry_point_against_the_quota_with_and_without_the_limits():
    cases = build_plan(quick=False)
    quota = [c for c in cases if c.kind == QUOTA]
    assert [c.name for c in quota] == [
        f"{entry}-{setup}" for entry in QUOTA_ENTRY_POINTS for setup in (QUOTA_ON, QUOTA_OFF)
    ]
    assert set(QUOTA_ENTRY_POINTS) == {PANDAS, SQL_ASYNC, "datastream_unordered", ENGINE}
    for on, off in zip(quota[::2], quota[1::2], strict=True):
        assert cases.index(off) == cases.index(on) + 1  # side by side: the same conditions
        assert off == dataclasses.replace(on, name=off.name, setup=QUOTA_OFF)
        assert (on.setup, on.parallelism, on.concurrency) == (QUOTA_ON, 2, 64)
        assert (on.quota_rpm, on.quota_tpm, on.quota_window_s, on.latency_ms) == (600, 60_000, 6.0, 100.0)
        # long enough to exhaust the simulator's 60 saved requests and then run ~40 s at the quota
        assert 40 <= on.rows / quota_rows_per_s(on) <= 60
    # `--only quota` selects exactly these; nothing else in a full run carries a quota
    assert [c for c in cases if "quota" in c.name] == quota
    assert all(c.quota_rpm is None and c.parallelism == 1 for c in cases if c.kind != QUOTA)
    # the row scale leaves them alone (their length is set by the quota, not by C / L)
    assert [c for c in with_rows_scaled(cases, 0.1) if c.kind == QUOTA] == quota


def test_a_quick_plan_has_no_quota_case():
    assert not [c for c in build_plan(quick=True) if c.kind == QUOTA or c.quota_rpm is not None]


def test_the_simulator_holds_the_quota_scaled_to_its_window_and_other_cases_none():
    on, off = quota_cases(SQL_ASYNC)
    for case in (on, off):  # both setups meet the same server
        assert simulator_settings(case, 100.0) == {
            "latency_ms": 100.0,
            "tail_fraction": 0.0,
            "tail_multiplier": 10.0,
            "quota_rpm": 60,  # 600 per minute is 60 per 6 s: the same 10 requests/s
            "quota_tpm": 6_000,
            "quota_window_s": 6.0,
            "quota_default_max_tokens": 16,
        }
    plain = Case("sql_async-c64", THROUGHPUT, SQL_ASYNC, tail_fraction=0.01)
    assert simulator_settings(plain, 50.0) == {
        "latency_ms": 50.0,
        "tail_fraction": 0.01,
        "tail_multiplier": 10.0,
        "quota_rpm": None,
        "quota_tpm": None,
        "quota_window_s": 60.0,
    }


def test_the_job_is_given_the_quota_and_the_control_is_not():
    on, off = quota_cases(PANDAS)
    given = engine_settings(on)
    assert (given.requests_per_minute, given.tokens_per_minute, given.max_concurrency) == (600, 60_000, 64)
    assert given.rate_limit_headers and given.adaptive_concurrency
    control = engine_settings(off)
    assert control.requests_per_minute is None and control.tokens_per_minute is None
    assert not control.rate_limit_headers and control.adaptive_concurrency  # the 429 pause stays
    provider = provider_for(on, "http://127.0.0.1:1/v1")
    assert provider.max_tokens == 16 and provider.error_handling_strategy == "RETRY"
    assert provider.retry_backoff_base_interval == "50ms" and provider.retry_fallback_strategy == "IGNORE"
    assert provider_for(Case("engine-c64", THROUGHPUT, ENGINE), "http://127.0.0.1:1/v1").max_tokens is None
    assert flink_conf(on, {}) == {**plumbing_conf(2), **recommended_settings(64)}
    assert plumbing_conf(2)["parallelism.default"] == "2"


def test_quota_rate_is_the_tighter_of_requests_and_tokens():
    on, _ = quota_cases(ENGINE)
    assert quota_rows_per_s(on) == 10.0
    assert quota_rows_per_s(on, tokens_per_request=50.0) == 10.0  # 1,000 tokens/s: 20 requests/s
    assert quota_rows_per_s(on, tokens_per_request=200.0) == 5.0  # the TPM binds
    assert quota_rows_per_s(Case("x", THROUGHPUT, ENGINE)) is None


def _run(samples: list, done: dict | None, *, timed_out: bool = False, events: dict | None = None):
    """What measure.ChildRun holds, without importing psutil."""
    return types.SimpleNamespace(
        started=0.0,
        ended=70.0,
        returncode=0,
        timed_out=timed_out,
        events=events if events is not None else {"submit": {"t": 8.0}, "done": done},
        samples=samples,
        peak_rss_python=100 * 1024 * 1024,
        peak_rss_jvm=0,
    )


def _sim_stats(answered: int, refused: int, *, other: int = 0, tokens_per_request: int = 40) -> dict:
    by_status = {"200": answered, "429": refused}
    if other:
        by_status["503"] = other
    return {
        "requests_total": answered + refused + other,
        "by_status": by_status,
        "rate_limited_requests": refused - 1 if refused else 0,
        "rate_limited_tokens": 1 if refused else 0,
        "max_in_flight": 128,
        "quota_keys": {"anonymous": {"requests": answered, "tokens": answered * tokens_per_request}},
        "config": {
            "quota_rpm": 60,
            "quota_tpm": 6_000,
            "quota_window_s": 6.0,
            "quota_default_max_tokens": 16,
        },
    }


def test_a_quota_record_counts_429s_retries_and_rows_per_s_against_the_quota():
    on, off = quota_cases(SQL_ASYNC)
    # 500 rows answered 200 at 9.5 rows/s from t = 10 s; 30 requests refused with 429
    samples = _linear(9.5, 10.0, 500)
    record = case_record(
        on, _run(samples, {"rows_ok": 500, "rows_seen": 500}), _sim_stats(500, 30), 100.0, (1, 1)
    )
    assert record["ok"] and record["error"] is None, record["error"]
    assert record["requests"] == 530 and record["non_200"] == 30
    assert record["rate_limited"] == 30 and record["rate_limited_share"] == pytest.approx(30 / 530, abs=1e-4)
    assert record["retries"] == 30 and record["requests_per_row"] == 1.06
    assert (record["rows_answered"], record["rows_failed"]) == (500, 0)
    assert record["rows_per_s"] == pytest.approx(9.5, rel=1e-3)
    assert record["quota_rows_per_s"] == 10.0 and record["ratio_to_quota"] == pytest.approx(0.95, abs=1e-3)
    assert record["tokens_per_request"] == 40.0 and record["max_in_flight"] == 128
    assert record["simulator_quota"]["quota_rpm"] == 60
    assert "of the quota's 10" in progress_line(1, 8, record)
    # failed rows are measured, not an error; another status than 200 or 429 is
    failed = case_record(
        off, _run(samples, {"rows_ok": 497, "rows_seen": 500}), _sim_stats(500, 900), 100.0, (1, 1)
    )
    assert (
        failed["ok"]
        and failed["rows_failed"] == 3
        and failed["rate_limited_share"] == pytest.approx(0.6429, abs=1e-4)
    )
    broken = case_record(on, _run(samples, {"rows_ok": 500}), _sim_stats(500, 2, other=4), 100.0, (1, 1))
    assert not broken["ok"] and broken["error"] == "4 request(s) did not answer 200 or 429"
    lost = case_record(
        on, _run(samples, {"rows_ok": 490, "rows_seen": 490}), _sim_stats(500, 0), 100.0, (1, 1)
    )
    assert not lost["ok"] and lost["error"] == "490 of 500 rows came back"
    # a plain case keeps treating any 429 as an error
    plain = Case("sql_async-c64", THROUGHPUT, SQL_ASYNC, rows=500)
    assert case_record(plain, _run(samples, {}), _sim_stats(500, 3), 100.0, (1, 1))["error"] == (
        "3 request(s) did not answer 200"
    )


def _quota_record(case: Case, rows_per_s: float, failed: int, refused: int, *, ok: bool = True) -> dict:
    requests = case.rows + refused + failed * 100
    return {
        **case.to_dict(),
        "ok": ok,
        "error": None if ok else "timed out",
        "wall_s": 70.0,
        "loadavg_1m": [1.0, 1.0],
        "requests": requests,
        "rows_per_s": rows_per_s,
        "quota_rows_per_s": 10.0,
        "ratio_to_quota": round(rows_per_s / 10.0, 4),
        "rows_answered": case.rows - failed,
        "rows_failed": failed,
        "rate_limited": refused,
        "rate_limited_share": round(refused / requests, 4),
        "retries": requests - case.rows,
        "requests_per_row": round(requests / case.rows, 3),
        "simulator_quota": {"quota_rpm": 60, "quota_tpm": 6_000, "quota_window_s": 6.0},
    }


def test_quota_targets_hold_the_limited_setup_only():
    pandas_on, pandas_off = quota_cases(PANDAS)
    sql_on, sql_off = quota_cases(SQL_ASYNC)
    engine_on, _ = quota_cases(ENGINE)
    records = [
        _quota_record(pandas_on, 9.9, 0, 10),  # 10 of 510: 1.96 %
        _quota_record(pandas_off, 9.0, 2, 900),  # the control misses everything: no target
        _quota_record(sql_on, 8.9, 1, 11),  # 11 of 611: 1.8 %, but 0.89 and a failed row
        _quota_record(sql_off, 9.5, 0, 800),
        _quota_record(engine_on, 0.0, 0, 0, ok=False),
    ]
    met = {t["target"]: (t["value"], t["met"]) for t in quota_targets(records)}
    assert met == {
        "pandas_udf quota: 0 failed rows": (0, True),
        "pandas_udf quota: 429 share <= 2% of requests": (0.0196, True),
        "pandas_udf quota: rows/s >= 0.9 x the quota's rate (10 rows/s)": (0.99, True),
        "sql_async quota: 0 failed rows": (1, False),
        "sql_async quota: 429 share <= 2% of requests": (0.018, True),
        "sql_async quota: rows/s >= 0.9 x the quota's rate (10 rows/s)": (0.89, False),
        "engine quota: 0 failed rows": (None, False),  # a failed case misses them all
        "engine quota: 429 share <= 2% of requests": (None, False),
        "engine quota: rows/s >= 0.9 x the quota's rate (10 rows/s)": (None, False),
    }
    assert [t for t in targets(records) if "quota" in t["target"]] == quota_targets(records)


def test_quota_pairs_and_table_set_the_two_setups_side_by_side():
    pandas_on, pandas_off = quota_cases(PANDAS)
    sql_on, _ = quota_cases(SQL_ASYNC)
    records = [
        _quota_record(pandas_on, 9.9, 0, 0),  # 500 requests for 500 rows
        _quota_record(pandas_off, 9.4, 0, 1000),  # 1,500 requests: 3 per row
        _quota_record(sql_on, 9.8, 0, 0),  # its control was not run (--only sql_async-quota)
    ]
    pairs = quota_pairs(records)
    assert [p["entry"] for p in pairs] == [PANDAS, SQL_ASYNC]
    assert pairs[0][QUOTA_ON]["name"] == "pandas_udf-quota" and pairs[0][QUOTA_OFF]["retries"] == 1000
    assert pairs[0]["off_over_on"]["requests_per_row"] == 3.0
    assert pairs[0]["off_over_on"]["rate_limited_share"] is None  # 0 429s with the limits: no ratio
    assert pairs[1][QUOTA_OFF] is None and pairs[1]["off_over_on"]["requests_per_row"] is None
    lines = quota_table(records).splitlines()
    assert lines[0].startswith("Quota: 600 RPM, 60,000 TPM job-wide")
    assert "6 s 'minute': 60 requests, 6,000 tokens" in lines[0] and "parallelism 2, C = 64" in lines[0]
    pandas = next(line for line in lines if line.startswith("pandas_udf"))
    left, right, gain = pandas.split("|")
    assert left.split()[1:] == ["9.9", "0.99", "0", "500", "0", "0.0", "0"]
    assert right.split() == ["9.4", "0.94", "0", "1500", "1000", "66.7", "1000"]
    assert gain.strip() == "3.00"
    assert "(not run)" in next(line for line in lines if line.startswith("sql_async"))
    assert table(records) == ""  # quota cases have their own section, not the main table
    assert quota_table([_throughput(Case("x-c64", THROUGHPUT, PANDAS), 600.0)]) == ""


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

"""The bench's pay-once cases: packed embeddings against one row per request, and the result cache.

Plans, settings and the arithmetic of their records; no process is started.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flink_llm_udf._engine_settings import EngineSettings
from flink_llm_udf.tools.bench.child import engine_settings
from flink_llm_udf.tools.bench.pay_once import (
    cache_cpu_summary,
    cache_cpu_table,
    cache_fields,
    cache_problem,
    embed_pack_summary,
    embed_pack_table,
    packed_over_single,
)
from flink_llm_udf.tools.bench.plan import (
    CACHE_CPU_REPEATS,
    DS_UNORDERED,
    EMBED_PACK_K,
    EMBED_PACK_REPEATS,
    EMBED_PACK_ROWS,
    EMBEDDINGS,
    ENGINE_CPU,
    HIT,
    MEMORY,
    MISS,
    REDIS,
    REPLAY,
    SQL_ASYNC,
    THROUGHPUT,
    build_plan,
    cache_cpu_cases,
    embed_pack_cases,
)
from flink_llm_udf.tools.bench.report import targets

DEFAULT_PACK_WAIT_S = EngineSettings().embedding_pack_wait_s  # None: the case keeps the engine's


# --- the plan --------------------------------------------------------------------------------
def test_embed_pack_pairs_alternate_over_the_rounds_with_the_same_rows():
    cases = embed_pack_cases(64)
    assert [c.name for c in cases[:4]] == [
        "sql_async-embed-pack-k1-c64-r1",
        "sql_async-embed-pack-k16-c64-r1",
        "datastream_unordered-embed-pack-k1-c64-r1",
        "datastream_unordered-embed-pack-k16-c64-r1",
    ]
    assert len(cases) == 4 * EMBED_PACK_REPEATS
    assert [c.repeat for c in cases] == [r for r in range(1, EMBED_PACK_REPEATS + 1) for _ in range(4)]
    assert {c.entry for c in cases} == {SQL_ASYNC, DS_UNORDERED}
    assert {c.rows_per_request for c in cases} == {1, EMBED_PACK_K}
    assert {(c.kind, c.task, c.rows, c.pack_wait_ms) for c in cases} == {
        (THROUGHPUT, EMBEDDINGS, EMBED_PACK_ROWS, 5.0)
    }


def test_cache_cpu_runs_every_variant_once_per_round_against_the_replay_endpoint():
    cases = cache_cpu_cases()
    assert [c.name for c in cases[:5]] == [
        "cache-cpu-none-r1",
        "cache-cpu-memory-miss-r1",
        "cache-cpu-memory-hit-r1",
        "cache-cpu-redis-miss-r1",
        "cache-cpu-redis-hit-r1",
    ]
    assert len(cases) == 5 * CACHE_CPU_REPEATS
    assert all(c.kind == ENGINE_CPU and c.endpoint == REPLAY and c.latency_ms == 0.0 for c in cases)
    assert {(c.cache, c.cache_pass) for c in cases} == {
        (None, MISS),
        (MEMORY, MISS),
        (MEMORY, HIT),
        (REDIS, MISS),
        (REDIS, HIT),
    }


def test_a_full_plan_has_the_pay_once_cases_and_a_quick_one_none():
    full = build_plan(quick=False)
    names = [c.name for c in full]
    assert [n for n in names if "embed-pack" in n] == [c.name for c in embed_pack_cases(64)]
    assert [n for n in names if "cache-cpu" in n] == [c.name for c in cache_cpu_cases()]
    assert len(set(names)) == len(names)
    # --only engine-cpu still runs the two engine-cpu cases alone
    assert [n for n in names if "engine-cpu" in n] == ["engine-cpu", "engine-cpu-simulator"]
    quick = build_plan(quick=True)
    assert not [c for c in quick if c.cache_pass is not None or c.pack_wait_ms is not None]


@pytest.mark.parametrize(("wait_ms", "expected_s"), [(5.0, 0.005), (0.0, 0.0), (None, DEFAULT_PACK_WAIT_S)])
def test_the_pack_wait_reaches_the_engine_settings(wait_ms, expected_s):
    case = embed_pack_cases(64)[1]
    settings = engine_settings(dataclasses.replace(case, pack_wait_ms=wait_ms))
    assert settings.embedding_rows_per_request == EMBED_PACK_K
    assert settings.embedding_pack_wait_s == expected_s


# --- the cache's records ---------------------------------------------------------------------
HIT_CASE = next(c for c in cache_cpu_cases() if c.cache == MEMORY and c.cache_pass == HIT)
MISS_CASE = next(c for c in cache_cpu_cases() if c.cache == MEMORY and c.cache_pass == MISS)
N = HIT_CASE.rows


def _done(requests: list[int], cached: list[int], unmeasured: int) -> dict[str, Any]:
    passes = [{"rows_ok": N, "requests": r, "cached": c} for r, c in zip(requests, cached, strict=True)]
    return {"measured_passes": passes, "unmeasured_requests": unmeasured, "cache_server_cpu_s": None}


@pytest.mark.parametrize(
    ("case", "requests", "cached", "unmeasured", "endpoint", "problem"),
    [
        (HIT_CASE, [0, 0, 0], [N, N, N], N + 500, N + 500, None),
        (HIT_CASE, [0, 3, 0], [N, N - 3, N], N + 500, N + 503, "a hit pass was not free"),
        (
            HIT_CASE,
            [0, 0, 0],
            [N, N, N],
            N + 500,
            N + 501,
            "the endpoint got 1 request(s) during the hit passes",
        ),
        (MISS_CASE, [N, N, N], [0, 0, 0], 500, 3 * N + 500, None),
        (MISS_CASE, [N, N - 1, N], [0, 1, 0], 500, 3 * N + 499, "a miss pass had rows answered by the cache"),
        (HIT_CASE, [], [], 0, 0, "no measured pass reported"),
    ],
)
def test_a_hit_pass_must_send_nothing_and_a_miss_pass_find_nothing(
    case, requests, cached, unmeasured, endpoint, problem
):
    fields = cache_fields(case, _done(requests, cached, unmeasured), endpoint)
    found = cache_problem(case, fields)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


def test_the_redis_servers_cpu_is_reported_per_row():
    done = {**_done([0, 0, 0], [N, N, N], N), "cache_server_cpu_s": 0.08}
    assert cache_fields(HIT_CASE, done, N)["cache_server_cpu_us_per_row"] == pytest.approx(8.0)


def _cache_record(
    name: str, cache: str | None, cache_pass: str, repeat: int, cpu: float, **extra: Any
) -> dict:
    hit = cache_pass == HIT
    return {
        "name": f"{name}-r{repeat}",
        "kind": ENGINE_CPU,
        "ok": True,
        "error": None,
        "rows": N,
        "concurrency": 64,
        "cache": cache,
        "cache_pass": cache_pass,
        "repeat": repeat,
        "endpoint": REPLAY,
        "cpu_us_per_row": cpu,
        "cpu_us_per_row_runs": [cpu, cpu, cpu],
        "rows_per_s": 1e6 / cpu,
        "requests_per_pass": [0 if hit else N] * 3,
        "cached_per_pass": [N if hit else 0] * 3,
        "cache_server_cpu_us_per_row": None,
        **extra,
    }


def test_the_cache_costs_are_taken_over_no_cache_in_the_same_round():
    records = [
        _cache_record("cache-cpu-none", None, MISS, 1, 20.0),
        _cache_record("cache-cpu-memory-miss", MEMORY, MISS, 1, 30.0),
        _cache_record("cache-cpu-none", None, MISS, 2, 40.0),  # a loaded round: both slower
        _cache_record("cache-cpu-memory-miss", MEMORY, MISS, 2, 48.0),
        _cache_record("cache-cpu-none", None, MISS, 3, 22.0),
        _cache_record("cache-cpu-memory-miss", MEMORY, MISS, 3, 31.0),
        {**_cache_record("cache-cpu-memory-hit", MEMORY, HIT, 1, 9.0), "ok": False, "error": "timed out"},
    ]
    summary = {v["variant"]: v for v in cache_cpu_summary(records)}
    assert list(summary) == ["cache-cpu-none", "cache-cpu-memory-miss", "cache-cpu-memory-hit"]
    miss = summary["cache-cpu-memory-miss"]
    assert [one["over_none_us"] for one in miss["rounds"]] == [10.0, 8.0, 9.0]
    assert miss["median"]["over_none_us"] == 9.0 and miss["median"]["cpu_us_per_row"] == 31.0
    assert miss["requests_measured"] == 9 * N and miss["rows_from_cache"] == 0
    hit = summary["cache-cpu-memory-hit"]
    assert hit["failed_rounds"] == 1 and hit["median"]["cpu_us_per_row"] is None
    table = cache_cpu_table(records)
    assert "cache-cpu-memory-miss" in table and "+9.0" in table and "FAILED: timed out" in table
    assert cache_cpu_table([]) == ""


def test_the_engine_cpu_target_ignores_the_cache_cases():
    records = [_cache_record("cache-cpu-redis-miss", REDIS, MISS, 1, 120.0, tail_fraction=0.0)]
    assert not [t for t in targets(records) if "engine CPU" in t["target"]]


# --- packed embeddings -----------------------------------------------------------------------
def _pack_record(entry: str, k: int, repeat: int, rows_per_s: float, ok: bool = True) -> dict[str, Any]:
    return {
        "name": f"{entry}-embed-pack-k{k}-c64-r{repeat}",
        "kind": THROUGHPUT,
        "entry": entry,
        "ok": ok,
        "error": None if ok else "timed out",
        "concurrency": 64,
        "rows": 12_000,
        "latency_ms": 100.0,
        "rows_per_request": k,
        "pack_wait_ms": 5.0,
        "repeat": repeat,
        "rows_per_s": rows_per_s,
        "ratio_to_limit": rows_per_s / (640.0 * k),
        "requests": 12_000 // k,
        "cpu_us_per_row": {"python": 100.0, "jvm": 50.0},
    }


@pytest.mark.parametrize(
    ("single", "packed", "expected"), [(600.0, 3000.0, 5.0), (0.0, 3000.0, None), (None, 3000.0, None)]
)
def test_packed_over_single(single, packed, expected):
    assert packed_over_single(single, packed) == expected


def test_each_round_is_a_pair_and_the_median_is_over_the_rounds():
    records = [
        _pack_record(SQL_ASYNC, 1, 1, 600.0),
        _pack_record(SQL_ASYNC, 16, 1, 3000.0),
        _pack_record(DS_UNORDERED, 1, 1, 620.0),
        _pack_record(DS_UNORDERED, 16, 1, 3100.0),
        _pack_record(SQL_ASYNC, 1, 2, 500.0),  # a slow round: its ratio still pairs within it
        _pack_record(SQL_ASYNC, 16, 2, 3000.0),
        _pack_record(SQL_ASYNC, 1, 3, 640.0),
        _pack_record(SQL_ASYNC, 16, 3, 2560.0),
        _pack_record(DS_UNORDERED, 1, 2, 600.0),
        _pack_record(DS_UNORDERED, 16, 2, 0.0, ok=False),
    ]
    summary = {e["entry"]: e for e in embed_pack_summary(records)}
    sql = summary[SQL_ASYNC]
    assert [p["ratio"] for p in sql["pairs"]] == [5.0, 6.0, 4.0]
    assert sql["median"] == {"single_rows_per_s": 600.0, "packed_rows_per_s": 3000.0, "ratio": 5.0}
    assert sql["pairs"][0]["packed"]["rows_per_request"] == 16.0
    ds = summary[DS_UNORDERED]
    assert [p["ratio"] for p in ds["pairs"]] == [5.0, None]
    assert ds["median"]["ratio"] == 5.0 and ds["median"]["single_rows_per_s"] == 610.0
    table = embed_pack_table(records)
    assert "sql_async r2" in table and "6.00" in table and "FAILED: timed out" in table
    assert embed_pack_table([]) == ""

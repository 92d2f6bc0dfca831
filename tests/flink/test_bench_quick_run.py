"""``flink-llm bench --quick``: a real run whose output is complete and self-consistent (never how fast)."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from flink_llm_udf.flink._tuning import BUNDLE_KEYS, recommended_settings
from flink_llm_udf.tools.bench import main
from flink_llm_udf.tools.bench.plan import (
    DS_ORDERED,
    DS_UNORDERED,
    ENGINE,
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
)


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, checking its signature and IHDR chunk CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body, crc = data[16:29], struct.unpack(">I", data[29:33])[0]
    assert zlib.crc32(b"IHDR" + body) == crc, "IHDR CRC mismatch"
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"
    return struct.unpack(">II", body[:8])


@pytest.mark.flink
def test_quick_run_writes_complete_consistent_output(tmp_path):
    out = tmp_path / "bench"
    assert main(["--quick", "--out", str(out)]) == 0

    doc = json.loads((out / "bench.json").read_text())
    assert doc["schema"] == "flink-llm-bench/1" and doc["quick"] is True
    assert len(doc["machine"]["loadavg_start"]) == 3 and len(doc["machine"]["loadavg_end"]) == 3
    results = doc["results"]
    assert all(r["ok"] and r["error"] is None for r in results), [r["error"] for r in results]
    assert all(r["setup"] == TUNED for r in results)  # a quick run has no README twins
    for r in results:  # a tuned job runs with recommended_settings(C), whoever reads them
        if r["entry"] != ENGINE:
            assert r["flink_settings"] == recommended_settings(r["concurrency"]), r["name"]

    throughput = [r for r in results if r["kind"] == THROUGHPUT]
    assert {r["entry"] for r in throughput} == set(ENTRY_POINTS)
    baseline = doc["baseline_rows_per_s"]
    assert baseline > 0
    for r in throughput:
        assert r["rows_per_s"] > 0 and r["limit_rows_per_s"] > 0, r["name"]
        concurrency = 1 if r["entry"] == NAIVE else r["concurrency"]
        assert r["limit_rows_per_s"] == pytest.approx(
            concurrency * r["rows_per_request"] * 1000 / doc["latency_ms"]
        )
        assert r["ratio_to_limit"] == pytest.approx(r["rows_per_s"] / r["limit_rows_per_s"], abs=1e-4)
        assert r["ratio_to_baseline"] == pytest.approx(r["rows_per_s"] / baseline, abs=0.01)
        assert r["cpu_us_per_row"]["python"] > 0, r["name"]
        assert r["peak_rss_mb"]["python"] > 0, r["name"]
        assert r["startup_s"] is not None and r["startup_s"] >= 0
        assert r["requests"] >= r["rows"] / r["rows_per_request"] and r["non_200"] == 0
        if r["entry"] != "engine":
            assert r["peak_rss_mb"]["jvm"] > 0 and r["submit_to_first_request_s"] is not None
    embeddings = {r["rows_per_request"] for r in throughput if r["task"] == "embeddings"}
    assert embeddings == {1, 16}

    latency = [r for r in results if r["kind"] == LATENCY]
    assert latency and all(0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"] for r in latency)
    assert all(r["rows_seen"] == r["rows"] for r in latency)
    engine_cpu = {r["endpoint"]: r for r in results if r["kind"] == ENGINE_CPU}
    assert set(engine_cpu) == {REPLAY, SIMULATOR}
    assert all(r["cpu_us_per_row"] > 0 and len(r["cpu_us_per_row_runs"]) == 3 for r in engine_cpu.values())
    assert engine_cpu[SIMULATOR]["requests"] >= engine_cpu[SIMULATOR]["rows"]
    # the replay endpoint counts what it answered (every run, warm-up included): the rows at least
    assert engine_cpu[REPLAY]["requests"] >= engine_cpu[REPLAY]["rows"]
    assert doc["targets"] and all(isinstance(t["met"], bool) for t in doc["targets"])

    width, height = _png_size((out / "bench.png").read_bytes())
    assert width > 100 and height > 100
    assert "rows/s" in (out / "bench.txt").read_text()


@pytest.mark.flink
def test_readme_cases_run_with_what_the_product_applies(tmp_path):
    """The README twins build their jobs as README.md does and still run with the fast settings:
    ``register_functions`` and the SQL ``SET`` block give every key, ``apply_llm`` the bundle keys."""
    out = tmp_path / "bench"
    entries = ",".join(README_ENTRY_POINTS)
    argv = ["--only", "readme-c16", "--concurrency", "16", "--entries", entries, "--rows-scale", "0.1"]
    assert main([*argv, "--out", str(out)]) == 0

    doc = json.loads((out / "bench.json").read_text())
    results = doc["results"]
    assert [r["name"] for r in results] == [f"{e}-readme-c16" for e in README_ENTRY_POINTS]
    assert all(r["ok"] and r["setup"] == README and r["rows_per_s"] > 0 for r in results)
    wanted = recommended_settings(16)
    for r in results:
        if r["entry"] in (DS_UNORDERED, DS_ORDERED):
            assert {k: v for k, v in r["flink_settings"].items() if v is not None} == {
                k: wanted[k] for k in BUNDLE_KEYS
            }
        else:
            assert r["flink_settings"] == wanted, r["name"]

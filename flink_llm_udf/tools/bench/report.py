"""Turn watched child runs into result records, the JSON document and a text table.

Every result record has ``name``, ``kind``, ``entry``, the case's parameters, ``ok`` and
``error``; throughput records add ``rows_per_s``, ``limit_rows_per_s``, ``ratio_to_limit``,
``ratio_to_baseline``, start-up times, CPU per row and peak memory; latency records add
percentiles; the engine CPU record adds ``cpu_us_per_row``. ``SCHEMA`` names the layout.
"""

from __future__ import annotations

import math
from typing import Any

from .measure import ChildRun
from .plan import ENGINE_CPU, LATENCY, NAIVE, REPLAY, THROUGHPUT, Case
from .stats import first_request_time, limit_rows_per_s, percentile, ratio, steady_window

SCHEMA = "flink-llm-bench/1"
MB = 1024 * 1024


def _round(value: float | None, digits: int = 3) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(value, digits)


def case_record(
    case: Case, run: ChildRun, sim_stats: dict[str, Any], latency_ms: float, loadavg: tuple[float, float]
) -> dict[str, Any]:
    """The result record of one case (``ok`` False with ``error`` when it failed)."""
    record: dict[str, Any] = {
        **case.to_dict(),
        "latency_ms": latency_ms,
        "ok": False,
        "error": None,
        "wall_s": _round(run.ended - run.started, 2),
        "loadavg_1m": [round(loadavg[0], 2), round(loadavg[1], 2)],
    }
    requests = int(sim_stats.get("requests_total", 0))
    non_200 = sum(n for status, n in sim_stats.get("by_status", {}).items() if status != "200")
    record.update(requests=requests, non_200=non_200)
    done, submit = run.events.get("done"), run.events.get("submit")
    if run.timed_out:
        record["error"] = "timed out"
    elif done is None:
        record["error"] = (run.events.get("error") or {}).get("message") or f"exit code {run.returncode}"
    elif non_200:
        record["error"] = f"{non_200} request(s) did not answer 200"
    elif "rows_ok" in done and done["rows_ok"] != case.rows:
        record["error"] = f"{case.rows - done['rows_ok']} of {case.rows} rows got no value"
    first = first_request_time(run.samples)
    record["startup_s"] = _round(None if first is None else first - run.started, 2)
    record["submit_to_first_request_s"] = _round(
        None if first is None or submit is None else first - submit["t"], 2
    )
    record["peak_rss_mb"] = {
        "python": _round(max(run.peak_rss_python, 1024 * (done or {}).get("maxrss_kb", 0)) / MB, 1),
        "jvm": _round(run.peak_rss_jvm / MB, 1) if run.peak_rss_jvm else None,
    }
    if record["error"] is not None or done is None:  # done is None only with an error
        return record
    if case.kind == THROUGHPUT:
        record.update(_throughput(case, run, requests, latency_ms))
    elif case.kind == LATENCY:
        values = done.get("latencies_ms") or []
        record.update(
            rows_seen=len(values),
            p50_ms=_round(percentile(values, 0.5), 1),
            p90_ms=_round(percentile(values, 0.9), 1),
            max_ms=_round(max(values) if values else None, 1),
        )
        if len(values) != case.rows:
            record["error"] = f"{len(values)} of {case.rows} rows came back"
            return record
    elif case.kind == ENGINE_CPU:
        record.update(
            cpu_us_per_row=_round(1e6 * done["run_batch_cpu_s"] / case.rows, 1),
            cpu_us_per_row_runs=[_round(1e6 * c / case.rows, 1) for c in done.get("run_batch_cpu_s_all", [])],
            rows_per_s=_round(case.rows / done["run_batch_wall_s"], 1),
        )
    record["ok"] = True
    return record


def _throughput(case: Case, run: ChildRun, requests: int, latency_ms: float) -> dict[str, Any]:
    window = steady_window(run.samples, requests)
    rows_per_request = case.rows / requests if requests else 1.0
    # Ratios are computed from the rounded rate, so the JSON is consistent as written.
    rows_per_s = round(window.requests_per_s * rows_per_request, 2)
    rows_in_window = window.requests * rows_per_request
    concurrency = 1 if case.entry == NAIVE else case.concurrency
    limit = limit_rows_per_s(concurrency, latency_ms, case.rows_per_request)
    out = {
        "rows_per_s": rows_per_s,
        "limit_rows_per_s": _round(limit, 1),
        "ratio_to_limit": _round(ratio(rows_per_s, limit), 4),
        "window_s": _round(window.seconds, 2),
        "cpu_us_per_row": {
            "python": _round(1e6 * window.cpu_python_s / rows_in_window, 1),
            "jvm": _round(1e6 * window.cpu_jvm_s / rows_in_window, 1),
        },
    }
    if case.tail_fraction:
        # With a tail the mean latency is L * (1 + f * (m - 1)): the limit a perfect client has.
        tail_limit = limit / (1 + case.tail_fraction * (case.tail_multiplier - 1))
        out.update(
            tail_limit_rows_per_s=_round(tail_limit, 1),
            ratio_to_tail_limit=_round(ratio(rows_per_s, tail_limit), 4),
        )
    return out


def add_baseline_ratios(records: list[dict[str, Any]]) -> float | None:
    """Set ``ratio_to_baseline`` on every throughput record; return the baseline's rows/s."""
    base = next(
        (r.get("rows_per_s") for r in records if r["entry"] == NAIVE and r["kind"] == THROUGHPUT and r["ok"]),
        None,
    )
    for record in records:
        if record["kind"] == THROUGHPUT:
            record["ratio_to_baseline"] = _round(ratio(record.get("rows_per_s"), base), 2)
    return base


def targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The performance targets, each with the measured value and whether it was met."""
    out: list[dict[str, Any]] = []

    def find(**match: Any) -> dict[str, Any] | None:
        for r in records:
            if r["ok"] and all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    plain = {"kind": THROUGHPUT, "task": "chat", "tail_fraction": 0.0, "rows_per_request": 1}
    for entry in ("pandas_udf", "datastream_unordered", "datastream_ordered", "sql_async"):
        for c, floor in ((64, 0.9), (256, 0.8)):
            r = find(entry=entry, concurrency=c, **plain)
            if r is not None:
                out.append(
                    {
                        "target": f"{entry} C={c} ratio_to_limit >= {floor}",
                        "value": r["ratio_to_limit"],
                        "met": r["ratio_to_limit"] >= floor,
                    }
                )
        r = find(entry=entry, concurrency=64, **plain)
        if r is not None and r.get("ratio_to_baseline") is not None:
            out.append(
                {
                    "target": f"{entry} C=64 ratio_to_baseline >= 30",
                    "value": r["ratio_to_baseline"],
                    "met": r["ratio_to_baseline"] >= 30,
                }
            )
    r = find(kind=ENGINE_CPU, endpoint=REPLAY)
    if r is not None:
        out.append(
            {
                "target": "engine CPU per row <= 50 us (engine-cpu: the endpoint is never the bottleneck)",
                "value": r["cpu_us_per_row"],
                "met": r["cpu_us_per_row"] <= 50,
            }
        )
    for r in records:
        if r["ok"] and r["kind"] == THROUGHPUT and r["tail_fraction"] > 0 and r["entry"] == "pandas_udf":
            clean = find(entry=r["entry"], concurrency=r["concurrency"], **plain)
            if clean is not None:
                cost = 1 - r["rows_per_s"] / clean["rows_per_s"]
                out.append(
                    {
                        "target": f"pandas_udf C={r['concurrency']} 1% 10x tail costs <= 15%",
                        "value": round(cost, 3),
                        "met": cost <= 0.15,
                    }
                )
    return out


def progress_line(index: int, total: int, record: dict[str, Any]) -> str:
    """One line per measurement, for stderr."""
    head = f"[{index}/{total}] {record['name']:<34}"
    load = f"load {record['loadavg_1m'][0]:.1f}"
    if not record["ok"]:
        return f"{head} FAILED: {record['error']} ({load})"
    if record["kind"] == LATENCY:
        return (
            f"{head} p50 {record['p50_ms']:.0f} ms, p90 {record['p90_ms']:.0f} ms at "
            f"{record['rows_per_second']:g} rows/s ({load})"
        )
    if record["kind"] == ENGINE_CPU:
        runs = record.get("cpu_us_per_row_runs") or []
        spread = f" (median of {', '.join(f'{r:.1f}' for r in runs)})" if len(runs) > 1 else ""
        return (
            f"{head} {record['cpu_us_per_row']:.1f} us CPU/row{spread}, "
            f"{record['rows_per_s']:.0f} rows/s ({load})"
        )
    cpu = record["cpu_us_per_row"]
    return (
        f"{head} {record['rows_per_s']:8.1f} rows/s = {record['ratio_to_limit']:.2f} of limit "
        f"{record['limit_rows_per_s']:.0f}; start-up {record['startup_s']} s; "
        f"CPU {cpu['python']:.0f} us/row py + {cpu['jvm']:.0f} jvm ({load})"
    )


def table(records: list[dict[str, Any]]) -> str:
    """A fixed-width text table of every record."""
    lines = [
        f"{'case':<34} {'rows/s':>9} {'limit':>7} {'÷limit':>7} {'÷base':>7} {'start s':>7} "
        f"{'py us/row':>9} {'jvm us/row':>10} {'py MB':>6} {'jvm MB':>7} {'load':>5}"
    ]
    for r in records:
        load = r["loadavg_1m"][0]
        if not r["ok"]:
            lines.append(f"{r['name']:<34} FAILED: {r['error']}")
        elif r["kind"] == LATENCY:
            lines.append(
                f"{r['name']:<34} p50 {r['p50_ms']:.0f} ms  p90 {r['p90_ms']:.0f} ms  "
                f"max {r['max_ms']:.0f} ms at {r['rows_per_second']:g} rows/s {'':>20} {load:5.1f}"
            )
        elif r["kind"] == ENGINE_CPU:
            lines.append(
                f"{r['name']:<34} {r['rows_per_s']:9.0f} {'':>7} {'':>7} {'':>7} {'':>7} "
                f"{r['cpu_us_per_row']:9.1f} {'':>10} {'':>6} {'':>7} {load:5.1f}"
            )
        else:
            cpu, mem = r["cpu_us_per_row"], r["peak_rss_mb"]
            base = r.get("ratio_to_baseline")
            lines.append(
                f"{r['name']:<34} {r['rows_per_s']:9.1f} {r['limit_rows_per_s']:7.0f} "
                f"{r['ratio_to_limit']:7.2f} {'' if base is None else f'{base:.1f}':>7} "
                f"{r['startup_s'] or 0:7.1f} {cpu['python']:9.0f} {cpu['jvm']:10.0f} "
                f"{mem['python'] or 0:6.0f} {mem['jvm'] or 0:7.0f} {load:5.1f}"
            )
    return "\n".join(lines)

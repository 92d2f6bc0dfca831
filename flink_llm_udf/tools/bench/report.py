"""Turn watched child runs into result records, the JSON document and a text table.

Every result record has ``name``, ``kind``, ``entry``, the case's parameters (``setup``: tuned,
or built as README.md writes it), ``ok`` and ``error``; throughput records add ``rows_per_s``,
``limit_rows_per_s``, ``ratio_to_limit``, ``ratio_to_baseline``, start-up times, CPU per row and
peak memory; latency records add percentiles; the engine CPU record adds ``cpu_us_per_row``;
a cache-cpu record (an engine CPU record with ``cache_pass``) adds what each measured pass sent
and what the cache answered (``pay_once.cache_fields``); quota records add rows answered and
failed, 429s and their share of requests, retries, and rows/s in steady state against the
quota's rate (``quota_fields``); Flink records add ``flink_settings``, the tuning keys the job
was submitted with. ``SCHEMA`` names the layout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .pay_once import cache_fields, cache_problem
from .plan import (
    DS_ORDERED,
    DS_UNORDERED,
    ENGINE_CPU,
    LATENCY,
    NAIVE,
    PANDAS,
    QUOTA,
    QUOTA_OFF,
    QUOTA_ON,
    README,
    REPLAY,
    SQL_ASYNC,
    THROUGHPUT,
    TUNED,
    Case,
    quota_rows_per_s,
)
from .stats import first_request_time, limit_rows_per_s, percentile, ratio, steady_window

if TYPE_CHECKING:  # measure needs psutil, which the CLI checks for before importing it
    from .measure import ChildRun

SCHEMA = "flink-llm-bench/1"
MB = 1024 * 1024

#: Ratio to the limit C / L each Flink path must reach at a concurrency, in either setup.
THROUGHPUT_FLOORS = ((64, 0.95), (256, 0.9))
#: A README case "within noise" of its tuned twin: at least this fraction of its rows/s.
README_WITHIN = 0.95
#: Latency at a low input rate on the async paths: percentile -> at most L plus this margin.
LATENCY_MARGINS_MS = (("p50_ms", 200.0), ("p99_ms", 500.0))
ASYNC_ENTRIES = (DS_UNORDERED, DS_ORDERED, SQL_ASYNC)
SETUPS = (TUNED, README)
#: Against a quota, with the limits given (issue 12): at most this share of requests answered
#: 429, and at least this fraction of the quota's rate in steady state; no failed row.
QUOTA_MAX_429_SHARE = 0.02
QUOTA_MIN_RATIO = 0.9


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
    by_status = sim_stats.get("by_status", {})
    non_200 = sum(n for status, n in by_status.items() if status != "200")
    record.update(requests=requests, non_200=non_200)
    # Against a quota a 429 is what is measured, and a row without a value is counted there.
    expected = int(by_status.get("429", 0)) if case.kind == QUOTA else 0
    done, submit = run.events.get("done"), run.events.get("submit")
    if run.timed_out:
        record["error"] = "timed out"
    elif done is None:
        record["error"] = (run.events.get("error") or {}).get("message") or f"exit code {run.returncode}"
    elif non_200 > expected:
        also = " or 429" if case.kind == QUOTA else ""
        record["error"] = f"{non_200 - expected} request(s) did not answer 200{also}"
    elif case.kind == QUOTA and done.get("rows_seen", case.rows) != case.rows:
        record["error"] = f"{done.get('rows_seen')} of {case.rows} rows came back"
    elif case.kind == QUOTA and not by_status.get("200"):
        record["error"] = "no request was answered 200"
    elif "rows_ok" in done and done["rows_ok"] != case.rows and case.kind != QUOTA:
        record["error"] = f"{case.rows - done['rows_ok']} of {case.rows} rows got no value"
    if submit is not None and "flink_settings" in submit:
        record["flink_settings"] = submit["flink_settings"]  # as the job was submitted (None: default)
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
            p99_ms=_round(percentile(values, 0.99), 1),
            max_ms=_round(max(values) if values else None, 1),
        )
        if len(values) != case.rows:
            record["error"] = f"{len(values)} of {case.rows} rows came back"
            return record
    elif case.kind == QUOTA:
        record.update(quota_fields(case, run.samples, sim_stats, done))
    elif case.kind == ENGINE_CPU:
        record.update(
            cpu_us_per_row=_round(1e6 * done["run_batch_cpu_s"] / case.rows, 1),
            cpu_us_per_row_runs=[_round(1e6 * c / case.rows, 1) for c in done.get("run_batch_cpu_s_all", [])],
            rows_per_s=_round(case.rows / done["run_batch_wall_s"], 1),
        )
        if case.cache_pass is not None:
            fields = cache_fields(case, done, requests)
            record.update(fields)
            record["error"] = cache_problem(case, fields)
            if record["error"] is not None:
                return record
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


def quota_fields(
    case: Case,
    samples: list[tuple[float, float, float, float]],
    sim_stats: dict[str, Any],
    done: dict[str, Any],
) -> dict[str, Any]:
    """What a quota case measured. ``samples`` count the requests answered 200 (rows answered).

    429s are the simulator's quota refusals (``rate_limited_requests + rate_limited_tokens``);
    retries are the requests beyond one per row; the quota's rate is its requests per second
    (or its tokens per second over the tokens the simulator charged per request, if tighter).
    """
    answered = float(sim_stats.get("by_status", {}).get("200", 0))
    requests = int(sim_stats.get("requests_total", 0))
    rate_limited = int(sim_stats.get("rate_limited_requests", 0)) + int(
        sim_stats.get("rate_limited_tokens", 0)
    )
    keys = (sim_stats.get("quota_keys") or {}).values()
    admitted = sum(int(k.get("requests", 0)) for k in keys)
    tokens_per_request = sum(int(k.get("tokens", 0)) for k in keys) / admitted if admitted else None
    quota = quota_rows_per_s(case, tokens_per_request)
    window = steady_window(samples, answered)
    rows_per_s = round(window.requests_per_s, 2)
    rows_ok = int(done.get("rows_ok", answered))
    config = sim_stats.get("config") or {}
    return {
        "rows_answered": rows_ok,
        "rows_failed": case.rows - rows_ok,
        "rate_limited": rate_limited,
        "rate_limited_share": _round(ratio(rate_limited, requests), 4),
        "retries": requests - case.rows,
        "requests_per_row": _round(requests / case.rows, 3),
        "tokens_per_request": _round(tokens_per_request, 1),
        # the most requests the simulator had in flight at once: C times the subtasks at most
        "max_in_flight": sim_stats.get("max_in_flight"),
        "rows_per_s": rows_per_s,
        "quota_rows_per_s": _round(quota, 2),
        "ratio_to_quota": _round(ratio(rows_per_s, quota), 4),
        "window_s": _round(window.seconds, 2),
        "cpu_us_per_row": {
            "python": _round(1e6 * window.cpu_python_s / window.requests, 1),
            "jvm": _round(1e6 * window.cpu_jvm_s / window.requests, 1),
        },
        "simulator_quota": {
            key: config.get(key)
            for key in ("quota_rpm", "quota_tpm", "quota_window_s", "quota_default_max_tokens")
        },
    }


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
    """The performance targets, each with the measured value and whether it was met.

    Throughput floors and the baseline multiple hold for both setups (tuned and as README.md
    writes it); a README case must also be within noise of its tuned twin; the async paths
    must answer a quiet stream within ``LATENCY_MARGINS_MS`` of the endpoint's latency.
    """
    out: list[dict[str, Any]] = []

    def find(**match: Any) -> dict[str, Any] | None:
        for r in records:
            if r["ok"] and all(r.get(k, TUNED if k == "setup" else None) == v for k, v in match.items()):
                return r
        return None

    def add(target: str, value: Any, met: bool) -> None:
        out.append({"target": target, "value": value, "met": met})

    plain = {"kind": THROUGHPUT, "task": "chat", "tail_fraction": 0.0, "rows_per_request": 1}
    for entry in (PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC):
        for setup in SETUPS:
            for c, floor in THROUGHPUT_FLOORS:
                r = find(entry=entry, concurrency=c, setup=setup, **plain)
                if r is not None:
                    add(
                        f"{entry} {setup} C={c} ratio_to_limit >= {floor}",
                        r["ratio_to_limit"],
                        r["ratio_to_limit"] >= floor,
                    )
            r = find(entry=entry, concurrency=64, setup=setup, **plain)
            if r is not None and r.get("ratio_to_baseline") is not None:
                add(
                    f"{entry} {setup} C=64 ratio_to_baseline >= 30",
                    r["ratio_to_baseline"],
                    r["ratio_to_baseline"] >= 30,
                )
    for readme, tuned in twins(records):
        if readme["kind"] == THROUGHPUT and tuned["ok"] and readme["ok"]:
            value = _round(ratio(readme["rows_per_s"], tuned["rows_per_s"]), 3)
            add(
                f"{readme['name']} rows/s >= {README_WITHIN} x {tuned['name']} (within noise of tuned)",
                value,
                value is not None and value >= README_WITHIN,
            )
    for entry in ASYNC_ENTRIES:
        for setup in SETUPS:
            r = find(entry=entry, kind=LATENCY, setup=setup)
            if r is None or r.get("p99_ms") is None:
                continue
            for key, margin in LATENCY_MARGINS_MS:
                bound = r["latency_ms"] + margin
                add(
                    f"{entry} {setup} {key[:-3]} <= L + {margin:g} ms = {bound:g} ms "
                    f"at {r['rows_per_second']:g} rows/s",
                    r[key],
                    r[key] <= bound,
                )
    r = find(kind=ENGINE_CPU, endpoint=REPLAY, cache_pass=None)
    if r is not None:
        add(
            "engine CPU per row <= 50 us (engine-cpu: the endpoint is never the bottleneck)",
            r["cpu_us_per_row"],
            r["cpu_us_per_row"] <= 50,
        )
    out.extend(quota_targets(records))
    for r in records:
        if r["ok"] and r["kind"] == THROUGHPUT and r["tail_fraction"] > 0 and r["entry"] == PANDAS:
            clean = find(entry=r["entry"], concurrency=r["concurrency"], setup=r.get("setup", TUNED), **plain)
            if clean is not None:
                cost = 1 - r["rows_per_s"] / clean["rows_per_s"]
                add(f"pandas_udf C={r['concurrency']} 1% 10x tail costs <= 15%", round(cost, 3), cost <= 0.15)
    return out


def quota_targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry point given the quota: no failed row, at most ``QUOTA_MAX_429_SHARE`` of its
    requests answered 429, at least ``QUOTA_MIN_RATIO`` of the quota's rate in steady state.

    A quota case that failed misses all three (value None): the targets are the point of it.
    """
    out: list[dict[str, Any]] = []
    for r in records:
        if r["kind"] != QUOTA or r.get("setup") != QUOTA_ON:
            continue
        ok, head = r["ok"], f"{r['entry']} {QUOTA_ON}"
        failed = r.get("rows_failed") if ok else None
        share = r.get("rate_limited_share") if ok else None
        rate = r.get("ratio_to_quota") if ok else None
        quota = r.get("quota_rows_per_s")
        out += [
            {"target": f"{head}: 0 failed rows", "value": failed, "met": failed == 0},
            {
                "target": f"{head}: 429 share <= {QUOTA_MAX_429_SHARE:.0%} of requests",
                "value": share,
                "met": share is not None and share <= QUOTA_MAX_429_SHARE,
            },
            {
                "target": f"{head}: rows/s >= {QUOTA_MIN_RATIO} x the quota's rate"
                + ("" if quota is None else f" ({quota:g} rows/s)"),
                "value": rate,
                "met": rate is not None and rate >= QUOTA_MIN_RATIO,
            },
        ]
    return out


#: What a side-by-side quota pair shows of each setup (``quota_pairs``).
QUOTA_SUMMARY_KEYS = (
    "name",
    "ok",
    "error",
    "rows_per_s",
    "quota_rows_per_s",
    "ratio_to_quota",
    "rows_answered",
    "rows_failed",
    "requests",
    "rate_limited",
    "rate_limited_share",
    "retries",
    "requests_per_row",
    "wall_s",
)


def quota_pairs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry point's quota case beside its control, for the JSON: both summaries and the
    gain as ratios (control over limited: requests per row, 429 share; None where undefined)."""
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r["kind"] == QUOTA and r.get("setup") in (QUOTA_ON, QUOTA_OFF):
            entries.setdefault(r["entry"], {})[r["setup"]] = r
    pairs = []
    for entry, setups in entries.items():
        on, off = setups.get(QUOTA_ON), setups.get(QUOTA_OFF)
        gain: dict[str, float | None] = dict.fromkeys(
            ("requests_per_row", "rate_limited_share", "rows_per_s")
        )
        if on is not None and off is not None and on["ok"] and off["ok"]:
            gain = {key: _round(ratio(off.get(key), on.get(key)), 2) for key in gain}
        pairs.append(
            {
                "entry": entry,
                QUOTA_ON: None if on is None else {k: on.get(k) for k in QUOTA_SUMMARY_KEYS},
                QUOTA_OFF: None if off is None else {k: off.get(k) for k in QUOTA_SUMMARY_KEYS},
                "off_over_on": gain,
            }
        )
    return pairs


def _quota_cells(r: dict[str, Any] | None) -> str:
    if r is None:
        return f"{'(not run)':<48}"
    if not r["ok"]:
        return f"{'FAILED: ' + str(r['error']):<48.48}"
    share = r["rate_limited_share"]
    return (
        f"{r['rows_per_s']:7.1f} {r['ratio_to_quota'] or 0:6.2f} {r['rows_failed']:6d} {r['requests']:5d} "
        f"{r['rate_limited']:5d} {'' if share is None else f'{100 * share:.1f}':>6} {r['retries']:7d}"
    )


def quota_table(records: list[dict[str, Any]]) -> str:
    """The quota cases, each entry point with the limits and without side by side; "" if none."""
    pairs = quota_pairs(records)
    if not pairs:
        return ""
    first = next(r for r in records if r["kind"] == QUOTA)
    sim = first.get("simulator_quota") or {}
    scaled = ""
    if sim.get("quota_rpm") is not None:
        scaled = (
            f" (the simulator's {sim['quota_window_s']:g} s 'minute': {sim['quota_rpm']:,} requests, "
            f"{sim['quota_tpm'] or 0:,} tokens)"
        )
    cols = f"{'rows/s':>7} {'÷quota':>6} {'failed':>6} {'req':>5} {'429s':>5} {'429 %':>6} {'retries':>7}"
    lines = [
        f"Quota: {first['quota_rpm']:,} RPM, {first['quota_tpm']:,} TPM job-wide{scaled}; parallelism "
        f"{first['parallelism']}, C = {first['concurrency']}, L = {first['latency_ms']:g} ms, "
        f"{first['rows']} rows, RETRY",
        f"{'':<22} {'with the limits (quota)':<48} | {'control: no limits, no headers (quota-off)':<48} | "
        f"{'off ÷ on':>8}",
        f"{'entry':<22} {cols} | {cols} | {'req/row':>8}",
    ]
    by_name = {r["name"]: r for r in records}
    for pair in pairs:
        on = by_name.get(pair[QUOTA_ON]["name"]) if pair[QUOTA_ON] else None
        off = by_name.get(pair[QUOTA_OFF]["name"]) if pair[QUOTA_OFF] else None
        gain = pair["off_over_on"]["requests_per_row"]
        lines.append(
            f"{pair['entry']:<22} {_quota_cells(on)} | {_quota_cells(off)} | "
            f"{'' if gain is None else f'{gain:.2f}':>8}"
        )
    return "\n".join(lines)


#: The fields that make a README case the twin of a tuned one (everything but name and setup).
_TWIN_KEYS = (
    "kind",
    "entry",
    "concurrency",
    "rows",
    "task",
    "rows_per_request",
    "tail_fraction",
    "rows_per_second",
    "endpoint",
)


def twins(records: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each README record with its tuned twin (the same case but for the setup), failed ones too."""
    tuned = {tuple(r.get(k) for k in _TWIN_KEYS): r for r in records if r.get("setup", TUNED) == TUNED}
    for r in records:
        if r.get("setup") == README and (twin := tuned.get(tuple(r.get(k) for k in _TWIN_KEYS))):
            yield r, twin


def progress_line(index: int, total: int, record: dict[str, Any]) -> str:
    """One line per measurement, for stderr."""
    head = f"[{index}/{total}] {record['name']:<36}"
    load = f"load {record['loadavg_1m'][0]:.1f}"
    if not record["ok"]:
        return f"{head} FAILED: {record['error']} ({load})"
    if record["kind"] == LATENCY:
        return (
            f"{head} p50 {record['p50_ms']:.0f} ms, p90 {record['p90_ms']:.0f} ms, "
            f"p99 {record['p99_ms']:.0f} ms at "
            f"{record['rows_per_second']:g} rows/s ({load})"
        )
    if record["kind"] == QUOTA:
        share = record["rate_limited_share"] or 0.0
        return (
            f"{head} {record['rows_per_s']:6.1f} rows/s = {record['ratio_to_quota'] or 0:.2f} of the quota's "
            f"{record['quota_rows_per_s'] or 0:g}; {record['rows_failed']} failed; {record['rate_limited']} "
            f"of {record['requests']} requests 429 ({share:.1%}); {record['retries']} retries; "
            f"at most {record.get('max_in_flight')} in flight ({load})"
        )
    if record["kind"] == ENGINE_CPU:
        runs = record.get("cpu_us_per_row_runs") or []
        spread = f" (median of {', '.join(f'{r:.1f}' for r in runs)})" if len(runs) > 1 else ""
        sent = ""
        if record.get("cache_pass") is not None:
            sent = (
                f"; requests per pass {record['requests_per_pass']}, "
                f"from the cache {record['cached_per_pass']}"
            )
        return (
            f"{head} {record['cpu_us_per_row']:.1f} us CPU/row{spread}, "
            f"{record['rows_per_s']:.0f} rows/s{sent} ({load})"
        )
    cpu = record["cpu_us_per_row"]
    return (
        f"{head} {record['rows_per_s']:8.1f} rows/s = {record['ratio_to_limit']:.2f} of limit "
        f"{record['limit_rows_per_s']:.0f}; start-up {record['startup_s']} s; "
        f"CPU {cpu['python']:.0f} us/row py + {cpu['jvm']:.0f} jvm ({load})"
    )


def table(records: list[dict[str, Any]]) -> str:
    """A fixed-width text table of every record but the quota cases (``quota_table``); "" if none."""
    records = [r for r in records if r["kind"] != QUOTA]
    if not records:
        return ""
    lines = [
        f"{'case':<36} {'rows/s':>9} {'limit':>7} {'÷limit':>7} {'÷base':>7} {'start s':>7} "
        f"{'py us/row':>9} {'jvm us/row':>10} {'py MB':>6} {'jvm MB':>7} {'load':>5}"
    ]
    for r in records:
        load = r["loadavg_1m"][0]
        if not r["ok"]:
            lines.append(f"{r['name']:<36} FAILED: {r['error']}")
        elif r["kind"] == LATENCY:
            lines.append(
                f"{r['name']:<36} p50 {r['p50_ms']:.0f} ms  p90 {r['p90_ms']:.0f} ms  "
                f"p99 {r['p99_ms']:.0f} ms  max {r['max_ms']:.0f} ms at {r['rows_per_second']:g} rows/s "
                f"{load:5.1f}"
            )
        elif r["kind"] == ENGINE_CPU:
            lines.append(
                f"{r['name']:<36} {r['rows_per_s']:9.0f} {'':>7} {'':>7} {'':>7} {'':>7} "
                f"{r['cpu_us_per_row']:9.1f} {'':>10} {'':>6} {'':>7} {load:5.1f}"
            )
        else:
            cpu, mem = r["cpu_us_per_row"], r["peak_rss_mb"]
            base = r.get("ratio_to_baseline")
            lines.append(
                f"{r['name']:<36} {r['rows_per_s']:9.1f} {r['limit_rows_per_s']:7.0f} "
                f"{r['ratio_to_limit']:7.2f} {'' if base is None else f'{base:.1f}':>7} "
                f"{r['startup_s'] or 0:7.1f} {cpu['python']:9.0f} {cpu['jvm']:10.0f} "
                f"{mem['python'] or 0:6.0f} {mem['jvm'] or 0:7.0f} {load:5.1f}"
            )
    return "\n".join(lines)


def _rate(r: dict[str, Any]) -> str:
    if not r["ok"]:
        return "FAILED"
    if r["kind"] == LATENCY:
        return f"{r['p50_ms']:.0f} / {r['p90_ms']:.0f} / {r['p99_ms']:.0f}"
    return f"{r['rows_per_s']:.1f} ({r['ratio_to_limit']:.2f})"


def setup_table(records: list[dict[str, Any]]) -> str:
    """Each case tuned and as README.md writes it, side by side; empty without README cases.

    Throughput: rows/s (ratio to the limit) and README rows/s over tuned. Latency: p50 / p90 /
    p99 ms.
    """
    pairs = list(twins(records))
    if not pairs:
        return ""
    lines = [
        "tuned (recommended_settings in the job configuration) vs readme (as README.md writes it)",
        f"{'case':<36} {'tuned':>22} {'readme':>22} {'readme÷tuned':>13}",
    ]
    for readme, tuned in pairs:
        unit = "p50 / p90 / p99 ms" if readme["kind"] == LATENCY else "rows/s (÷limit)"
        throughput = readme["kind"] == THROUGHPUT and readme["ok"] and tuned["ok"]
        versus = ratio(readme.get("rows_per_s"), tuned.get("rows_per_s")) if throughput else None
        lines.append(
            f"{tuned['name']:<36} {_rate(tuned):>22} {_rate(readme):>22} "
            f"{'' if versus is None else f'{versus:.2f}':>13}  {unit}"
        )
    return "\n".join(lines)

"""``flink-llm bench``: argument parsing and the run loop (one child process per case)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..key_values import parse_key_values
from .pay_once import cache_cpu_summary, cache_cpu_table, embed_pack_summary, embed_pack_table
from .plan import (
    ENGINE_CPU,
    ENTRY_POINTS,
    LATENCY,
    NAIVE,
    QUOTA,
    QUOTA_ENTRY_POINTS,
    README_ENTRY_POINTS,
    REDIS,
    REPLAY,
    Case,
    build_plan,
    quota_rows_per_s,
    simulator_settings,
    with_rows_scaled,
)
from .report import (
    SCHEMA,
    add_baseline_ratios,
    case_record,
    progress_line,
    quota_pairs,
    quota_table,
    setup_table,
    table,
    targets,
)

if TYPE_CHECKING:  # measure imports psutil: see missing_extra
    from .measure import ChildRun

#: The modules of the ``bench`` extra (pyproject.toml), and how to install them.
EXTRA_MODULES = ("psutil", "matplotlib")
INSTALL_EXTRA = "pip install 'flink-llm-udf[bench]'"

CPU_ACCOUNTING = (
    "cpu_us_per_row.python: CPU seconds (user + system, all threads) of the Python processes of "
    "the case's process tree over the steady-state window, per row. In local mode that is the "
    "child process that builds the job (mostly idle then) and hosts the Python worker (Beam "
    "harness, Arrow/pickle coders, our engine and its event-loop thread); in process mode the "
    "worker processes the JVM starts are added. cpu_us_per_row.jvm: the same for the "
    "mini-cluster JVM (source, Python operator's Java half, gRPC, sink). The simulator is a "
    "separate process and is not counted. peak_rss_mb: max RSS seen (and ru_maxrss for the "
    "Python child)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flink-llm bench",
        description="Benchmark every entry point against the simulator: rows/s in steady state, "
        "ratio to the C/L limit and to a naive baseline, CPU per row, peak memory, "
        "and end-to-end latency at a low input rate. A full run measures each throughput and "
        f"latency case of {', '.join(README_ENTRY_POINTS)} twice: tuned (recommended_settings "
        "in the job configuration) and as README.md writes the job (NAME-readme-...). "
        f"It also runs {', '.join(QUOTA_ENTRY_POINTS)} against a simulator enforcing a hosted API's "
        "quota, at parallelism 2, with the job given the quota (NAME-quota) and without "
        "(NAME-quota-off); --only quota runs those alone. "
        "Writes bench.json, bench.png and bench.txt into --out (plus logs/ and timelines/ per "
        f"case). Needs the bench extra: {INSTALL_EXTRA}.",
    )
    parser.add_argument("--out", default="bench-out", help="output directory (default: bench-out)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="C=64 only, fewer rows and variants (every entry point once, tuned only); < 3 min",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="simulator latency L per request (default: 100)"
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=None,
        metavar="C,C,...",
        help="concurrency levels (default: 16,64,256; quick: 64)",
    )
    parser.add_argument(
        "--entries",
        type=_entry_list,
        default=None,
        metavar="E,E,...",
        help=f"only these entry points (of {', '.join(ENTRY_POINTS)})",
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="SUBSTRING",
        help="only cases whose name contains SUBSTRING (repeat with commas)",
    )
    parser.add_argument(
        "--rows-scale",
        type=float,
        default=1.0,
        help="multiply every throughput case's row count (default: 1)",
    )
    parser.add_argument(
        "--set",
        dest="flink_conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Flink configuration for every tuned Flink case, over recommended_settings(C) "
        "(README cases run as README.md writes them); a value N*C means N times the case's concurrency",
    )
    parser.add_argument(
        "--ds-capacity",
        default=None,
        metavar="N|N*C",
        help="capacity of the DataStream async operator in tuned cases (default: apply_llm's)",
    )
    parser.add_argument(
        "--worker-mode",
        choices=("loopback", "process"),
        default="loopback",
        help="local Python workers in the client process (Flink's local default) or in separate processes",
    )
    parser.add_argument("--poll-s", type=float, default=0.2, help="sampling interval (default: 0.2)")
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: concurrency levels must be >= 1")
    return values


def _entry_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = sorted(set(values) - set(ENTRY_POINTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown entry point(s) {', '.join(unknown)}; known: {', '.join(ENTRY_POINTS)}"
        )
    return values


def timeout_for(case: Case, latency_ms: float) -> float:
    """Generous wall-clock budget for one case: start-up plus the run at a fifth of the limit
    (a third of the input rate for latency cases, of the quota's rate for quota cases)."""
    if case.kind == LATENCY:
        return 120.0 + 3 * case.rows / (case.rows_per_second or 1)
    if case.kind == QUOTA:
        return 120.0 + 3 * case.rows / (quota_rows_per_s(case) or 1)
    if case.kind == ENGINE_CPU and case.cache is not None:
        return 120.0 + 5 * case.rows / 1000.0  # five passes, at 1,000 rows/s at the slowest
    concurrency = 1 if case.entry == NAIVE else case.concurrency
    per_second = concurrency * case.rows_per_request * 1000.0 / max(latency_ms, 1.0)
    return 120.0 + 5 * case.rows / per_second


def _write_timeline(path: Path, run: ChildRun) -> None:
    """The case's raw samples (t since the child started, requests, CPU s python, CPU s jvm)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    events = {name: round(event["t"] - run.started, 3) for name, event in run.events.items()}
    samples = [[round(t - run.started, 3), int(n), round(p, 3), round(j, 3)] for t, n, p, j in run.samples]
    path.write_text(json.dumps({"events": events, "samples": samples}) + "\n", encoding="utf-8")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("apache-flink", "aiohttp", "pandas", "pyarrow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """What a case calls, and (replay) the requests it got so far (None: ask the simulator)."""

    base_url: str
    requests: Callable[[], int] | None = None


@contextlib.contextmanager
def _endpoint_for(case: Case, sim: Any) -> Iterator[_Endpoint]:
    """What ``case`` calls: the simulator, or a replay of one simulator reply."""
    if case.endpoint != REPLAY:
        yield _Endpoint(sim.base_url)
        return
    from flink_llm_udf._wire import build_chat_body, resolve_call

    from .child import provider_for, text_of
    from .replay import ReplayServer, record_reply

    spec = resolve_call(provider_for(case, sim.base_url))  # the request the case's engine sends
    with ReplayServer(record_reply(spec.url, build_chat_body(spec, text_of(1)))) as replay:
        yield _Endpoint(replay.base_url, lambda: replay.requests)
    sim.reset()  # the recording request is not the case's


@contextlib.contextmanager
def _cache_for(case: Case) -> Iterator[dict[str, Any]]:
    """What a cache-cpu case's child needs of its cache: for Redis, a fresh redis-server here
    (its URL and pid, stopped after the case), or why there is none (``cache_error``)."""
    if case.cache != REDIS:
        yield {"cache_url": case.cache} if case.cache else {}
        return
    from .redis_server import RedisServer

    server = RedisServer()
    try:
        server.start()
    except (OSError, RuntimeError) as exc:  # the case fails with the reason; the run goes on
        server.close()
        yield {"cache_error": str(exc)[:500]}
        return
    try:
        yield {"cache_url": server.url, "cache_pid": server.pid}
    finally:
        server.close()


def _replayed(stats: dict[str, Any], requests: int) -> dict[str, Any]:
    """The simulator's stats with the replay endpoint's request count: every one answered 200."""
    return {**stats, "requests_total": requests, "by_status": {"200": requests} if requests else {}}


def missing_extra() -> str | None:
    """The first module of the ``bench`` extra that cannot be imported, or None."""
    import importlib

    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = missing_extra()
    if missing is not None:  # say what to install, not a traceback from deep in a module
        print(f"flink-llm bench: needs {missing}, from the bench extra: {INSTALL_EXTRA}", file=sys.stderr)
        return 2
    from flink_llm_udf.simulator import SimulatorConfig, SimulatorProcess

    from .measure import run_child
    from .plot import plot

    try:
        flink_conf = dict(parse_key_values(args.flink_conf))
    except ValueError as exc:
        raise SystemExit(f"flink-llm bench: {exc}") from None
    from .child import per_concurrency

    batch_override = flink_conf.get("python.fn-execution.arrow.batch.size")
    cases = build_plan(
        quick=args.quick,
        latency_ms=args.latency_ms,
        concurrencies=args.concurrency,
        entries=args.entries,
        batch_size=None if batch_override is None else (lambda c: int(per_concurrency(batch_override, c))),
    )
    if args.only:
        wanted = [w for w in args.only.split(",") if w]
        cases = [c for c in cases if any(w in c.name for w in wanted)]
    if args.rows_scale != 1.0:
        cases = with_rows_scaled(cases, args.rows_scale)
    if not cases:
        print("flink-llm bench: nothing to run", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["_python_worker_execution_mode"] = args.worker_mode  # read by PyFlink's local executor
    started, load_start = time.time(), os.getloadavg()
    print(
        f"flink-llm bench: {len(cases)} cases, L = {args.latency_ms:g} ms, load {load_start[0]:.2f}; "
        f"logs in {out / 'logs'}",
        file=sys.stderr,
    )
    records: list[dict[str, Any]] = []
    with SimulatorProcess(SimulatorConfig(latency_ms=args.latency_ms)) as sim:
        for index, case in enumerate(cases, 1):
            latency = args.latency_ms if case.latency_ms is None else case.latency_ms
            sim.update(**simulator_settings(case, latency))
            sim.reset()  # zero stats, and every key's quota full again: cases share no budget
            load_before = os.getloadavg()[0]
            with _endpoint_for(case, sim) as endpoint, _cache_for(case) as cache:
                run = run_child(
                    case,
                    sim,
                    flink_conf=flink_conf,
                    log_dir=out / "logs",
                    timeout_s=timeout_for(case, latency),
                    env=env,
                    interval=args.poll_s,
                    ds_capacity=args.ds_capacity,
                    base_url=endpoint.base_url,
                    extra_spec=cache,
                )
                replayed = None if endpoint.requests is None else endpoint.requests()
            stats = sim.stats() if replayed is None else _replayed(sim.stats(), replayed)
            record = case_record(case, run, stats, latency, (load_before, os.getloadavg()[0]))
            records.append(record)
            _write_timeline(out / "timelines" / f"{case.name}.json", run)
            print(progress_line(index, len(cases), record), file=sys.stderr, flush=True)
    baseline = add_baseline_ratios(records)
    doc = {
        "schema": SCHEMA,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "latency_ms": args.latency_ms,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": [round(v, 2) for v in load_start],
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
            **_versions(),
        },
        "settings": {
            "flink_conf_overrides": flink_conf,
            "worker_mode": args.worker_mode,
            "ds_capacity": args.ds_capacity or "apply_llm default",
            "flink_conf_base": {
                "tuned": "parallelism.default=1, python.executable, table.local-time-zone=UTC "
                "+ recommended_settings(C) + --set",
                "readme": "parallelism.default=1, python.executable, table.local-time-zone=UTC; "
                "the job built as README.md writes it (register_functions, apply_llm without "
                "capacity, pure SQL with the job parameters and sql_set_statements(C))",
                "quota": "as tuned, at parallelism.default=2; the job given EngineSettings("
                "requests_per_minute, tokens_per_minute) of the quota (quota-off: no limits, "
                "rate_limit_headers=False); max_tokens and a 50 ms backoff on the provider, RETRY "
                "falling back to IGNORE; the output collected to count rows with a value",
            },
            "poll_s": args.poll_s,
        },
        "cpu_accounting": CPU_ACCOUNTING,
        "baseline_rows_per_s": baseline,
        "results": records,
        "quota": quota_pairs(records),
        "pay_once": {"embed_pack": embed_pack_summary(records), "cache_cpu": cache_cpu_summary(records)},
        "targets": targets(records),
        "total_wall_s": round(time.time() - started, 1),
    }
    (out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    parts = (
        table(records),
        setup_table(records),
        quota_table(records),
        embed_pack_table(records),
        cache_cpu_table(records),
    )
    text = "\n\n".join(part for part in parts if part)
    summary = "\n".join(
        f"{'met ' if t['met'] else 'MISS'} {t['target']}: {t['value']}" for t in doc["targets"]
    )
    (out / "bench.txt").write_text(
        f"load average start {doc['machine']['loadavg_start']} end {doc['machine']['loadavg_end']}\n"
        f"{text}\n\n{summary}\n",
        encoding="utf-8",
    )
    plot(  # the quota cases are not plotted: their limit is the quota's rate, not C / L
        records,
        args.latency_ms,
        out / "bench.png",
        title=f"flink-llm bench, L = {args.latency_ms:g} ms, parallelism 1 (load {load_start[0]:.1f})",
    )
    print(text)
    print(summary)
    print(
        f"wrote {out / 'bench.json'}, {out / 'bench.png'}, {out / 'bench.txt'} "
        f"in {doc['total_wall_s']:.0f} s",
        file=sys.stderr,
    )
    return 0 if all(r["ok"] for r in records) else 1

"""``flink-llm demo``: the sample Table job end to end in a local mini-cluster, with a summary.

Starts the simulator (100 ms latency, 2 % of requests answered 503 so retries show), runs
``jobs/reviews_table_job.py`` over the bundled reviews (sentiment with ``ai_complete``, a topic
with ``ai_classify``, typed details with ``ai_extract``, a templated summary and an embedding)
into JSON files, then prints a few result rows, rows/s, the
retries and failures and the spend (tokens billed, and their cost at ``--prices``), and stops
what it started. ``--endpoint`` runs against a real endpoint
instead (the key comes from ``OPENAI_API_KEY_FILE`` / ``OPENAI_API_KEY``, never a flag).

The job and its data live in the source checkout's ``jobs/`` directory, beside this package.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from flink_llm_udf.tools import PACKAGE_PARENT

JOBS_DIR = PACKAGE_PARENT / "jobs"
TABLE_JOB = JOBS_DIR / "reviews_table_job.py"
LOG_DIR = Path(tempfile.gettempdir()) / "flink-llm-demo-logs"
DEFAULT_PRICES = "gpt-4o-mini=0.15/0.60;gpt-4o=2.50/10.00;text-embedding-3-small=0.02;*=1/2"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flink-llm demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint", default=None, help="OpenAI-compatible base URL (default: a simulator on loopback)"
    )
    parser.add_argument("--model", default=None, help="chat model (default: the job's default)")
    parser.add_argument(
        "--embedding-model", default=None, help="embedding model (default: the job's default)"
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=64, help="requests in flight per function (default: 64)"
    )
    parser.add_argument(
        "--error-handling",
        default="RETRY",
        type=str.upper,
        choices=("RETRY", "FAILOVER", "IGNORE"),
        help="per-row error handling (default: RETRY)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first LIMIT reviews (default: all 200)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="simulator latency per request (default: 100)"
    )
    parser.add_argument(
        "--quota-rpm",
        type=int,
        default=None,
        help="give the simulator a hosted API's quota of this many requests per minute, and the job "
        "the same limit (its functions share it): shows the quota gate at work (default: none)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.02,
        help="share of simulator requests answered 503 (default: 0.02)",
    )
    parser.add_argument(
        "--prices",
        default=DEFAULT_PRICES,
        help="prices per million prompt/completion tokens per model, given to the job so rows "
        f"and metrics carry their cost (ai.prices syntax; default: {DEFAULT_PRICES!r})",
    )
    parser.add_argument("--sample", type=int, default=3, help="result rows to show (default: 3)")
    parser.add_argument(
        "--output",
        default=None,
        help="keep the job's JSON output in this new directory (default: a temporary one)",
    )
    return parser


def load_table_job() -> ModuleType:
    """Import ``jobs/reviews_table_job.py`` from the source checkout."""
    if not TABLE_JOB.is_file():
        raise FileNotFoundError(
            f"{TABLE_JOB} not found: the demo runs the sample job from a source checkout of "
            "flink-llm-udf (git clone, then `pip install -e .`)"
        )
    spec = importlib.util.spec_from_file_location("reviews_table_job", TABLE_JOB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def read_rows(directory: Path) -> list[dict[str, Any]]:
    """Every row of a filesystem JSON sink (committed part files only), sorted by id."""
    rows: list[dict[str, Any]] = []
    for part in sorted(directory.rglob("*")):
        if part.is_file() and not part.name.startswith((".", "_")):
            with part.open(encoding="utf-8") as handle:
                rows.extend(json.loads(line) for line in handle if line.strip())
    return sorted(rows, key=lambda row: row["id"])


def _short(text: Any, width: int) -> str:
    shown = "NULL" if text is None else str(text).replace("\n", " ")
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def summarize(
    rows: list[dict[str, Any]],
    job_seconds: float,
    stats: dict[str, Any] | None,
    sample: int,
) -> list[str]:
    """The report lines: sample rows, rows/s, retries and failures."""
    lines = [f"sample of {min(sample, len(rows))} of {len(rows)} rows:"]
    for row in rows[:sample]:
        embedding = row.get("embedding")
        dims = "NULL" if embedding is None else f"{len(embedding)} floats"
        lines.append(
            f"  id={row['id']:<4} review={_short(row['review'], 44)!s:<44} "
            f"sentiment={_short(row['sentiment'], 50)}  embedding={dims}"
        )
    lines.append(
        f"rows/s: {len(rows) / job_seconds:.1f} end to end "
        f"({len(rows)} rows in {job_seconds:.1f} s, Flink start-up included)"
    )
    if stats is not None:
        times = sorted(r["time"] for r in stats.get("requests", []))
        if len(times) > 1:
            span = times[-1] - times[0]
            lines.append(
                f"        {len(rows) / max(span, 1e-3):.1f} while calling the endpoint "
                f"({stats['requests_total']} requests in {span:.2f} s, first to last)"
            )
        faults = sum(stats.get("faults", {}).values())
        lines.append(
            f"retries: {faults} (requests the simulator failed on purpose: "
            f"{stats.get('faults', {}) or 'none'}; each one was retried)"
        )
        lines += quota_lines(stats)
    else:
        lines.append("retries: not visible from here (see the flink_llm metrics of the job)")
    failed = [
        row["id"]
        for row in rows
        if row["review"] is not None and (row["sentiment"] is None or row["embedding"] is None)
    ]
    lines.append(
        f"failures: {len(failed)} rows without an answer" + (f" (ids {failed[:10]})" if failed else "")
    )
    return lines


def spend_lines(metrics: list[Any], prices: str, stats: dict[str, Any] | None = None) -> list[str]:
    """The job's spend as its functions counted it (the metrics every subtask reports, summed):
    tokens billed, their cost at ``prices``, rows answered from the cache or a shared request;
    beside it what the simulator billed, when it is the endpoint."""
    total = {name: sum(m.value(name) for m in metrics) for name in _SPEND_METRICS}
    prompt, completion = int(total["promptTokens"]), int(total["completionTokens"])
    answered = int(total["rowsSucceeded"])
    cost = total["costMicros"] / 1e6
    lines = [
        f"spend: {prompt:,} prompt + {completion:,} completion tokens; cost ${cost:.4f} at prices "
        f"{prices!r}; {int(total['rowsCached']):,} of {answered:,} answers without a request of "
        f"their own (per row: ai_complete_result's cost; per subtask: the costMicros metric)"
    ]
    usage = (stats or {}).get("usage")
    if usage:
        lines.append(
            f"       the simulator billed {int(usage['prompt_tokens']):,} prompt + "
            f"{int(usage['completion_tokens']):,} completion tokens in {int(usage['replies']):,} replies"
        )
    return lines


_SPEND_METRICS = ("promptTokens", "completionTokens", "costMicros", "rowsCached", "rowsSucceeded")


def quota_lines(stats: dict[str, Any]) -> list[str]:
    """What the quota did, when the simulator enforced one: 429s and the rate held."""
    if not stats.get("quota_keys"):  # the simulator enforced no quota
        return []
    limited = int(stats.get("rate_limited_requests", 0)) + int(stats.get("rate_limited_tokens", 0))
    total = int(stats.get("requests_total", 0))
    admitted = sum(key.get("requests", 0) for key in (stats.get("quota_keys") or {}).values())
    return [
        f"quota: {limited} of {total} requests answered 429 ({limited / max(total, 1):.1%}); "
        f"{admitted} admitted within the quota (the job's quota gate paces the requests, pauses "
        "on a 429 and halves the requests in flight; see the flink_llm metrics rateLimited, "
        "throttledMs and concurrencyLimit)"
    ]


def check_against_simulator(rows: list[dict[str, Any]]) -> str:
    """One line saying whether every answer is the simulator's answer to that row's own text."""
    from ..simulator import expected_chat_reply

    wrong = [
        row["id"]
        for row in rows
        if row["review"] is not None
        and row["sentiment"] is not None
        and row["sentiment"] != expected_chat_reply([{"role": "user", "content": row["review"]}])
    ]
    if wrong:
        return f"check: {len(wrong)} answers do not match their own review (ids {wrong[:10]})"
    return f"check: every answer matches its own review ({len(rows)} rows)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .._spend import PriceTable

        PriceTable.parse(args.prices)
    except ValueError as exc:
        print(f"flink-llm demo: --prices: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("FLINK_LOG_DIR", str(LOG_DIR))  # else logs go into site-packages
    Path(os.environ["FLINK_LOG_DIR"]).mkdir(parents=True, exist_ok=True)
    try:
        job = load_table_job()
    except FileNotFoundError as exc:
        print(f"flink-llm demo: {exc}", file=sys.stderr)
        return 2

    job_argv = ["--max-concurrency", str(args.max_concurrency), "--error-handling", args.error_handling]
    job_argv += ["--prices", args.prices]
    from flink_llm_udf.flink import _gauges

    opened: list[Any] = []  # the workers run in this process: their metrics, to total the spend
    _gauges.opened = opened
    if args.quota_rpm is not None and not args.endpoint:
        share = args.quota_rpm / job.CALLING_FUNCTIONS  # each function applies its limit on its own
        job_argv += ["--requests-per-minute", str(share)]
    for flag, value in (
        ("--model", args.model),
        ("--embedding-model", args.embedding_model),
        ("--limit", args.limit),
    ):
        if value is not None:
            job_argv += [flag, str(value)]

    if args.output and Path(args.output).exists() and any(Path(args.output).iterdir()):
        print(f"flink-llm demo: --output {args.output} is not empty; give a new directory", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flink-llm-demo-") as scratch:
        output = Path(args.output) if args.output else Path(scratch) / "out"
        job_args = job.build_parser().parse_args([*job_argv, "--output", str(output)])
        if args.endpoint:
            print(f"running the reviews job against {args.endpoint} ...", flush=True)
            run = job.run(job_args, args.endpoint)
            stats = None
        else:
            from ..simulator import SimulatorProcess

            with SimulatorProcess(
                latency_ms=args.latency_ms,
                fault_503=args.fault_rate,
                record_requests=True,
                seed=7,
                quota_rpm=args.quota_rpm,
            ) as simulator:
                print(
                    f"simulator at {simulator.base_url} ({args.latency_ms:g} ms latency, "
                    f"{args.fault_rate:.0%} of requests answered 503)",
                    flush=True,
                )
                print("running the reviews job in a local mini-cluster ...", flush=True)
                run = job.run(job_args, simulator.base_url)
                stats = simulator.stats(include_requests=True)
        rows = read_rows(output)

    for line in summarize(rows, run.seconds, stats, args.sample):
        print(line)
    for line in spend_lines(opened, args.prices, stats):
        print(line)
    if stats is not None:
        print(check_against_simulator(rows))
    print(
        f"done in {time.monotonic() - started:.1f} s (job {run.job_id}); "
        f"Flink logs in {os.environ['FLINK_LOG_DIR']}"
    )
    return 0 if len(rows) == run.rows_in else 1


if __name__ == "__main__":
    sys.exit(main())

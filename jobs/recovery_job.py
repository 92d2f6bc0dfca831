"""Exactly-once LLM job for fault-recovery tests: checkpointed, restartable, replayable.

A bounded ``NumberSequenceSource`` (1..``--rows``, replayed from its checkpointed position
after a failure) is mapped to distinct texts ``recovery row <id> ...``; each text goes through
``LLMAsyncFunction`` (Flink async I/O, unordered) and each answer is written as one JSON line
``{"id", "input", "value", "error", "status", "attempts"}`` by an exactly-once ``FileSink``
(row format, a new part file per checkpoint, committed when that checkpoint completes). Checkpoints every
``--checkpoint-interval-ms`` in EXACTLY_ONCE mode; restarts with a fixed delay.

Kill a TaskManager while it runs, and the sink still holds every id exactly once with its own
answer (``tests/cluster/test_cluster_e2e.py`` does that on the standalone cluster)::

    flink run -m 127.0.0.1:8081 -d -py jobs/recovery_job.py -- \\
        --endpoint http://127.0.0.1:8000/v1 --rows 2000 --output /tmp/recovery-out \\
        --api-key-file /run/secrets/openai

Paying once: ``--cache redis://127.0.0.1:6379/0`` (``EngineSettings.cache``, the ``ai.cache``
job parameter of SQL jobs) keeps each answer in Redis, so the rows Flink replays after a restore
are answered from there instead of being requested and billed again
(``tests/cluster/test_cluster_cache_recovery.py``).

API key: ``--api-key-file`` names a file the Python workers read at open (the
``api-key-file`` extra option; only the path travels with the job); without it the workers use
``OPENAI_API_KEY_FILE`` / ``OPENAI_API_KEY`` from their own environment. Never the key itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

JOBS_DIR = Path(__file__).resolve().parent
try:
    import flink_llm_udf  # noqa: F401
except ImportError:  # a source checkout that is not pip-installed: the package sits beside jobs/
    sys.path.insert(0, str(JOBS_DIR.parent))

JOB_NAME = "flink-llm recovery (exactly-once)"


def row_text(row_id: int) -> str:
    """The distinct input text of row ``row_id`` (tests compute expected answers from it)."""
    return f"recovery row {row_id}: is this product worth its price?"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="OpenAI-compatible base URL")
    parser.add_argument("--output", required=True, help="directory (or URI) of the file sink")
    parser.add_argument("--rows", type=int, default=2000, help="rows 1..ROWS (default 2000)")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument(
        "--max-concurrency", type=int, default=16, help="requests in flight per subtask (default 16)"
    )
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=1000)
    parser.add_argument("--restart-attempts", type=int, default=5)
    parser.add_argument("--restart-delay-ms", type=int, default=1000)
    parser.add_argument(
        "--bundle-size",
        type=int,
        default=None,
        help="python.fn-execution.bundle.size (default 4 x max-concurrency): a "
        "checkpoint barrier waits for the bundle in flight, so small bundles "
        "let checkpoints complete while the job runs",
    )
    parser.add_argument(
        "--retry-backoff", default="200ms", help="delay before each retry of a failed request (default 200ms)"
    )
    parser.add_argument(
        "--api-key-file",
        default=None,
        help="file holding the API key, read by the workers (a path, never the key)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="result cache (EngineSettings.cache): a redis:// URL every attempt of the job shares, "
        "so rows replayed after a restore are not requested again (default: none)",
    )
    parser.add_argument("--name", default=JOB_NAME, help="job name")
    return parser


def to_json(row) -> str:
    """An ``LLMAsyncFunction`` output Row as the JSON line the tests read."""
    key, text, value, _choice, error, status, attempts = tuple(row)[:7]
    return json.dumps(
        {"id": key, "input": text, "value": value, "error": error, "status": status, "attempts": attempts},
        ensure_ascii=False,
    )


def to_record(row_id: int):
    from pyflink.common import Row

    return Row(int(row_id), row_text(int(row_id)))


def record_text(row):
    return row[1]


def record_key(row):
    return row[0]


def build(args: argparse.Namespace):
    """The StreamExecutionEnvironment with the job defined on it (not executed)."""
    from pyflink.common import Configuration, Types, WatermarkStrategy
    from pyflink.common.serialization import Encoder
    from pyflink.datastream import CheckpointingMode, RuntimeExecutionMode, StreamExecutionEnvironment
    from pyflink.datastream.connectors.file_system import FileSink, OutputFileConfig, RollingPolicy
    from pyflink.datastream.connectors.number_seq import NumberSequenceSource

    from flink_llm_udf import EngineSettings, OpenAICompatProvider
    from flink_llm_udf.flink import LLMAsyncFunction, apply_llm

    config = Configuration()
    config.set_string("restart-strategy.type", "fixed-delay")
    config.set_string("restart-strategy.fixed-delay.attempts", str(args.restart_attempts))
    config.set_string("restart-strategy.fixed-delay.delay", f"{args.restart_delay_ms} ms")
    # A bundle end (and so every checkpoint barrier) waits until the Python worker has answered
    # every row sent to it; with the cluster's 100,000-row bundles the whole input is in flight
    # and no checkpoint completes before the end. Small bundles keep checkpoints ~1 s apart.
    bundle = args.bundle_size or 4 * args.max_concurrency
    config.set_string("python.fn-execution.bundle.size", str(bundle))
    config.set_string("python.fn-execution.bundle.time", "1000")
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
    env.set_parallelism(args.parallelism)
    env.enable_checkpointing(args.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)

    extra = {"api-key-file": args.api_key_file} if args.api_key_file else {}
    provider = OpenAICompatProvider(
        endpoint=args.endpoint, model=args.model, retry_backoff_base_interval=args.retry_backoff, **extra
    )
    settings = EngineSettings(max_concurrency=args.max_concurrency, cache=args.cache)
    function = LLMAsyncFunction(provider, settings, text_of=record_text, key_of=record_key)

    records = env.from_source(
        NumberSequenceSource(1, args.rows), WatermarkStrategy.no_watermarks(), "row ids"
    ).map(to_record, output_type=Types.ROW([Types.LONG(), Types.STRING()]))
    answers = apply_llm(records, function)
    output = args.output if "://" in args.output else Path(args.output).resolve().as_uri()
    # A part file per checkpoint: rows are committed while the job runs, so a restore must
    # neither repeat committed rows nor lose the ones after the checkpoint.
    sink = (
        FileSink.for_row_format(output, Encoder.simple_string_encoder("utf-8"))
        .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
        .with_output_file_config(
            OutputFileConfig.builder().with_part_prefix("answers").with_part_suffix(".jsonl").build()
        )
        .build()
    )
    answers.map(to_json, output_type=Types.STRING()).sink_to(sink).name("answers file sink")
    return env


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = build(args)
    result = env.execute(args.name)
    job_id = getattr(result, "get_job_id", lambda: None)()
    print(f"recovery job {job_id}: {args.rows} rows submitted", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

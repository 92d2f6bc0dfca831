"""Sample DataStream job: each review through ``LLMAsyncFunction`` with ``apply_llm``.

Reads the reviews file (JSON lines, see ``reviews_table_job.py``) with a ``FileSource``, sends
each review to the chat model with Flink's async I/O (unordered by default, ``--ordered`` keeps
the input order), and prints the output records, or writes them as JSON lines under
``--output DIR``. A record carries ``key`` (the review id), ``input``, ``value``, ``choice``,
``error``, ``status``, ``attempts``, ``prompt_tokens`` and ``completion_tokens``; under
``--error-handling IGNORE`` a failed row is a record with ``value`` NULL and ``error`` set.

    python jobs/reviews_datastream_job.py --limit 50 --output /tmp/reviews-ds
    flink run -m 127.0.0.1:8081 -py jobs/reviews_datastream_job.py -pyfs /tmp/flink_llm_udf.zip \\
        -- --ordered --output /tmp/reviews-ds

Options, endpoint, API key and shipping the package to a cluster work as in
``reviews_table_job.py`` (same flags; the key comes from ``OPENAI_API_KEY_FILE`` in the
workers' environment, never from a flag).
"""

from __future__ import annotations

import json
import sys
import time

from reviews_table_job import JobRun, build_parser, count_input_rows, file_uri, providers, run_with_endpoint


def parse_review(line: str):
    """One JSON line -> Row(id, review)."""
    from pyflink.common import Row

    record = json.loads(line)
    return Row(record.get("id"), record.get("review"))


def to_json(row) -> str:
    """An output record as one JSON line with the field names of ``OUTPUT_FIELDS``."""
    from flink_llm_udf.flink import OUTPUT_FIELDS

    return json.dumps(dict(zip(OUTPUT_FIELDS, row, strict=True)), ensure_ascii=False)


def review_text(row):
    return row[1]


def review_key(row):
    return row[0]


def use_this_python_locally(env) -> None:
    """In a local mini-cluster run the Python workers with this interpreter.

    PyFlink's TableEnvironment does this itself; its StreamExecutionEnvironment does not, so a
    local DataStream job otherwise starts ``python`` from PATH, which may lack PyFlink. A
    configured ``python.executable`` and cluster deployments are left alone.
    """
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import get_j_env_configuration, is_local_deployment

    config = get_j_env_configuration(env._j_stream_execution_environment)
    key = get_gateway().jvm.org.apache.flink.python.PythonOptions.PYTHON_EXECUTABLE.key()
    if not config.containsKey(key) and is_local_deployment(config):
        env.set_python_executable(sys.executable)


def run(args, endpoint: str) -> JobRun:
    """Build and run the job against ``endpoint``; return when it has finished."""
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.common.serialization import Encoder
    from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
    from pyflink.datastream.connectors.file_system import FileSink, FileSource, StreamFormat

    from flink_llm_udf import EngineSettings
    from flink_llm_udf.flink import LLMAsyncFunction, apply_llm

    chat, _ = providers(args, endpoint)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
    env.set_parallelism(args.parallelism)
    use_this_python_locally(env)

    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format(), file_uri(args.input)
    ).build()
    reviews = (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "reviews")
        .filter(lambda line: bool(line.strip()))
        .map(parse_review, output_type=Types.ROW([Types.INT(), Types.STRING()]))
    )
    if args.limit is not None:
        limit = int(args.limit)
        reviews = reviews.filter(lambda row: row[0] is not None and row[0] <= limit)

    function = LLMAsyncFunction(
        chat, EngineSettings(max_concurrency=args.max_concurrency), text_of=review_text, key_of=review_key
    )
    answers = apply_llm(reviews, function, ordered=args.ordered)
    lines = answers.map(to_json, output_type=Types.STRING())
    if args.output is None:
        lines.print()
    else:
        lines.sink_to(
            FileSink.for_row_format(file_uri(args.output), Encoder.simple_string_encoder("utf-8")).build()
        )

    started = time.monotonic()
    result = env.execute("flink-llm reviews (DataStream, async I/O)")
    job_id = str(result.get_job_id()) if result is not None else None
    return JobRun(endpoint, count_input_rows(args.input, args.limit), time.monotonic() - started, job_id)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ordered", action="store_true", help="emit results in input order (default: as they complete)"
    )
    args = parser.parse_args(argv)
    run_info = run_with_endpoint(args, run)
    print(
        f"{run_info.rows_in} reviews in {run_info.seconds:.1f} s "
        f"(job {run_info.job_id}, endpoint {run_info.endpoint})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

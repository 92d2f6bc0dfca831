"""Sample Table API / SQL job: sentiment, topic, extracted details, a summary and an embedding for
a stream of product reviews, in one job.

Reads ``jobs/data/reviews.jsonl`` (or ``--input``) with the filesystem connector in streaming
mode and runs::

    SELECT id, review,
           ai_complete(review) AS sentiment,         -- free text, the chat provider's prompt
           classify_topic(review) AS topic,          -- exactly one of TOPIC_LABELS
           extract_details(review) AS details,       -- a typed ROW (DETAILS_FIELDS), validated
           extract_details(review).stars AS stars,   -- one of its fields (the same call)
           summarize(JSON_OBJECT('product' VALUE product, 'review' VALUE review)) AS summary,
           ai_embed(review) AS embedding
    FROM reviews

into the print sink, or into JSON files under ``--output DIR``. Every function has its own
provider (model, prompt, options); ``summarize`` fills SUMMARY_TEMPLATE from two columns.

Local mini-cluster (this process; with no endpoint it starts the simulator on loopback)::

    python jobs/reviews_table_job.py --limit 50 --output /tmp/reviews-out
    OPENAI_API_KEY_FILE=~/.openai-key python jobs/reviews_table_job.py \\
        --endpoint https://api.openai.com/v1 --model gpt-4o-mini

Standalone cluster: the TaskManagers' Python (``python.executable``) needs the package and its
dependencies. Install it there (``pip install flink-llm-udf``), or ship the package as a zip
(``-pyfs`` of the package *directory* does not make it importable) and keep aiohttp/tiktoken
installed there; input and output paths must be visible to the TaskManagers. The client part
runs under ``python`` from PATH unless ``-pyclientexec`` (or ``python.client.executable``) says
otherwise::

    python -c "import shutil; shutil.make_archive('/tmp/flink_llm_udf', 'zip', '.', 'flink_llm_udf')"
    flink run -m 127.0.0.1:8081 -py jobs/reviews_table_job.py -pyfs /tmp/flink_llm_udf.zip \\
        -- --limit 50 --output /tmp/reviews-out

Endpoint: ``--endpoint``, else ``OPENAI_BASE_URL`` of this (client) process, else the job starts
``SimulatorProcess`` (100 ms latency) on 127.0.0.1 itself and stops it at the end; a cluster on
another machine cannot reach that one, so give an endpoint there.

API key: never a flag. The Python workers read ``OPENAI_API_KEY_FILE`` (a file holding the
key) at open. On a cluster prefer the file over ``OPENAI_API_KEY``: Flink writes the Python
worker's environment variables into its logs (client and TaskManager), so a key exported as
an environment variable ends up in ``log/``; a file path there is harmless. Set the variable
in the TaskManagers' environment (e.g. before ``start-cluster.sh``) and put the file on every
TaskManager host.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

JOBS_DIR = Path(__file__).resolve().parent
DEFAULT_INPUT = JOBS_DIR / "data" / "reviews.jsonl"

try:
    import flink_llm_udf  # noqa: F401
except ImportError:  # a source checkout that is not pip-installed: the package sits beside jobs/
    sys.path.insert(0, str(JOBS_DIR.parent))

SYSTEM_PROMPT = (
    "Classify the sentiment of the product review. Answer with one word: positive, negative or neutral."
)
#: ``classify_topic`` asks for one of these labels (as a JSON-schema enum): the answer is one of
#: them or the reply is rejected and asked again.
TOPIC_LABELS = ("quality", "delivery", "price", "service", "other")
TOPIC_PROMPT = "Which topic does this product review mostly talk about?"
#: ``extract_details``'s result ROW: (name, type, description). The descriptions go into the JSON
#: schema sent to the model, so they say what each field should hold.
DETAILS_FIELDS = (
    ("stars", "INT", "the rating the review implies, 1 to 5"),
    ("would_recommend", "BOOLEAN", "whether the reviewer would recommend the product"),
    ("complaints", "ARRAY<STRING>", "each complaint in a few words; empty if none"),
)
#: ``summarize`` makes its prompt from the row's columns; braces inside the data are sent as they are.
SUMMARY_TEMPLATE = "Summarise this review of a {product} in one sentence. {review}"
SUMMARY_MAX_TOKENS = 60
SIMULATOR_LATENCY_MS = 100.0
ERROR_HANDLING = ("RETRY", "FAILOVER", "IGNORE")


@dataclass(frozen=True)
class JobRun:
    """What ``run`` did: the endpoint used, how many rows went in, the wall time of the job."""

    endpoint: str
    rows_in: int
    seconds: float
    job_id: str | None


def build_parser(prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """The options every sample job shares (the DataStream job adds ``--ordered``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint",
        default=None,
        help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL, else a "
        "simulator started on loopback for this run)",
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
        help="chat model (default: $OPENAI_MODEL or gpt-4o-mini)",
    )
    parser.add_argument(
        "--embedding-model",
        default=os.environ.get("OPENAI_EMBEDDING_MODEL", "text-embedding-3-small"),
        help="embedding model (default: $OPENAI_EMBEDDING_MODEL or text-embedding-3-small)",
    )
    parser.add_argument(
        "--summary-model",
        default=os.environ.get("OPENAI_SUMMARY_MODEL", "gpt-4o"),
        help="chat model of the summaries (default: $OPENAI_SUMMARY_MODEL or gpt-4o)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=64,
        help="requests in flight per subtask and function (default: 64)",
    )
    parser.add_argument("--parallelism", type=int, default=1, help="job parallelism (default: 1)")
    parser.add_argument(
        "--requests-per-minute",
        type=float,
        default=None,
        help="the endpoint's requests-per-minute quota for this job, per function (default: none)",
    )
    parser.add_argument(
        "--prices",
        default=None,
        help="prices per million prompt/completion tokens per model, so rows and metrics carry "
        "their cost (ai.prices syntax: 'gpt-4o-mini=0.15/0.60;*=1/2'; default: none)",
    )
    parser.add_argument(
        "--error-handling",
        choices=ERROR_HANDLING,
        default="RETRY",
        type=str.upper,
        help="per-row error handling (default: RETRY, then fail the job)",
    )
    parser.add_argument(
        "--output", default=None, help="write JSON lines under this directory instead of printing"
    )
    parser.add_argument(
        "--input",
        default=str(DEFAULT_INPUT),
        help="reviews as JSON lines {id, product, rating, review} (default: the bundled file)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="only reviews with id <= LIMIT (the bundled ids are 1..200)"
    )
    return parser


def file_uri(path: str) -> str:
    """An absolute URI for the filesystem connector; URIs (s3://, hdfs://, file://) pass through."""
    if "://" in path:
        return path
    return Path(path).expanduser().resolve().as_uri()


def count_input_rows(path: str, limit: int | None) -> int:
    """Reviews the job will read (local files only; -1 when the input is not a local file)."""
    if "://" in path and not path.startswith("file://"):
        return -1
    local = Path(path.removeprefix("file://")).expanduser()
    with local.open(encoding="utf-8") as handle:
        ids = [json.loads(line).get("id") for line in handle if line.strip()]
    return sum(1 for i in ids if limit is None or (i is not None and i <= limit))


#: Functions of the job that call the endpoint (sentiment, topic, details, summary, embedding):
#: each applies ``--requests-per-minute`` on its own.
CALLING_FUNCTIONS = 5


def providers(args: argparse.Namespace, endpoint: str):
    """The chat and embedding providers; the API key is left to the workers' environment."""
    from flink_llm_udf import OpenAICompatProvider

    common = dict(endpoint=endpoint, error_handling_strategy=args.error_handling)
    chat = OpenAICompatProvider(model=args.model, system_prompt=SYSTEM_PROMPT, **common)
    embed = OpenAICompatProvider(model=args.embedding_model, task="embeddings", **common)
    return chat, embed


def task_providers(args: argparse.Namespace, endpoint: str):
    """The topic, details and summary providers: each function its own model, prompt and options."""
    from flink_llm_udf import OpenAICompatProvider

    common = dict(endpoint=endpoint, error_handling_strategy=args.error_handling)
    topic = OpenAICompatProvider(model=args.model, system_prompt=TOPIC_PROMPT, temperature=0.0, **common)
    details = OpenAICompatProvider(model=args.model, temperature=0.0, **common)
    summary = OpenAICompatProvider(model=args.summary_model, max_tokens=SUMMARY_MAX_TOKENS, **common)
    return topic, details, summary


def details_type():
    """``extract_details``'s result type: a ROW of ``DETAILS_FIELDS``, descriptions included."""
    from pyflink.table import DataTypes

    types = {
        "INT": DataTypes.INT(),
        "BOOLEAN": DataTypes.BOOLEAN(),
        "ARRAY<STRING>": DataTypes.ARRAY(DataTypes.STRING()),
    }
    return DataTypes.ROW([DataTypes.FIELD(name, types[kind], about) for name, kind, about in DETAILS_FIELDS])


def create_table_env(args: argparse.Namespace):
    """A streaming TableEnvironment with the settings LLM UDFs want."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from flink_llm_udf.flink import apply_recommended_settings

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    config.set("parallelism.default", str(args.parallelism))
    config.set("pipeline.name", "flink-llm reviews (Table API)")
    apply_recommended_settings(t_env, args.max_concurrency)
    return t_env


def source_ddl(input_path: str) -> str:
    return f"""
        CREATE TEMPORARY TABLE reviews (
            id INT, product STRING, rating INT, review STRING
        ) WITH (
            'connector' = 'filesystem',
            'path' = '{file_uri(input_path)}',
            'format' = 'json'
        )"""


def sink_ddl(output: str | None) -> str:
    details = ", ".join(f"{name} {kind}" for name, kind, _ in DETAILS_FIELDS)
    columns = (
        f"id INT, review STRING, sentiment STRING, topic STRING, details ROW<{details}>, stars INT, "
        "summary STRING, embedding ARRAY<FLOAT>"
    )
    if output is None:
        return f"CREATE TEMPORARY TABLE reviews_out ({columns}) WITH ('connector' = 'print')"
    return f"""
        CREATE TEMPORARY TABLE reviews_out ({columns}) WITH (
            'connector' = 'filesystem',
            'path' = '{file_uri(output)}',
            'format' = 'json'
        )"""


def run(args: argparse.Namespace, endpoint: str) -> JobRun:
    """Build and run the job against ``endpoint``; return when it has finished."""
    import dataclasses

    from flink_llm_udf import EngineSettings
    from flink_llm_udf.flink import ai_classify_udf, ai_complete_udf, ai_embed_udf, ai_extract_udf

    chat, embed = providers(args, endpoint)
    topic, details, summary = task_providers(args, endpoint)
    settings = EngineSettings(
        max_concurrency=args.max_concurrency,
        requests_per_minute=getattr(args, "requests_per_minute", None),
        prices=getattr(args, "prices", None),
    )
    t_env = create_table_env(args)
    # Each function is registered under the name the query uses, with its own provider.
    t_env.create_temporary_system_function("ai_complete", ai_complete_udf(chat, settings))
    t_env.create_temporary_system_function(
        "classify_topic", ai_classify_udf(topic, settings, labels=TOPIC_LABELS)
    )
    # Async: one call per row serves both `details` and `details.stars` below.
    t_env.create_temporary_system_function(
        "extract_details", ai_extract_udf(details, details_type(), settings)
    )
    # A prompt template is an engine setting: its {fields} come from the JSON_OBJECT of each row.
    summary_settings = dataclasses.replace(settings, prompt_template=SUMMARY_TEMPLATE)
    t_env.create_temporary_system_function("summarize", ai_complete_udf(summary, summary_settings))
    t_env.create_temporary_system_function("ai_embed", ai_embed_udf(embed, settings))
    t_env.execute_sql(source_ddl(args.input))
    t_env.execute_sql(sink_ddl(args.output))
    where = "" if args.limit is None else f"WHERE id <= {int(args.limit)}"
    started = time.monotonic()
    result = t_env.execute_sql(f"""
        INSERT INTO reviews_out
        SELECT id, review,
               ai_complete(review) AS sentiment,
               classify_topic(review) AS topic,
               extract_details(review) AS details,
               extract_details(review).stars AS stars,
               summarize(JSON_OBJECT('product' VALUE product, 'review' VALUE review)) AS summary,
               ai_embed(review) AS embedding
        FROM reviews {where}""")
    client = result.get_job_client()
    job_id = None if client is None else str(client.get_job_id())
    result.wait()
    return JobRun(endpoint, count_input_rows(args.input, args.limit), time.monotonic() - started, job_id)


def run_with_endpoint(args: argparse.Namespace, job) -> JobRun:
    """Run ``job(args, endpoint)``, starting a loopback simulator when no endpoint is configured."""
    endpoint = args.endpoint or os.environ.get("OPENAI_BASE_URL")
    if endpoint:
        return job(args, endpoint)
    from flink_llm_udf.simulator import SimulatorProcess

    with SimulatorProcess(latency_ms=SIMULATOR_LATENCY_MS) as simulator:
        print(
            f"no --endpoint or OPENAI_BASE_URL: using the simulator at {simulator.base_url}", file=sys.stderr
        )
        return job(args, simulator.base_url)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_info = run_with_endpoint(args, run)
    print(
        f"{run_info.rows_in} reviews in {run_info.seconds:.1f} s "
        f"(job {run_info.job_id}, endpoint {run_info.endpoint})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

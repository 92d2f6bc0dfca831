"""The sample jobs in ``jobs/`` and ``flink-llm demo``, run for real in a local mini-cluster.

Every output row is checked against the simulator's answer to that row's own text, so a job
that mixes rows up (FLINK-39532-style) fails here. Each Flink job costs ~10-20 s on a 2-core
machine, so each entry point runs once, on a small input.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.flink_jobs import answer, assert_table_rows, chat_bodies, user_text

from flink_llm_udf.simulator import SimulatorProcess, count_words, expected_prompt_tokens, stable_hash
from flink_llm_udf.tools.cluster import clean_environ

ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = ROOT / "jobs"
REVIEWS = JOBS_DIR / "data" / "reviews.jsonl"
NULL_REVIEW_ID = 17

if str(JOBS_DIR) not in sys.path:
    sys.path.insert(0, str(JOBS_DIR))


def bundled_reviews(limit: int | None = None) -> dict[int, str | None]:
    rows = [json.loads(line) for line in REVIEWS.read_text(encoding="utf-8").splitlines()]
    return {row["id"]: row["review"] for row in rows if limit is None or row["id"] <= limit}


def bundled_products() -> dict[int, str]:
    rows = [json.loads(line) for line in REVIEWS.read_text(encoding="utf-8").splitlines()]
    return {row["id"]: row["product"] for row in rows}


def predicted_details(text: str) -> dict[str, Any]:
    """The simulator's reply to the jobs' details schema (rules: ``simulator._structured_replies``)."""
    item = [hashlib.sha256(f"{text}|$.complaints[{i}]".encode()).hexdigest()[:8] for i in (0, 1)]
    return {
        "stars": stable_hash(text, "$.stars") % 100,
        "would_recommend": stable_hash(text, "$.would_recommend") % 2 == 1,
        "complaints": [f"value-{digest}" for digest in item],
    }


def summary_prompt(product: str, text: str) -> str:
    import reviews_table_job

    assert (
        reviews_table_job.SUMMARY_TEMPLATE == "Summarise this review of a {product} in one sentence. {review}"
    )
    return "Summarise this review of a " + product + " in one sentence. " + text


def assert_task_columns(rows: list[dict[str, Any]], reviews: dict[int, str | None], *, sql: bool) -> None:
    """The topic, details and summary of each row are the simulator's answers to its own review
    (``assert_table_rows`` checks id, review, sentiment and embedding)."""
    import reviews_table_job

    labels, products = reviews_table_job.TOPIC_LABELS, bundled_products()
    for row in rows:
        text = reviews[row["id"]]
        if text is None:  # no request; the template's NULL field makes the summary NULL too
            assert (row["topic"], row["stars"], row["summary"]) == (None, None, None), row
            continue
        details = predicted_details(text)
        assert row["topic"] == labels[stable_hash(text, "$.label") % len(labels)], row
        assert row["stars"] == details["stars"], row
        if sql:  # JSON_VALUE / JSON_QUERY columns
            assert row["would_recommend"] is details["would_recommend"], row
            assert json.loads(row["complaints"]) == details["complaints"], row
        else:  # the typed ROW, as the JSON sink writes it
            assert row["details"] == details, row
        expected = answer(
            summary_prompt(products[row["id"]], text), max_tokens=reviews_table_job.SUMMARY_MAX_TOKENS
        )
        assert row["summary"] == expected, row


def read_json_lines(directory: Path) -> list[dict[str, Any]]:
    """Rows of a filesystem/FileSink output: committed part files only (in-progress start with '.')."""
    rows = []
    for part in sorted(directory.rglob("*")):
        if part.is_file() and not part.name.startswith((".", "_")):
            rows += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line]
    return rows


@pytest.fixture(scope="module", autouse=True)
def flink_log_dir(tmp_path_factory: pytest.TempPathFactory):
    """Flink logs in a temp dir (else they land in site-packages), for this module's jobs."""
    log_dir = tmp_path_factory.mktemp("flink-log")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLINK_LOG_DIR", str(log_dir))
        patch.delenv("OPENAI_BASE_URL", raising=False)
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.delenv("OPENAI_API_KEY_FILE", raising=False)
        yield log_dir


@pytest.fixture(scope="module")
def simulator():
    with SimulatorProcess(latency_ms=20, record_requests=True) as sim:
        yield sim


@pytest.mark.flink
def test_table_job_script_starts_its_own_simulator(tmp_path: Path, flink_log_dir: Path) -> None:
    """``python jobs/reviews_table_job.py`` from another directory, no endpoint: simulator started."""
    out = tmp_path / "out"
    # A local PyFlink run in this process leaves gateway variables behind; the job finds the package itself.
    env = {k: v for k, v in clean_environ().items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(JOBS_DIR / "reviews_table_job.py"), "--limit", "50", "--output", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using the simulator at http://127.0.0.1:" in proc.stderr
    assert re.search(r"^50 reviews in [\d.]+ s", proc.stderr, re.MULTILINE), proc.stderr[-2000:]
    rows = read_json_lines(out)
    assert_table_rows(rows, bundled_reviews(50))
    assert_task_columns(rows, bundled_reviews(50), sql=False)


@pytest.mark.flink
def test_datastream_job_rows_and_attempts(simulator: SimulatorProcess, tmp_path: Path) -> None:
    """Async I/O job: each record carries its own review's answer; retries show in ``attempts``."""
    import reviews_datastream_job
    import reviews_table_job

    simulator.reset()
    simulator.update(fault_503=0.1, seed=3)
    try:
        out = tmp_path / "out"
        code = reviews_datastream_job.main(
            [
                "--endpoint",
                simulator.base_url,
                "--limit",
                "50",
                "--output",
                str(out),
                "--max-concurrency",
                "16",
                "--model",
                "m",
            ]
        )
        stats = simulator.stats()
    finally:
        simulator.update(fault_503=0.0)
    assert code == 0
    reviews = bundled_reviews(50)
    records = read_json_lines(out)
    assert sorted(int(r["key"]) for r in records) == sorted(reviews)
    system_prompt = reviews_table_job.SYSTEM_PROMPT
    for record in records:
        text = reviews[int(record["key"])]
        assert record["input"] == text
        assert record["choice"] == 0 and record["error"] is None, record
        if text is None:
            assert record["value"] is None and record["attempts"] == 0, record
            continue
        reply = answer(text)
        assert record["value"] == reply, record
        assert record["status"] == 200 and record["attempts"] >= 1, record
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": text}]
        assert record["prompt_tokens"] == expected_prompt_tokens(messages)
        assert record["completion_tokens"] == count_words(reply)
    faults = stats["faults"].get("fault_503", 0)
    assert faults > 0, stats  # seeded: some rows were retried
    assert sum(r["attempts"] for r in records) == stats["requests_total"] == len(reviews) - 1 + faults


def sql_statements(script: str) -> list[str]:
    """Statements of our own .sql file: drop ``--`` comment lines, split at ``;``."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


SET = re.compile(r"^SET\s+'([^']+)'\s*=\s*'([^']*)'$", re.IGNORECASE | re.DOTALL)


def test_sql_script_sets_the_recommended_settings() -> None:
    from flink_llm_udf.flink import recommended_settings

    sets = dict(
        m.groups() for s in sql_statements((JOBS_DIR / "reviews.sql").read_text()) if (m := SET.match(s))
    )
    for key, value in recommended_settings(64).items():
        assert sets.get(key) == value, key
    assert "ai.max-concurrency:64" in sets["pipeline.global-job-parameters"]


def test_sql_script_and_table_job_ask_the_same_questions() -> None:
    """The SQL job's labels, prompts and details type are the table job's (one set of answers)."""
    import reviews_table_job as job

    script = (JOBS_DIR / "reviews.sql").read_text(encoding="utf-8")
    parameters = dict(m.groups() for s in sql_statements(script) if (m := SET.match(s)))[
        "pipeline.global-job-parameters"
    ]
    assert f"'{','.join(job.TOPIC_LABELS)}'" in script
    assert f'ai.classify.system-prompt:"{job.TOPIC_PROMPT}"' in parameters
    assert f'ai.summarize.prompt-template:"{job.SUMMARY_TEMPLATE}"' in parameters
    assert f"ai.summarize.max-tokens:{job.SUMMARY_MAX_TOKENS}" in parameters
    details = ", ".join(f"{name} {kind}" for name, kind, _ in job.DETAILS_FIELDS)
    assert f"'ROW<{details}>'" in script


@pytest.mark.flink
def test_sql_script(simulator: SimulatorProcess, tmp_path: Path) -> None:
    """``jobs/reviews.sql`` statement by statement through a TableEnvironment (SET -> config)."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    script = (JOBS_DIR / "reviews.sql").read_text(encoding="utf-8")
    out = tmp_path / "out"
    for placeholder, actual in (
        ("'jobs/data/reviews.jsonl'", f"'{REVIEWS}'"),
        ("'out/reviews-sql'", f"'{out}'"),
        ('"http://127.0.0.1:8000/v1"', f'"{simulator.base_url}"'),
    ):
        assert placeholder in script, placeholder
        script = script.replace(placeholder, actual)

    simulator.reset()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    for statement in sql_statements(script):
        if match := SET.match(statement):
            t_env.get_config().set(*match.groups())
        else:
            result = t_env.execute_sql(statement)
            if statement.upper().startswith("INSERT"):
                result.wait()

    reviews = bundled_reviews()
    rows = read_json_lines(out)
    assert_table_rows(rows, reviews)
    assert_task_columns(rows, reviews, sql=True)
    stats = simulator.stats(include_requests=True)
    non_null = sum(text is not None for text in reviews.values())
    # sentiment, topic, details and summary: four chat requests a review (one each, the details
    # read three times by JSON_VALUE/JSON_QUERY included), and its embedding
    assert stats["by_path"] == {"/v1/chat/completions": 4 * non_null, "/v1/embeddings": non_null}
    assert_sql_functions_sent_their_own_options(chat_bodies(stats["requests"]), reviews)


def assert_sql_functions_sent_their_own_options(
    bodies: list[dict[str, Any]], reviews: dict[int, str | None]
) -> None:
    """Each of the SQL job's chat functions sent each review once, with its own options only."""
    import reviews_table_job

    products = bundled_products()
    texts = {text: i for i, text in reviews.items() if text is not None}
    kinds: collections.Counter[tuple[str, str]] = collections.Counter()
    for body in bodies:
        response_format = body.get("response_format") or {}
        name = response_format.get("json_schema", {}).get("name")
        kind = {"label": "topic", "row": "details"}.get(
            name, "summary" if body["model"] == "gpt-4o" else "sentiment"
        )
        text = user_text(body)
        if kind == "summary":
            assert body["max_tokens"] == reviews_table_job.SUMMARY_MAX_TOKENS, body
            matches = [t for t, i in texts.items() if summary_prompt(products[i], t) == text]
            assert len(matches) == 1, body  # the template filled in with the row's own columns
            text = matches[0]
        else:
            assert body["model"] == "gpt-4o-mini" and "max_tokens" not in body, body
        if kind == "topic":
            assert (
                body["temperature"] == 0 and body["messages"][0]["content"] == reviews_table_job.TOPIC_PROMPT
            )
            enum = response_format["json_schema"]["schema"]["properties"]["label"]["enum"]
            assert enum == list(reviews_table_job.TOPIC_LABELS), body
        else:
            assert "temperature" not in body, body
        kinds[(kind, text)] += 1
    assert kinds == {
        (kind, text): 1 for kind in ("sentiment", "topic", "details", "summary") for text in texts
    }


@pytest.mark.flink
def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from flink_llm_udf.tools import demo

    code = demo.main(["--limit", "60", "--latency-ms", "20", "--fault-rate", "0.05", "--sample", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "sample of 2 of 60 rows:" in printed
    assert printed.count("  id=") == 2
    assert re.search(r"^rows/s: [\d.]+ end to end \(60 rows in", printed, re.MULTILINE), printed
    retries = re.search(r"^retries: (\d+) ", printed, re.MULTILINE)
    assert retries and int(retries.group(1)) > 0, printed
    assert "failures: 0 rows without an answer" in printed
    assert "check: every answer matches its own review (60 rows)" in printed
    spend = re.search(
        r"^spend: ([\d,]+) prompt \+ ([\d,]+) completion tokens; cost \$([\d.]+) at prices",
        printed,
        re.MULTILINE,
    )
    billed = re.search(r"the simulator billed ([\d,]+) prompt \+ ([\d,]+) completion tokens", printed)
    assert spend and billed, printed
    # the job's own accounting (its metrics, summed over subtasks) is what the endpoint billed
    assert spend.group(1, 2) == billed.group(1, 2), printed
    assert float(spend.group(3)) > 0, printed

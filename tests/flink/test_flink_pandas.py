"""Pandas UDFs (ai_complete, ai_complete_result, ai_embed) in real Flink jobs.

One job per parallelism runs every Pandas function of ``register_functions`` (configured only by
job parameters) over the same rows, so each check costs no extra mini-cluster start.
"""

from __future__ import annotations

import re

import pytest
from helpers.flink_jobs import (
    IGNORE_BEAM_HANGUP,
    answer,
    chat_bodies,
    chat_calls,
    collect,
    embedding_calls,
    failure_text,
    is_failure_text,
    recorded,
    row_text,
    sequence_table,
    table_env,
    text_sql,
)

from flink_llm_udf.flink import register_functions
from flink_llm_udf.simulator import expected_embedding

pytestmark = [pytest.mark.flink, IGNORE_BEAM_HANGUP]

MAX_CONCURRENCY = 4


@pytest.mark.parametrize("parallelism", [1, 2])
def test_pandas_udfs_answer_every_row_with_its_own_reply(sim, parallelism: int) -> None:
    rows = 200
    t_env = table_env(
        parallelism,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": "sim-a",
            "ai.max-tokens": 50,
            "ai.system-prompt": "Be terse.",
            "ai.max-concurrency": MAX_CONCURRENCY,
            "ai.error-handling-strategy": "IGNORE",
            "ai.embed.model": "emb-model",
        },
    )
    register_functions(t_env)
    sequence_table(t_env, "seq", rows)
    model_sql = (
        "CASE WHEN id % 3 = 0 THEN CAST(NULL AS STRING) ELSE CONCAT('col-', CAST(id % 3 AS STRING)) END"
    )
    out = collect(
        t_env.sql_query(f"""
        SELECT id, txt, m, ai_complete(txt), ai_complete(txt, 'other-model'), ai_complete(txt, m),
               r.`value`, r.error, r.status, r.attempts, r.prompt_tokens, r.completion_tokens,
               ai_embed(txt)
        FROM (SELECT id, txt, m, ai_complete_result(txt) AS r
              FROM (SELECT id, {text_sql(with_failures=True)} AS txt, {model_sql} AS m FROM seq))""")
    )

    assert sorted(row[0] for row in out) == list(range(rows))
    for (
        i,
        txt,
        _m,
        plain,
        literal,
        column,
        value,
        error,
        status,
        attempts,
        prompt_tokens,
        completion_tokens,
        embedding,
    ) in out:
        assert txt == row_text(i, with_failures=True)
        if txt is None:  # NULL in, NULL out, nothing sent
            assert (plain, literal, column, value, error, status, attempts, embedding) == (
                None,
                None,
                None,
                None,
                None,
                None,
                0,
                None,
            ), i
        elif is_failure_text(txt):  # IGNORE: NULL answer, the outcome on the result ROW
            assert (plain, literal, column, value, embedding) == (None,) * 5, i
            assert status == 404 and attempts == 1 and "HTTP 404" in error, (i, error)
        else:
            expected = answer(txt, max_tokens=50)
            assert (plain, literal, column, value) == (expected,) * 4, i
            assert (error, status, attempts) == (None, 200, 1), i
            assert prompt_tokens == len(f"Be terse. {txt}".split()) and completion_tokens == 3
            assert embedding == pytest.approx(expected_embedding(txt), abs=1e-6), i

    requests = recorded(sim)
    texts = [row_text(i, with_failures=True) for i in range(rows)]
    expected_chat = {}
    for i, txt in enumerate(texts):
        if txt is None:
            continue
        column_model = None if i % 3 == 0 else f"col-{i % 3}"
        for model in ("sim-a", "sim-a", "other-model", column_model or "sim-a"):
            expected_chat[(model, txt)] = expected_chat.get((model, txt), 0) + 1
    assert dict(chat_calls(requests)) == expected_chat  # each row once per call, literal + column models
    assert dict(embedding_calls(requests)) == {("emb-model", t): 1 for t in texts if t is not None}
    for body in chat_bodies(requests):  # job parameters reached every request
        assert body["max_tokens"] == 50
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    max_in_flight = sim.stats()["max_in_flight"]
    assert 2 <= max_in_flight <= MAX_CONCURRENCY * parallelism


def test_pandas_udf_failover_fails_the_job_naming_row_and_cause(sim) -> None:
    t_env = table_env(
        1,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": "sim-a",
            "ai.error-handling-strategy": "FAILOVER",
            "ai.max-concurrency": 4,
        },
    )
    register_functions(t_env)
    sequence_table(t_env, "seq", 60)
    table = t_env.sql_query(f"SELECT ai_complete({text_sql(with_failures=True)}) FROM seq")
    text = failure_text(lambda: collect(table))
    assert "RowFailedError" in text
    assert re.search(r"row \d+ failed after 1 attempt\(s\): HTTP 404", text), text[-3000:]


def test_register_functions_sizes_flink_from_the_max_concurrency_job_parameter(flink_runtime) -> None:
    """Flink's batch and in-flight sizes are fixed when the job is built; the engine's
    ai.max-concurrency from job parameters only at open: the sizes must follow it anyway."""
    from flink_llm_udf import EngineSettings

    t_env = table_env(1, {"ai.max-concurrency": 48})
    register_functions(t_env)
    config = t_env.get_config()
    assert config.get("table.exec.async-scalar.max-concurrent-operations", None) == str(16 * 48)
    assert config.get("python.fn-execution.arrow.batch.size", None) == str(100 * 48)  # ROWS_PER_SLOT x C

    explicit = table_env(1, {"ai.max-concurrency": 48})
    register_functions(explicit, settings=EngineSettings(max_concurrency=8))  # explicit wins
    assert explicit.get_config().get("table.exec.async-scalar.max-concurrent-operations", None) == str(16 * 8)

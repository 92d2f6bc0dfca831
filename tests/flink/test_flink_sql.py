"""Pure SQL: ``CREATE TEMPORARY FUNCTION ... AS 'flink_llm_udf.sql.*' LANGUAGE PYTHON``.

No provider object anywhere: options come from ``pipeline.global-job-parameters`` only, or the
endpoint and key from the environment where the functions run (local workers run in this
process, so ``monkeypatch.setenv`` reaches them).
"""

from __future__ import annotations

import pytest
from helpers.flink_jobs import (
    IGNORE_BEAM_HANGUP,
    answer,
    chat_bodies,
    chat_calls,
    collect,
    embedding_calls,
    recorded,
    row_text,
    sequence_table,
    table_env,
    text_sql,
)

from flink_llm_udf import InvalidOptionError
from flink_llm_udf.job_parameters import job_parameters_value, settings_from_lookup
from flink_llm_udf.simulator import expected_embedding

pytestmark = [IGNORE_BEAM_HANGUP]

MAX_CONCURRENCY = 4
ROWS = 100
FUNCTIONS = ("ai_complete", "ai_complete_async", "ai_embed", "ai_embed_async")
ASYNC_CONF = {  # what a SQL user SETs for the async function (see README, Flink settings)
    "table.exec.async-scalar.max-concurrent-operations": str(2 * MAX_CONCURRENCY),
    "table.exec.async-scalar.timeout": "0 ms",
    "table.exec.async-scalar.retry-strategy": "NO_RETRY",
}


@pytest.mark.flink
@pytest.mark.parametrize("route", ["job-parameters", "environment"])
def test_sql_functions_from_job_parameters_and_environment(
    sim, route: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parameters = {
        "ai.model": "sim-a",
        "ai.embed.model": "emb-model",
        "ai.max-tokens": 30,
        "ai.system-prompt": "Reply in SQL.",
        "ai.max-concurrency": MAX_CONCURRENCY,
    }
    if route == "job-parameters":
        parallelism = 1
        parameters["ai.endpoint"] = sim.base_url
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    else:  # endpoint and key from the workers' environment; the server now demands the key
        parallelism = 2
        key_file = tmp_path / "key"
        key_file.write_text("sk-sql-test-1234\n")
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        monkeypatch.setenv("OPENAI_API_KEY_FILE", str(key_file))
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        sim.update(api_key="sk-sql-test-1234")
    try:
        t_env = table_env(parallelism, parameters, **ASYNC_CONF)
        for name in FUNCTIONS:
            t_env.execute_sql(
                f"CREATE TEMPORARY FUNCTION {name} AS 'flink_llm_udf.sql.{name}' LANGUAGE PYTHON"
            )
        sequence_table(t_env, "seq", ROWS)
        out = collect(
            t_env.sql_query(f"""
            SELECT id, txt, ai_complete(txt), ai_complete(txt, 'other-model'), ai_complete_async(txt),
                   ai_embed(txt), ai_embed_async(txt)
            FROM (SELECT id, {text_sql()} AS txt FROM seq)""")
        )
        requests = recorded(sim)
        stats = sim.stats()
    finally:
        if route == "environment":
            sim.update(api_key=None)

    assert stats["by_status"] == {"200": 5 * (ROWS - 2)}  # no 401: the key file was read
    assert sorted(row[0] for row in out) == list(range(ROWS))
    for i, txt, plain, literal, via_async, embedding, embedding_async in out:
        assert txt == row_text(i)
        if txt is None:
            assert (plain, literal, via_async, embedding, embedding_async) == (None,) * 5, i
            continue
        expected = answer(txt, max_tokens=30)
        assert (plain, literal, via_async) == (expected,) * 3, (i, plain, literal, via_async)
        assert embedding == pytest.approx(expected_embedding(txt), abs=1e-6), i
        assert embedding_async == pytest.approx(expected_embedding(txt), abs=1e-6), i

    texts = [t for t in (row_text(i) for i in range(ROWS)) if t is not None]
    expected_calls = {("sim-a", t): 2 for t in texts}
    expected_calls.update({("other-model", t): 1 for t in texts})
    assert dict(chat_calls(requests)) == expected_calls
    assert dict(embedding_calls(requests)) == {("emb-model", t): 2 for t in texts}
    for body in chat_bodies(requests):
        assert body["max_tokens"] == 30
        assert body["messages"][0] == {"role": "system", "content": "Reply in SQL."}
    # the Pandas calls run one after another in their operator, each async one beside them
    assert 2 <= stats["max_in_flight"] <= 3 * MAX_CONCURRENCY * parallelism


TRICKY_PARAMETERS = [
    (
        {"ai.endpoint": "http://127.0.0.1:8000/v1", "ai.model": "m"},
        "ai.endpoint:'http://127.0.0.1:8000/v1',ai.model:m",
    ),
    ({"ai.stop": "a,b", "ai.n": 2}, "'ai.stop:''a,b''',ai.n:2"),
    ({"ai.system-prompt": "It's"}, "ai.system-prompt:'It''s'"),
    ({"ai.x": " padded ", "ai.e": ""}, "ai.x:' padded ',ai.e:''"),
]


@pytest.mark.parametrize(("options", "expected"), TRICKY_PARAMETERS)
def test_job_parameters_value_quotes_only_what_flink_would_split(options, expected: str) -> None:
    assert job_parameters_value(options) == expected


@pytest.mark.flink
def test_job_parameters_value_reads_back_through_flinks_parser(flink_runtime) -> None:
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    option = jvm.org.apache.flink.configuration.PipelineOptions.GLOBAL_JOB_PARAMETERS
    options = {
        "ai.endpoint": "http://h:8000/v1?a=b,c",
        "ai.stop": 'a,"b",c',
        "ai.extra-body": '{"a": 1, "b": "x\'y"}',
        "ai.system-prompt": 'It\'s: "so", yes',
        "ai.user-prompt": " ",
        "ai.model": "",
        "odd'key:,": "v",
        "ai.n": 3,
    }
    config = jvm.org.apache.flink.configuration.Configuration()
    config.setString(option.key(), job_parameters_value(options))
    assert dict(config.get(option)) == {key: str(value) for key, value in options.items()}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ai.max-concurrency": "0"}, "option 'ai.max-concurrency'='0' is not allowed: must be an int >= 1"),
        ({"ai.max-concurrency": "x"}, "option 'ai.max-concurrency'='x' is not allowed: must be an int >= 1"),
        (
            {"ai.request-timeout": "0"},
            "option 'ai.request-timeout'='0' is not allowed: must be a number of seconds > 0",
        ),
        ({"ai.row-deadline": "-1s"}, "option 'ai.row-deadline'='-1s' is not allowed: not a duration"),
    ],
)
def test_engine_options_from_job_parameters_name_the_key_and_value(raw, message: str) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        settings_from_lookup(raw.get)
    assert str(caught.value).startswith(message)


def test_engine_options_from_a_function_context_name_where_they_came_from() -> None:
    from flink_llm_udf.flink._function_setup import resolve_configuration

    class Context:
        def get_job_parameter(self, key, default):
            return {"ai.endpoint": "http://127.0.0.1:1/v1", "ai.max-concurrency": "0"}.get(key, default)

    with pytest.raises(
        InvalidOptionError, match=r"'max-concurrency'='0' \(from the 'ai\.\*' configuration\)"
    ):
        resolve_configuration(Context(), None, None)

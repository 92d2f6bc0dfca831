"""The README's examples, as written, run with the settings that keep the endpoint busy.

Each test builds a job the way a README section does and reads the configuration Flink will run
it with; the last one opens async SQL under Flink's defaults and expects the worker's warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers.flink_jobs import IGNORE_BEAM_HANGUP, collect, sequence_table, table_env

from flink_llm_udf import EngineSettings, OpenAICompatProvider
from flink_llm_udf.flink import LLMAsyncFunction, apply_llm, recommended_settings, register_functions
from flink_llm_udf.flink._tuning import BUNDLE_KEYS

pytestmark = [IGNORE_BEAM_HANGUP]

PROVIDER = OpenAICompatProvider(endpoint="http://127.0.0.1:8000/v1", model="sim-model")


def _environment_config(env):
    from pyflink.util.java_utils import get_j_env_configuration

    return get_j_env_configuration(env._j_stream_execution_environment)


@pytest.mark.flink
def test_the_table_api_example_gets_every_recommended_setting(flink_runtime):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())  # as the README
    register_functions(t_env, PROVIDER, settings=EngineSettings(max_concurrency=64))
    config = t_env.get_config()
    assert {key: config.get(key, None) for key in recommended_settings(64)} == recommended_settings(64)


@pytest.mark.flink
def test_the_datastream_example_gets_the_bundle_settings_on_its_environment(flink_runtime):
    from pyflink.datastream import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()  # as the README
    reviews = env.from_collection([("r1", "Great product!"), ("r2", "Broke after a day.")])
    function = LLMAsyncFunction(
        OpenAICompatProvider(model="gpt-4o-mini", error_handling_strategy="IGNORE"),
        EngineSettings(max_concurrency=64),
        text_of=lambda record: record[1],
        key_of=lambda record: record[0],
    )
    apply_llm(reviews, function)
    config = _environment_config(env)
    wanted = recommended_settings(64)
    assert {key: config.getString(key, None) for key in BUNDLE_KEYS} == {
        key: wanted[key] for key in BUNDLE_KEYS
    }


@pytest.mark.flink
def test_apply_llm_keeps_the_users_own_values_and_says_what_they_cost(flink_runtime, caplog):
    from pyflink.datastream import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    _environment_config(env).setString("python.fn-execution.bundle.time", "1000")
    stream = env.from_collection(["a"])
    with caplog.at_level(logging.WARNING, logger="flink_llm_udf"):
        apply_llm(stream, LLMAsyncFunction(PROVIDER, EngineSettings(max_concurrency=64)))
    config = _environment_config(env)
    assert config.getString("python.fn-execution.bundle.time", None) == "1000"
    assert (
        config.getString("python.fn-execution.bundle.size", None)
        == recommended_settings(64)["python.fn-execution.bundle.size"]
    )
    assert "bundle.time=1000 makes a quiet stream's rows wait up to about 2 s" in caplog.text

    untouched = StreamExecutionEnvironment.get_execution_environment()
    apply_llm(untouched.from_collection(["b"]), LLMAsyncFunction(PROVIDER), apply_settings=False)
    assert _environment_config(untouched).getString("python.fn-execution.bundle.size", None) is None


@pytest.mark.flink
def test_async_sql_opened_under_flinks_defaults_warns_what_to_set(flink_runtime, sim):
    """The worker's warning reaches Flink's log (Python worker logging goes to the JVM's)."""
    t_env = table_env(
        1,
        {"ai.endpoint": sim.base_url, "ai.model": "sim-a", "ai.max-concurrency": 64},
        **{"table.exec.async-scalar.timeout": "0 ms", "table.exec.async-scalar.retry-strategy": "NO_RETRY"},
    )  # Flink's default of 10 operations in flight left as it is
    register_functions(t_env, apply_settings=False)
    sequence_table(t_env, "seq", 20)
    assert len(collect(t_env.sql_query("SELECT ai_complete_async(CAST(id AS STRING)) FROM seq"))) == 20
    wanted = "async SQL function: table.exec.async-scalar.max-concurrent-operations=10 caps"
    # The log of the JVM that ran the job: the first Flink test of the process chose its folder.
    from pyflink.java_gateway import get_gateway

    log = Path(get_gateway().jvm.System.getProperty("log.file"))
    logged = [line for line in log.read_text(errors="replace").splitlines() if wanted in line]
    assert logged and "set it to 1024" in logged[-1]

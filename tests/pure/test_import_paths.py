"""Every import path and public name documented before the 0.2.0 reorganisation still works.

The lists below are what the README, the module docstrings and the packages' ``__all__`` named
in 0.1.0. Moved modules answer under their old names as the very same module objects
(``flink_llm_udf._moved_modules``), so a pickled UDF or a patch through an old name still works.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pickle
import subprocess
import sys

import pytest

from flink_llm_udf._moved_modules import MOVED_MODULES, current_name

#: ``from flink_llm_udf import ...`` in 0.1.0.
TOP_LEVEL_0_1 = [
    "BlockingEngine", "ConfigurationError", "CountingObserver", "EndpointConnectionError",
    "EndpointError", "EndpointStatusError", "EndpointTimeoutError", "EngineObserver",
    "EngineSettings", "FlinkLLMError", "InvalidOptionError", "InvalidOptionTypeError",
    "LLMEngine", "METRIC_NAMES", "MalformedResponseError", "OpenAICompatProvider", "Provider",
    "RowFailedError", "RowResult", "TokenizerUnavailableError", "Usage", "arun_batch", "run_batch",
]  # fmt: skip

#: ``from flink_llm_udf.flink import ...`` in 0.1.0.
FLINK_0_1 = [
    "FlinkMetrics", "LLMAsyncFunction", "LLMAsyncScalarFunction", "LLMPandasFunction",
    "METRIC_GROUP", "OUTPUT_FIELDS", "RESULT_FIELDS", "ai_complete_async_udf", "ai_complete_result_udf",
    "ai_complete_udf", "ai_embed_async_udf", "ai_embed_udf", "apply_llm", "apply_recommended_settings",
    "output_type", "recommended_settings", "register_functions", "result_row_type",
]  # fmt: skip

#: ``CREATE TEMPORARY FUNCTION f AS 'flink_llm_udf.sql.<name>' LANGUAGE PYTHON`` in 0.1.0.
SQL_0_1 = ["ai_complete", "ai_complete_result", "ai_complete_async", "ai_embed", "ai_embed_async"]

#: ``from flink_llm_udf.simulator import ...`` in 0.1.0.
SIMULATOR_0_1 = [
    "DEFAULT_EMBEDDING_DIMENSIONS", "RUNTIME_FIELDS", "ChatChoice", "Directive", "DirectiveError",
    "RunningSimulator", "SimulatorConfig", "SimulatorError", "SimulatorProcess", "SimulatorServer",
    "SimulatorThread", "content_text", "count_words", "expected_chat_choice", "expected_chat_reply",
    "expected_embedding", "expected_prompt_tokens", "first_user_text", "main", "parse_directive",
    "start_simulator",
]  # fmt: skip

#: Names documented (README, docstrings) under a module path that has since moved.
MOVED_NAMES_0_1 = [
    ("flink_llm_udf.config", "job_parameters_value"),
    ("flink_llm_udf.config", "provider_from_lookup"),
    ("flink_llm_udf.config", "settings_from_lookup"),
    ("flink_llm_udf.runner", "run_batch"),
    ("flink_llm_udf.runner", "BlockingEngine"),
    ("flink_llm_udf.engine", "EngineSettings"),
    ("flink_llm_udf.engine", "LLMEngine"),
    ("flink_llm_udf.providers", "OpenAICompatProvider"),
    ("flink_llm_udf.providers", "mask_secret"),
    ("flink_llm_udf.results", "RowResult"),
    ("flink_llm_udf.errors", "FlinkLLMError"),
    ("flink_llm_udf.metrics", "METRIC_NAMES"),
    ("flink_llm_udf.protocol", "resolve_call"),
    ("flink_llm_udf.retry", "parse_retry_after"),
    ("flink_llm_udf.tokens", "load_encoding"),
    ("flink_llm_udf.durations", "parse_duration"),
    ("flink_llm_udf.transport", "HTTP_CLIENTS"),
    ("flink_llm_udf.cli", "main"),
    ("flink_llm_udf.cluster", "StandaloneCluster"),
    ("flink_llm_udf.cluster", "main"),
    ("flink_llm_udf.sql_runner", "split_statements"),
    ("flink_llm_udf.sql_runner", "main"),
    ("flink_llm_udf.bench", "main"),
    ("flink_llm_udf.demo", "main"),
    ("flink_llm_udf.flink.settings", "recommended_settings"),
    ("flink_llm_udf.flink.flink39532", "install_row_copy_workaround"),
    ("flink_llm_udf.simulator.config", "SimulatorConfig"),
    ("flink_llm_udf.simulator.control", "SimulatorProcess"),
]


@pytest.mark.parametrize("name", TOP_LEVEL_0_1)
def test_top_level_names_still_import(name: str) -> None:
    module = importlib.import_module("flink_llm_udf")
    assert getattr(module, name) is not None and name in module.__all__


@pytest.mark.parametrize("name", FLINK_0_1)
def test_flink_names_still_import(name: str) -> None:
    module = importlib.import_module("flink_llm_udf.flink")
    assert getattr(module, name) is not None and name in module.__all__


@pytest.mark.parametrize("name", SQL_0_1)
def test_sql_functions_still_resolve_by_their_documented_path(name: str) -> None:
    module = importlib.import_module("flink_llm_udf.sql")
    assert getattr(module, name) is not None and name in module.__all__


@pytest.mark.parametrize("name", SIMULATOR_0_1)
def test_simulator_names_still_import(name: str) -> None:
    module = importlib.import_module("flink_llm_udf.simulator")
    assert getattr(module, name) is not None and name in module.__all__


@pytest.mark.parametrize(("module_name", "name"), MOVED_NAMES_0_1)
def test_documented_names_under_moved_paths_still_import(module_name: str, name: str) -> None:
    assert getattr(importlib.import_module(module_name), name) is not None


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_module_path_is_the_new_module_itself(old: str) -> None:
    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])
    assert module.__spec__ is not None and module.__spec__.name == MOVED_MODULES[old]


def test_submodules_of_a_moved_package_follow_it() -> None:
    assert current_name("flink_llm_udf.bench.child") == "flink_llm_udf.tools.bench.child"
    child = importlib.import_module("flink_llm_udf.bench.child")
    assert child is importlib.import_module("flink_llm_udf.tools.bench.child")
    assert current_name("flink_llm_udf.job_parameters") is None  # not moved: not aliased
    assert current_name("flink_llm_udf.enginex") is None


def test_a_pickle_naming_an_old_module_loads() -> None:
    # protocol 0 GLOBAL opcode: what a 0.1.0 pickle of the class records
    assert (
        pickle.loads(b"cflink_llm_udf.engine\nEngineSettings\n.")
        is importlib.import_module("flink_llm_udf").EngineSettings
    )


def test_the_console_script_points_at_the_cli() -> None:
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "flink-llm"]
    main = script.load()
    assert main is importlib.import_module("flink_llm_udf.tools.cli").main
    assert main is importlib.import_module("flink_llm_udf.cli").main


@pytest.mark.parametrize(
    "module", ["flink_llm_udf.simulator", "flink_llm_udf.bench", "flink_llm_udf.tools.bench"]
)
def test_python_dash_m_still_runs(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_version_comes_from_the_package_metadata() -> None:
    import flink_llm_udf

    assert flink_llm_udf.__version__ == importlib.metadata.version("flink-llm-udf")

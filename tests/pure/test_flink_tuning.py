"""The Flink settings LLM functions need, and the warnings for settings known to stall."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flink_llm_udf import EngineSettings
from flink_llm_udf.flink import recommended_settings, sql_set_statements, stall_warnings
from flink_llm_udf.flink._stall_check import concurrency_of, install_stall_check, warn_if_starved
from flink_llm_udf.flink._tuning import FLINK_DEFAULTS
from flink_llm_udf.tools.sql_file import StatementExecutor, parse_set, split_statements

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("concurrency", [1, 16, 64, 256, 1024])
def test_the_recommended_settings_raise_no_warning(concurrency):
    assert stall_warnings(recommended_settings(concurrency), concurrency) == []


def test_flinks_defaults_stall_an_llm_function_and_each_warning_says_what_to_set():
    warnings = stall_warnings({}, 64)
    wanted = recommended_settings(64)
    starts = [
        "python.fn-execution.bundle.size=1000 drains",
        "python.fn-execution.bundle.time=1000 makes a quiet stream's rows wait up to about 2 s",
        "Pandas UDFs get Arrow batches of 1000 rows",
        "table.exec.async-scalar.max-concurrent-operations=10 caps",
        "table.exec.async-scalar.timeout=3 min starts a timer thread",
    ]
    assert [w[: len(s)] for w, s in zip(warnings, starts, strict=True)] == starts
    assert warnings[0].endswith(f"set it to {wanted['python.fn-execution.bundle.size']}")
    assert all(" set " in w for w in warnings)


@pytest.mark.parametrize(
    ("settings", "concurrency", "expected"),
    [
        ({"python.fn-execution.bundle.size": "1024"}, 64, []),  # 16 x C: enough
        ({"python.fn-execution.bundle.size": "1000"}, 64, ["bundle.size=1000 drains the 64 request slots"]),
        ({"python.fn-execution.bundle.time": "1 s"}, 64, ["bundle.time=1 s makes a quiet stream"]),
        ({"python.fn-execution.bundle.time": "200"}, 64, []),
        ({"table.exec.async-scalar.max-concurrent-operations": "10"}, 64, ["=10 caps async SQL"]),
        ({"table.exec.async-scalar.timeout": "3 min"}, 64, ["timer thread per async SQL row"]),
        ({"table.exec.async-scalar.timeout": "0 ms"}, 64, []),
    ],
)
def test_only_given_settings_are_judged_when_asked(settings, concurrency, expected):
    found = stall_warnings(settings, concurrency, only_given=True)
    assert len(found) == len(expected)
    for warning, fragment in zip(found, expected, strict=True):
        assert fragment in warning


def test_the_sql_set_block_sets_exactly_the_recommended_settings():
    statements = split_statements(sql_set_statements(64))
    parsed = [parse_set(s.text) for s in statements]
    assert {key: value for _, key, value in parsed} == recommended_settings(64)  # type: ignore[misc]


def test_the_readme_sql_example_carries_settings_that_do_not_stall():
    """The README's pure-SQL example, as written, runs with the fast settings."""
    block = README.read_text(encoding="utf-8").split("```sql", 1)[1].split("```", 1)[0]
    parsed = [parse_set(s.text) for s in split_statements(block)]
    sets = {option[1]: option[2] for option in parsed if option is not None and option[1]}
    declared = re.search(r"ai\.max-concurrency:(\d+)", sets["pipeline.global-job-parameters"] or "")
    assert declared is not None
    concurrency = int(declared.group(1))
    assert stall_warnings(sets, concurrency) == []


class _Config:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)

    def get(self, key: str, default: str | None) -> str | None:
        return self.values.get(key, default)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def get_configuration(self) -> _Config:
        return self

    def set_string(self, key: str, value: str) -> None:
        self.values[key] = value

    def remove_config(self, key: str) -> bool:
        return self.values.pop(key, None) is not None


class _TableEnv:
    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.config = _Config(values or {})

    def get_config(self) -> _Config:
        return self.config


def test_flink_llm_sql_applies_what_the_file_did_not_set_sized_by_ai_max_concurrency(capsys):
    t_env = _TableEnv()
    executor = StatementExecutor(t_env, wait=True, max_rows=1, out=None)  # type: ignore[arg-type]
    executor.set_option("ai.max-concurrency", "256")
    executor.set_option("python.fn-execution.bundle.time", "1000")  # the user's own, kept
    executor.tune()
    wanted = recommended_settings(256)
    for key, value in wanted.items():
        expected = "1000" if key == "python.fn-execution.bundle.time" else value
        assert t_env.config.values[key] == expected, key
    assert "bundle.time=1000 makes a quiet stream's rows wait" in capsys.readouterr().err
    executor.set_option("ai.max-concurrency", "16")  # a later job with fewer slots: retuned
    executor.tune()
    assert (
        t_env.config.values["python.fn-execution.bundle.size"]
        == recommended_settings(16)["python.fn-execution.bundle.size"]
    )


def test_flink_llm_sql_leaves_values_from_the_cluster_config_alone():
    t_env = _TableEnv({"python.fn-execution.bundle.size": "100000"})
    StatementExecutor(t_env, wait=True, max_rows=1, out=None).tune()  # type: ignore[arg-type]
    assert t_env.config.values["python.fn-execution.bundle.size"] == "100000"
    assert (
        t_env.config.values["python.fn-execution.bundle.time"]
        == recommended_settings(16)["python.fn-execution.bundle.time"]
    )


def test_flinks_defaults_are_the_ones_pyflink_23_ships():
    assert FLINK_DEFAULTS["python.fn-execution.bundle.size"] == "1000"
    assert FLINK_DEFAULTS["python.fn-execution.bundle.time"] == "1000"
    assert FLINK_DEFAULTS["table.exec.async-scalar.max-concurrent-operations"] == "10"


class _Engine:
    def __init__(self, concurrency: int) -> None:
        self.settings = EngineSettings(max_concurrency=concurrency)


class _Function:
    def __init__(self, concurrency: int | None) -> None:
        self._engine = None if concurrency is None else _Engine(concurrency)


@pytest.mark.parametrize(
    ("functions", "capacity", "timeout_s", "expected"),
    [
        ([_Function(64)], 10, 0.0, ["max-concurrent-operations=10 caps async SQL functions below their 64"]),
        ([_Function(64)], 1024, 0.0, []),
        ([_Function(8), _Function(64)], 64, 180.0, ["timeout=180000 ms starts a timer thread"]),
        ([_Function(None), object()], 10, 0.0, []),  # not ours, or not open: nothing to judge
    ],
)
def test_the_worker_check_judges_the_operation_against_the_engines_slots(
    functions, capacity, timeout_s, expected
):
    concurrency = concurrency_of(functions)
    found = warn_if_starved("async SQL function", concurrency, capacity, timeout_s)
    assert len(found) == len(expected)
    for warning, fragment in zip(found, expected, strict=True):
        assert fragment in warning


def test_the_worker_check_wraps_pyflinks_operations_once():
    from pyflink.fn_execution.datastream.process.async_function.operation import AsyncOperation
    from pyflink.fn_execution.table.async_function.operations import AsyncScalarFunctionOperation

    assert install_stall_check() and install_stall_check()
    for operation in (AsyncScalarFunctionOperation, AsyncOperation):
        assert getattr(operation.open, "_flink_llm_stall_check", False)
        assert not getattr(operation.open.__wrapped__, "_flink_llm_stall_check", False)

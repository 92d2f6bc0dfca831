"""Python UDFs and a tiny PyFlink job for the cluster and SQL-runner tests.

The functions are referenced from SQL by module path (``'cluster_udfs.upper'``), so a
TaskManager's Python worker must be able to import this file: ship it with ``-pyfs`` or
``SET 'python.files' = '.../tests/helpers/cluster_udfs.py'``. Run as a script it is the job that
``flink run -py`` submits: it upper-cases a few words into a CSV filesystem sink.
"""

from __future__ import annotations

import argparse
import os

from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

#: The job's input; tests compare the sink with this row by row.
WORDS = [(1, "alpha"), (2, "beta"), (3, "gamma"), (4, "delta"), (5, "épsilon")]


@udf(result_type=DataTypes.STRING())
def upper(value: str | None) -> str | None:
    """Upper-case a string in a Python worker; NULL stays NULL."""
    return None if value is None else value.upper()


@udf(result_type=DataTypes.STRING())
def worker_pid(_: object) -> str:
    """The Python worker's PID, to see which process evaluated a row."""
    return str(os.getpid())


class _AiModelParameter(ScalarFunction):
    """The job parameter ``ai.model`` as the worker sees it at open (``<unset>`` if absent)."""

    def open(self, function_context: FunctionContext) -> None:
        self.value = function_context.get_job_parameter("ai.model", "<unset>")

    def eval(self, _: object) -> str:
        return self.value


ai_model_parameter = udf(_AiModelParameter(), result_type=DataTypes.STRING())


def run_job(out_dir: str) -> None:
    """Write ``id, word, UPPER(word)`` of :data:`WORDS` to ``out_dir`` as CSV; wait for the job."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    t_env.create_temporary_function("py_upper", upper)
    t_env.execute_sql(
        f"""CREATE TABLE words_out (id INT, word STRING, upper_word STRING)
        WITH ('connector' = 'filesystem', 'path' = '{out_dir}', 'format' = 'csv')"""
    )
    values = ", ".join(f"({i}, '{w}')" for i, w in WORDS)
    result = t_env.execute_sql(
        f"INSERT INTO words_out SELECT id, word, py_upper(word) FROM (VALUES {values}) AS t(id, word)"
    )
    result.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    run_job(parser.parse_args().out)

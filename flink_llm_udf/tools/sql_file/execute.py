"""Statements of a ``.sql`` file executed one by one in a streaming ``TableEnvironment``.

``SET``/``RESET`` change table options (and, for ``ai.*`` keys, the job parameters Python
functions read); ``BEGIN STATEMENT SET; ... END;`` collects INSERTs into one job; everything
else goes to ``TableEnvironment.execute_sql``. pyflink is imported only by :func:`run_file`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from flink_llm_udf._errors import FlinkLLMError

from .statements import Statement, parse_set, split_statements, statement_kind

if TYPE_CHECKING:  # pyflink is imported only when statements are executed
    from pyflink.table import TableEnvironment, TableResult

__all__ = [
    "JOB_PARAMETERS",
    "JOB_PARAMETER_PREFIX",
    "SqlRunnerError",
    "StatementExecutor",
    "job_parameters",
    "python_files_import_paths",
    "run_file",
]


class SqlRunnerError(FlinkLLMError):
    """A statement could not be parsed or executed; names the statement and its line."""


JOB_PARAMETERS = "pipeline.global-job-parameters"
#: Statements that start a job: the recommended settings must be in place before them.
_SUBMITS_A_JOB = frozenset({"INSERT", "STATEMENT SET", "EXECUTE", "SELECT", "WITH", "VALUES"})
#: Keys under this prefix configure our SQL functions (see flink_llm_udf.job_parameters).
JOB_PARAMETER_PREFIX = "ai."


def job_parameters(options: dict[str, str]) -> str:
    """The ``pipeline.global-job-parameters`` value for SET options: the value SET for that key
    itself, then every ``ai.*`` option rendered with Flink's quoting (empty if neither)."""
    from flink_llm_udf.job_parameters import job_parameters_value

    parts = [options[JOB_PARAMETERS]] if options.get(JOB_PARAMETERS) else []
    ai_options = {k: v for k, v in options.items() if k.startswith(JOB_PARAMETER_PREFIX)}
    if ai_options:
        parts.append(job_parameters_value(ai_options))
    return ",".join(parts)


def python_files_import_paths(value: str) -> list[str]:
    """The sys.path entries that make a ``python.files`` value importable, as Flink does for its
    workers: a ``.py`` file or a package directory by its parent, an archive (.zip, .egg, .whl) as is."""
    paths: list[str] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        path = Path(item.removeprefix("file://")).expanduser().resolve()
        entry = str(path) if path.suffix in (".zip", ".egg", ".whl") else str(path.parent)
        if entry not in paths:
            paths.append(entry)
    return paths


class StatementExecutor:
    """Executes statements against one TableEnvironment and remembers what SET changed.

    ``wait``: INSERT jobs and statement sets block until their job ends. ``max_rows``: a query
    prints at most that many rows, then its job is cancelled. ``out``: where results and job ids
    are printed (None: ``sys.stdout``).
    """

    def __init__(self, t_env: TableEnvironment, *, wait: bool, max_rows: int, out: TextIO | None) -> None:
        self.t_env = t_env
        self.wait = wait
        self.max_rows = max_rows
        self.out = out
        self.set_keys: dict[str, str] = {}
        self.statement_set: list[Statement] | None = None  # inside BEGIN STATEMENT SET; ... END;
        self.tuned: dict[str, str] = {}  # recommended settings this executor applied itself
        self._warned: set[str] = set()

    def run(self, statements: Sequence[Statement]) -> None:
        """Execute ``statements`` in order; :class:`SqlRunnerError` names the first that fails."""
        for number, statement in enumerate(statements, start=1):
            try:
                self.execute(statement)
            except SqlRunnerError:
                raise
            except Exception as exc:  # py4j and pyflink errors: name the statement
                raise SqlRunnerError(
                    f"statement {number} (line {statement.line}) failed: {statement.first_line}\n"
                    f"{_short_error(exc)}"
                ) from exc
        if self.statement_set is not None:
            raise SqlRunnerError("BEGIN STATEMENT SET; has no END;")

    def execute(self, statement: Statement) -> None:
        """Execute one statement (or collect it, inside ``BEGIN STATEMENT SET; ... END;``)."""
        kind = statement_kind(statement.text)
        if self.statement_set is not None:
            if kind == "END":
                inserts, self.statement_set = self.statement_set, None
                self._execute_statement_set(inserts)
            elif kind == "INSERT":
                self.statement_set.append(statement)
            else:
                raise SqlRunnerError(f"only INSERT may stand in a statement set, not: {statement.first_line}")
            return
        if kind == "BEGIN STATEMENT SET":
            self.statement_set = []
            return
        if (option := parse_set(statement.text)) is not None:
            self._set(*option)
            return
        if kind in _SUBMITS_A_JOB:
            self.tune()
        result = self.t_env.execute_sql(statement.text)
        if kind in ("INSERT", "STATEMENT SET"):
            self._finish_job(result)
        elif kind in ("SELECT", "WITH", "VALUES") or kind in ("SHOW", "DESCRIBE", "DESC", "EXPLAIN"):
            self._print_rows(result)

    def set_option(self, key: str, value: str) -> None:
        """``SET 'key' = 'value'``, as if the file began with it (``--set`` on the command line)."""
        self._set("SET", key, value)

    def _set(self, verb: str, key: str | None, value: str | None) -> None:
        config = self.t_env.get_config()
        if verb == "SET" and key is not None:
            config.set(key, value or "")
            self.set_keys[key] = value or ""
            if key == "python.files":
                # The workers get these on their path from Flink; this process needs them too,
                # because the planner imports a LANGUAGE PYTHON function here to learn its types.
                for entry in reversed(python_files_import_paths(value or "")):
                    if entry not in sys.path:
                        sys.path.insert(0, entry)
        elif verb == "SET":
            for k, v in self.set_keys.items():
                print(f"'{k}' = '{v}'", file=self.out)
            return
        else:
            keys = [key] if key is not None else list(self.set_keys)
            for k in keys:
                config.get_configuration().remove_config(k)
                self.set_keys.pop(k, None)
        if key is None or key == JOB_PARAMETERS or key.startswith(JOB_PARAMETER_PREFIX):
            self._apply_job_parameters()

    def _apply_job_parameters(self) -> None:
        """Python functions see only ``pipeline.global-job-parameters``, not table options: merge
        every ``SET 'ai.*'`` into it (after any value SET for that key itself, so they win)."""
        value = job_parameters(self.set_keys)
        configuration = self.t_env.get_config().get_configuration()
        if value:
            configuration.set_string(JOB_PARAMETERS, value)
        else:
            configuration.remove_config(JOB_PARAMETERS)

    def tune(self) -> None:
        """Apply ``recommended_settings`` for the declared ``ai.max-concurrency`` wherever the file
        (or ``--set``) did not SET the key, and warn once about what it set that will stall."""
        from flink_llm_udf._engine_settings import EngineSettings
        from flink_llm_udf.flink._tuning import recommended_settings, stall_warnings

        declared = self.set_keys.get(JOB_PARAMETER_PREFIX + "max-concurrency", "")
        concurrency = int(declared) if declared.strip().isdigit() else EngineSettings().max_concurrency
        config = self.t_env.get_config()
        for key, value in recommended_settings(concurrency).items():
            if key not in self.set_keys and (key in self.tuned or config.get(key, None) is None):
                config.set(key, value)
                self.tuned[key] = value
        for warning in stall_warnings(self.set_keys, concurrency):
            if warning not in self._warned:
                self._warned.add(warning)
                print(f"warning: {warning}", file=sys.stderr)

    def _execute_statement_set(self, inserts: list[Statement]) -> None:
        self.tune()
        statement_set = self.t_env.create_statement_set()
        for insert in inserts:
            statement_set.add_insert_sql(insert.text)
        self._finish_job(statement_set.execute())

    def _finish_job(self, result: TableResult) -> None:
        client = result.get_job_client()
        job_id = client.get_job_id() if client is not None else None
        print(f"Job {job_id} submitted", file=self.out, flush=True)
        if self.wait:
            result.wait()
            print(f"Job {job_id} finished", file=self.out, flush=True)

    def _print_rows(self, result: TableResult) -> None:
        names = result.get_resolved_schema().get_column_names()
        print(" | ".join(["op", *names]), file=self.out)
        shown = 0
        with result.collect() as rows:
            for row in rows:
                if shown >= self.max_rows:
                    print(f"... (stopped after {self.max_rows} rows)", file=self.out)
                    break
                kind = str(row.get_row_kind())
                print(" | ".join([kind, *("NULL" if v is None else str(v) for v in row)]), file=self.out)
                shown += 1
        print(f"({shown} rows)", file=self.out, flush=True)


def _short_error(exc: BaseException, keep: int = 8) -> str:
    """The useful part of a py4j error: messages without Java stack frames, first and last lines
    (a Python traceback from the callback server ends with the real cause)."""
    lines = [
        line
        for line in str(exc).splitlines()
        if line.strip() and not line.lstrip().startswith(("at ", "... "))
    ]
    if len(lines) > 2 * keep:
        lines = [*lines[:keep], "  ...", *lines[-keep:]]
    return "\n".join(lines)


def run_file(
    path: str | os.PathLike[str],
    *,
    options: Sequence[tuple[str, str]] = (),
    wait: bool = True,
    max_rows: int = 100,
    out: TextIO | None = None,
) -> None:
    """Execute every statement of ``path`` in a streaming TableEnvironment of this process.

    Run from ``flink run`` that environment submits to the cluster; run directly it is a local
    mini-cluster. ``options`` are SET before the file's first statement. Raises
    :class:`SqlRunnerError` at the first failing statement.
    """
    text = Path(path).read_text(encoding="utf-8")
    statements = split_statements(text)
    # Without this a local run writes its logs into site-packages/pyflink/log.
    os.environ.setdefault("FLINK_LOG_DIR", str(Path(tempfile.gettempdir()) / "flink-llm-log"))
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    executor = StatementExecutor(t_env, wait=wait, max_rows=max_rows, out=out or sys.stdout)
    for key, value in options:
        executor.set_option(key, value)
    executor.run(statements)

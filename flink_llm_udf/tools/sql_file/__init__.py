"""Run a ``.sql`` file statement by statement through PyFlink's ``TableEnvironment``.

The apache-flink wheel has no ``sql-client.sh`` that works (it lacks the SQL gateway), so
``flink-llm sql`` stands in for it::

    flink-llm sql -f job.sql [--set key=value ...]                 # local mini-cluster, this process
    flink-llm sql -f job.sql --cluster [--jobmanager 127.0.0.1:8081] [--detached]

* Statements are split at ``;`` outside single-quoted strings, backquoted identifiers, ``--``
  line comments and ``/* */`` comments; ``EXECUTE STATEMENT SET BEGIN ... END;`` stays one
  statement, and the sql-client's ``BEGIN STATEMENT SET; ... END;`` is run as one statement set.
* ``SET 'key' = 'value';`` sets a table option (``t_env.get_config().set``), ``SET;`` lists the
  ones this file set, ``RESET 'key';`` / ``RESET;`` removes them again. Python functions do not
  see table options, only job parameters: ``SET 'ai.model' = '...';`` (any ``ai.*`` key) is also
  merged into ``pipeline.global-job-parameters``, quoted the way Flink parses it.
* Everything else goes to ``TableEnvironment.execute_sql`` in streaming mode. ``INSERT`` and
  statement sets wait for their job to end (unless ``--detached``), ``SELECT`` prints at most
  ``--max-rows`` rows and then cancels its job.
* ``--cluster`` re-runs this module as ``bin/flink run -m HOST:PORT -pym flink_llm_udf.tools.sql_file``,
  so the statements run as jobs on that cluster. Python UDFs named in ``CREATE FUNCTION ...
  LANGUAGE PYTHON`` must be importable by the cluster's Python workers: installed in their
  environment, or shipped with ``SET 'python.files' = '...';`` (or ``--pyfiles``).

A failing statement stops the run; the message names the statement's number, line and first line.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flink_llm_udf._errors import FlinkLLMError
from flink_llm_udf.tools import PACKAGE_PARENT

if TYPE_CHECKING:  # pyflink is imported only when statements are executed
    from pyflink.table import TableEnvironment

__all__ = [
    "SqlRunnerError",
    "Statement",
    "job_parameters",
    "main",
    "parse_set",
    "python_files_import_paths",
    "run_file",
    "split_statements",
]


class SqlRunnerError(FlinkLLMError):
    """A statement could not be parsed or executed; names the statement and its line."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement: its text without the final ``;`` and leading comments, and where it starts."""

    text: str
    line: int  #: 1-based line of the statement's first character in the file

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0].strip() if self.text else ""


# --------------------------------------------------------------------------- splitting (pure)
_BLOCK_START = re.compile(r"(?:EXECUTE\s+)?STATEMENT\s+SET\s+BEGIN\b", re.IGNORECASE)
_BLOCK_END = re.compile(r"\bEND\s*$", re.IGNORECASE)


def split_statements(sql: str) -> list[Statement]:
    """Split a SQL script into statements at top-level ``;``.

    A ``;`` inside a single-quoted string (``''`` escapes a quote), a backquoted identifier, a
    ``--`` comment or a ``/* */`` comment does not end a statement, nor does one inside an
    ``EXECUTE STATEMENT SET BEGIN ... END`` block. Comments before a statement are dropped;
    comments inside it are kept (Flink's parser skips them). Text after the last ``;`` is a
    statement too. Statements that are empty or only comments are left out.
    """
    statements: list[Statement] = []
    start: int | None = None  # offset of the current statement's first code character
    code_end = 0  # offset just past its last code character
    code: list[str] = []  # the current statement with comments blanked, to recognise blocks
    i, n = 0, len(sql)

    def emit() -> None:
        nonlocal start
        if start is not None:
            text = sql[start:code_end].rstrip()  # trailing comments and blanks are not kept
            statements.append(Statement(text, sql.count("\n", 0, start) + 1))
        start = None
        code.clear()

    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
            continue
        if ch == "/" and sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
            code.append(" ")
            continue
        if ch in "'`":
            if start is None:
                start = i
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote: an escaped quote
                        j += 2
                        continue
                    break
                j += 1
            code.append(sql[i : j + 1])
            i = code_end = min(j + 1, n)
            continue
        if ch == ";":
            joined = "".join(code).strip()
            if _BLOCK_START.match(joined) and not _BLOCK_END.search(joined):
                code.append(ch)
                i = code_end = i + 1
                continue
            emit()
            i += 1
            continue
        if start is None and not ch.isspace():
            start = i
        if start is not None:
            code.append(ch)
            if not ch.isspace():
                code_end = i + 1
        i += 1
    emit()
    return [s for s in statements if s.text]


_SET = re.compile(
    r"^SET(?:\s+(?P<key>'(?:[^']|'')*'|[^\s=]+)\s*=\s*(?P<value>'(?:[^']|'')*'|.+?))?\s*$", re.I | re.S
)
_RESET = re.compile(r"^RESET(?:\s+(?P<key>'(?:[^']|'')*'|\S+))?\s*$", re.I | re.S)


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] == "'":
        return token[1:-1].replace("''", "'")
    return token


def parse_set(text: str) -> tuple[str, str | None, str | None] | None:
    """Recognise ``SET``/``RESET``: ``("SET", key, value)``, ``("SET", None, None)`` (list),
    ``("RESET", key, None)``, ``("RESET", None, None)`` (all), or None for any other statement."""
    if match := _SET.match(text.strip()):
        key, value = match.group("key"), match.group("value")
        if key is None:
            return ("SET", None, None)
        return ("SET", _unquote(key), _unquote(value))
    if match := _RESET.match(text.strip()):
        key = match.group("key")
        return ("RESET", _unquote(key) if key else None, None)
    return None


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


JOB_PARAMETERS = "pipeline.global-job-parameters"
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


def _kind(text: str) -> str:
    """The statement's first keyword(s), upper-case: ``INSERT``, ``SELECT``, ``STATEMENT SET``..."""
    words = re.sub(r"/\*.*?\*/|--[^\n]*", " ", text, flags=re.S).split()
    head = " ".join(words[:4]).upper()
    if head.startswith("BEGIN STATEMENT SET"):
        return "BEGIN STATEMENT SET"
    if _BLOCK_START.match(head):
        return "STATEMENT SET"
    if head.startswith("EXECUTE INSERT"):
        return "INSERT"
    return words[0].upper() if words else ""


# --------------------------------------------------------------------------- execution
class _Runner:
    """Executes statements against one TableEnvironment and remembers what SET changed."""

    def __init__(self, t_env: TableEnvironment, *, wait: bool, max_rows: int, out: Any) -> None:
        self.t_env = t_env
        self.wait = wait
        self.max_rows = max_rows
        self.out = out
        self.set_keys: dict[str, str] = {}
        self.statement_set: list[Statement] | None = None  # inside BEGIN STATEMENT SET; ... END;

    def run(self, statements: Sequence[Statement]) -> None:
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
        kind = _kind(statement.text)
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
        result = self.t_env.execute_sql(statement.text)
        if kind in ("INSERT", "STATEMENT SET"):
            self._finish_job(result)
        elif kind in ("SELECT", "WITH", "VALUES") or kind in ("SHOW", "DESCRIBE", "DESC", "EXPLAIN"):
            self._print_rows(result)

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

    def _execute_statement_set(self, inserts: list[Statement]) -> None:
        statement_set = self.t_env.create_statement_set()
        for insert in inserts:
            statement_set.add_insert_sql(insert.text)
        self._finish_job(statement_set.execute())

    def _finish_job(self, result: Any) -> None:
        client = result.get_job_client()
        job_id = client.get_job_id() if client is not None else None
        print(f"Job {job_id} submitted", file=self.out, flush=True)
        if self.wait:
            result.wait()
            print(f"Job {job_id} finished", file=self.out, flush=True)

    def _print_rows(self, result: Any) -> None:
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
    out: Any = None,
) -> None:
    """Execute every statement of ``path`` in a streaming TableEnvironment of this process.

    Run from ``flink run`` that environment submits to the cluster; run directly it is a local
    mini-cluster. Raises :class:`SqlRunnerError` at the first failing statement.
    """
    text = Path(path).read_text(encoding="utf-8")
    statements = split_statements(text)
    # Without this a local run writes its logs into site-packages/pyflink/log.
    os.environ.setdefault("FLINK_LOG_DIR", str(Path(tempfile.gettempdir()) / "flink-llm-log"))
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    runner = _Runner(t_env, wait=wait, max_rows=max_rows, out=out or sys.stdout)
    for key, value in options:
        runner._set("SET", key, value)
    runner.run(statements)


# --------------------------------------------------------------------------- command line
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flink-llm sql", description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--file", required=True, help="the .sql file to run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a table option, before the file's SETs",
    )
    parser.add_argument("--max-rows", type=int, default=100, help="rows a SELECT prints (default 100)")
    parser.add_argument("--detached", action="store_true", help="do not wait for INSERT jobs to finish")
    cluster = parser.add_argument_group(
        "cluster", "run the file as jobs on a running cluster (bin/flink run)"
    )
    cluster.add_argument(
        "--cluster", action="store_true", help="submit to a cluster instead of running locally"
    )
    cluster.add_argument(
        "--jobmanager", help="HOST:PORT of its REST API (default: from the conf dir, else 127.0.0.1:8081)"
    )
    cluster.add_argument(
        "--workdir",
        default=".cluster",
        help="working dir of `flink-llm cluster start`; its conf/ is used if present",
    )
    cluster.add_argument(
        "--conf-dir", help="Flink conf dir for the client (default: $FLINK_CONF_DIR, else WORKDIR/conf)"
    )
    cluster.add_argument(
        "--pyexec", help="Python of the workers (default: python.executable of the conf dir)"
    )
    cluster.add_argument(
        "--pyfiles", default="", help="comma-separated files/dirs shipped to the workers (-pyfs)"
    )
    cluster.add_argument("--timeout", type=float, default=None, help="seconds before flink run is killed")
    return parser


def _options(values: Sequence[str]) -> list[tuple[str, str]]:
    options = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SqlRunnerError(f"--set expects key=value, got {item!r}")
        options.append((key.strip(), value.strip()))
    return options


def _client_conf_dir(args: argparse.Namespace) -> Path | None:
    """The conf dir ``flink run`` should read: --conf-dir, $FLINK_CONF_DIR, or the local cluster's."""
    if args.conf_dir:
        return Path(args.conf_dir).resolve()
    if os.environ.get("FLINK_CONF_DIR"):
        return Path(os.environ["FLINK_CONF_DIR"]).resolve()
    candidate = Path(args.workdir) / "conf"
    return candidate.resolve() if (candidate / "config.yaml").is_file() else None


def _read_flat_config(conf_dir: Path | None) -> dict[str, Any]:
    if conf_dir is None or not (conf_dir / "config.yaml").is_file():
        return {}
    import yaml

    from ..cluster import flatten_config

    return flatten_config(yaml.safe_load((conf_dir / "config.yaml").read_text()) or {})


def cluster_command(args: argparse.Namespace, conf_dir: Path | None = None) -> list[str]:
    """The ``bin/flink run`` command that re-runs this module with ``args.file`` on a cluster.

    A job's Python workers use the *client's* ``python.executable`` (Flink's default is plain
    ``python``), so without a conf dir that names one, this interpreter is passed as ``-pyexec``.
    """
    from ..cluster import find_flink_home

    config = _read_flat_config(conf_dir)
    jobmanager = args.jobmanager
    if jobmanager is None:
        host = config.get("rest.address", "127.0.0.1")
        jobmanager = f"{host}:{config.get('rest.port', 8081)}"
    command = [str(find_flink_home() / "bin" / "flink"), "run", "-m", jobmanager]
    command += ["-pyclientexec", sys.executable]
    pyexec = args.pyexec or (None if config.get("python.executable") else sys.executable)
    if pyexec:
        command += ["-pyexec", pyexec]
    if args.pyfiles:
        files = ",".join(str(Path(f).resolve()) for f in args.pyfiles.split(",") if f)
        command += ["-pyfs", files]
    # Long options only: `flink run` stops parsing its own options at the first unknown one.
    command += ["-pym", "flink_llm_udf.tools.sql_file", "--file", str(Path(args.file).resolve())]
    command += ["--max-rows", str(args.max_rows)]
    for item in args.set:
        command += ["--set", item]
    if args.detached:
        command.append("--detached")
    return command


def cluster_env(conf_dir: Path | None) -> dict[str, str]:
    """Environment of ``flink run``: its conf and log dirs, and this package on the client's path."""
    from ..cluster import clean_environ

    env = clean_environ()  # never inherit a local PyFlink run's loopback address (see there)
    if conf_dir is not None:
        env["FLINK_CONF_DIR"] = str(conf_dir)
        sibling_log = conf_dir.parent / "log"
        if sibling_log.is_dir():  # a `flink-llm cluster` workdir: client logs beside the daemons'
            env.setdefault("FLINK_LOG_DIR", str(sibling_log))
    env.setdefault("FLINK_LOG_DIR", str(Path(tempfile.gettempdir()) / "flink-llm-log"))
    env.setdefault("FLINK_IDENT_STRING", "flink-llm")  # names the client log; $USER may be unset
    package_root = str(PACKAGE_PARENT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """``flink-llm sql``; 0 when every statement succeeded, 1 at the first failure, 2 on bad usage."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not Path(args.file).is_file():
        parser.error(f"no such file: {args.file}")
    try:
        options = _options(args.set)
        if args.cluster:
            conf_dir = _client_conf_dir(args)
            command = cluster_command(args, conf_dir)
            try:
                done = subprocess.run(command, env=cluster_env(conf_dir), timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                print(f"flink-llm sql: flink run did not finish within {args.timeout} s", file=sys.stderr)
                return 1
            return 0 if done.returncode == 0 else 1
        run_file(args.file, options=options, wait=not args.detached, max_rows=args.max_rows)
    except SqlRunnerError as exc:
        print(f"flink-llm sql: {args.file}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

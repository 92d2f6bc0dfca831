"""``flink-llm sql``: the statement splitter and SET parser (pure tables), and a local run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from flink_llm_udf.tools import sql_file
from flink_llm_udf.tools.sql_file import (
    Statement,
    StatementExecutor,
    parse_set,
    python_files_import_paths,
    split_statements,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

SPLIT_CASES = [
    pytest.param("", [], id="empty"),
    pytest.param("  \n -- only a comment\n /* and another */ ", [], id="only-comments"),
    pytest.param("SELECT 1", [("SELECT 1", 1)], id="no-final-semicolon"),
    pytest.param("SELECT 1;SELECT 2;", [("SELECT 1", 1), ("SELECT 2", 1)], id="two-on-one-line"),
    pytest.param("SELECT 1;\n\nSELECT 2;\n", [("SELECT 1", 1), ("SELECT 2", 3)], id="line-numbers"),
    pytest.param(";;\n;SELECT 1;;", [("SELECT 1", 2)], id="empty-statements-dropped"),
    pytest.param("SELECT 'a;b';", [("SELECT 'a;b'", 1)], id="semicolon-in-string"),
    pytest.param("SELECT 'it''s;';", [("SELECT 'it''s;'", 1)], id="escaped-quote-in-string"),
    pytest.param("SELECT '--x', '/*y*/';", [("SELECT '--x', '/*y*/'", 1)], id="comment-markers-in-string"),
    pytest.param("SELECT `a;b` FROM t;", [("SELECT `a;b` FROM t", 1)], id="semicolon-in-backquotes"),
    pytest.param("SELECT 1 -- one; two\n;", [("SELECT 1", 1)], id="semicolon-in-line-comment"),
    pytest.param("SELECT /* ; */ 1;", [("SELECT /* ; */ 1", 1)], id="semicolon-in-block-comment"),
    pytest.param("-- head\n/* multi\nline; */\nSELECT 1;", [("SELECT 1", 4)], id="leading-comments-dropped"),
    pytest.param("SELECT 1 /* tail */;", [("SELECT 1", 1)], id="trailing-comment-dropped"),
    pytest.param(
        "SELECT a,\n  -- why\n  b FROM t;",
        [("SELECT a,\n  -- why\n  b FROM t", 1)],
        id="inner-comment-kept",
    ),
    pytest.param("SELECT 'unterminated;", [("SELECT 'unterminated;", 1)], id="unterminated-string"),
    pytest.param("SELECT 1; /* unterminated", [("SELECT 1", 1)], id="unterminated-comment"),
    pytest.param(
        "SET 'k' = 'v';\nCREATE TABLE t (x INT) WITH ('connector' = 'datagen');",
        [("SET 'k' = 'v'", 1), ("CREATE TABLE t (x INT) WITH ('connector' = 'datagen')", 2)],
        id="set-then-ddl",
    ),
    pytest.param(
        "EXECUTE STATEMENT SET BEGIN\nINSERT INTO a SELECT 1;\nINSERT INTO b SELECT 2;\nEND;\nSELECT 3;",
        [
            ("EXECUTE STATEMENT SET BEGIN\nINSERT INTO a SELECT 1;\nINSERT INTO b SELECT 2;\nEND", 1),
            ("SELECT 3", 5),
        ],
        id="statement-set-block",
    ),
    pytest.param(
        "execute statement set begin insert into a select ';'; end;",
        [("execute statement set begin insert into a select ';'; end", 1)],
        id="statement-set-lower-case",
    ),
    pytest.param(
        "BEGIN STATEMENT SET;\nINSERT INTO a SELECT 1;\nEND;",
        [("BEGIN STATEMENT SET", 1), ("INSERT INTO a SELECT 1", 2), ("END", 3)],
        id="sql-client-statement-set",
    ),
]


@pytest.mark.parametrize(("sql", "expected"), SPLIT_CASES)
def test_split_statements(sql: str, expected: list[tuple[str, int]]) -> None:
    assert split_statements(sql) == [Statement(text, line) for text, line in expected]


SET_CASES = [
    pytest.param("SET 'a.b' = 'c'", ("SET", "a.b", "c"), id="quoted"),
    pytest.param("set 'a' = 'it''s'", ("SET", "a", "it's"), id="escaped-quote"),
    pytest.param("SET 'a' = ''", ("SET", "a", ""), id="empty-value"),
    pytest.param("SET 'p' = 'x = y'", ("SET", "p", "x = y"), id="equals-in-value"),
    pytest.param("SET a.b=c", ("SET", "a.b", "c"), id="unquoted"),
    pytest.param("SET\n  'a' =\n  '1s'", ("SET", "a", "1s"), id="multi-line"),
    pytest.param("SET", ("SET", None, None), id="list"),
    pytest.param("RESET 'a.b'", ("RESET", "a.b", None), id="reset-key"),
    pytest.param("reset", ("RESET", None, None), id="reset-all"),
    pytest.param("SELECT 1", None, id="not-set"),
    pytest.param("SETTINGS", None, id="prefix-only"),
    pytest.param("RESETX 'a'", None, id="reset-prefix-only"),
]


@pytest.mark.parametrize(("text", "expected"), SET_CASES)
def test_parse_set(text: str, expected: tuple[str, str | None, str | None] | None) -> None:
    assert parse_set(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/a/b/udfs.py", ["/a/b"]),
        ("/a/b/udfs.py,/a/b/more.py", ["/a/b"]),
        ("/a/pkg, /c/deps.zip", ["/a", "/c/deps.zip"]),
        ("file:///x/y.py", ["/x"]),
        ("", []),
    ],
)
def test_python_files_import_paths(value: str, expected: list[str]) -> None:
    assert python_files_import_paths(value) == expected


def _args(**overrides: object) -> argparse.Namespace:
    values = {
        "file": "job.sql",
        "jobmanager": None,
        "pyexec": None,
        "pyfiles": "",
        "max_rows": 100,
        "set": [],
        "detached": False,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_cluster_command_uses_the_conf_dir(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "rest:\n  address: 127.0.0.1\n  port: 18081\npython.executable: /venv/bin/python\n"
    )
    command = sql_file.cluster_command(_args(set=["a=b"], detached=True), tmp_path)
    assert command[1:4] == ["run", "-m", "127.0.0.1:18081"]
    assert "-pyexec" not in command  # the conf dir's python.executable goes into the job
    tail = command[command.index("-pym") :]
    assert tail[:3] == ["-pym", "flink_llm_udf.tools.sql_file", "--file"]
    assert tail[-3:] == ["--set", "a=b", "--detached"]


def test_cluster_command_without_conf_dir_names_this_python() -> None:
    command = sql_file.cluster_command(_args(jobmanager="h:1", pyfiles="/x/u.py"), None)
    assert command[1:4] == ["run", "-m", "h:1"]
    assert command[command.index("-pyexec") + 1] == sys.executable
    assert command[command.index("-pyfs") + 1] == "/x/u.py"


class _FakeConfiguration:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def set_string(self, key: str, value: str) -> None:
        self.values[key] = value

    def remove_config(self, key: str) -> bool:
        return self.values.pop(key, None) is not None


class _FakeTableConfig:
    def __init__(self) -> None:
        self.configuration = _FakeConfiguration()

    def set(self, key: str, value: str) -> None:
        self.configuration.set_string(key, value)

    def get_configuration(self) -> _FakeConfiguration:
        return self.configuration


class _FakeTableEnv:
    def __init__(self) -> None:
        self.config = _FakeTableConfig()

    def get_config(self) -> _FakeTableConfig:
        return self.config


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        (["SET 'ai.model' = 'm'"], "ai.model:m"),
        (["SET 'ai.endpoint' = 'http://h:1/v1'"], "ai.endpoint:'http://h:1/v1'"),
        (["SET 'pipeline.global-job-parameters' = 'a:b'", "SET 'ai.model' = 'm'"], "a:b,ai.model:m"),
        (["SET 'ai.model' = 'm'", "SET 'ai.seed' = '7'", "RESET 'ai.model'"], "ai.seed:7"),
        (["SET 'pipeline.global-job-parameters' = 'a:b'", "SET 'ai.model' = 'm'", "RESET"], None),
        (["SET 'parallelism.default' = '2'"], None),
    ],
)
def test_ai_options_become_job_parameters(statements: list[str], expected: str | None) -> None:
    t_env = _FakeTableEnv()
    executor = StatementExecutor(t_env, wait=True, max_rows=1, out=None)  # type: ignore[arg-type]
    executor.run([Statement(text, 1) for text in statements])
    assert t_env.config.configuration.values.get(sql_file.JOB_PARAMETERS) == expected


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        sql_file.main(["-f", str(tmp_path / "absent.sql")])
    assert exc.value.code == 2


def test_cluster_env_drops_a_local_runs_loopback_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A local PyFlink run leaves these in os.environ; inherited by `flink run`, the cluster's
    # Python workers would call back into this process instead of running the UDFs themselves.
    monkeypatch.setenv("PYTHON_LOOPBACK_SERVER_ADDRESS", "localhost:1")
    monkeypatch.setenv("PYFLINK_GATEWAY_DISABLED", "true")
    monkeypatch.setenv("FLINK_CONF_DIR", "/somewhere/else")
    env = sql_file.cluster_env(tmp_path)
    assert "PYTHON_LOOPBACK_SERVER_ADDRESS" not in env and "PYFLINK_GATEWAY_DISABLED" not in env
    assert env["FLINK_CONF_DIR"] == str(tmp_path)
    assert env["PYTHONPATH"].split(":")[0] == str(REPO_ROOT)

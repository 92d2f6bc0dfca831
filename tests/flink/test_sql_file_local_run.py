"""``flink-llm sql -f FILE``: a local mini-cluster run, and a failing statement named."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.cluster_setup import HELPERS_DIR

from flink_llm_udf.tools import sql_file


@pytest.mark.flink
def test_local_run_of_a_sql_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    script = tmp_path / "local.sql"
    script.write_text(
        f"""-- a local mini-cluster run
SET 'parallelism.default' = '1';
SET 'python.files' = '{HELPERS_DIR / "cluster_udfs.py"}';
CREATE TEMPORARY FUNCTION py_upper AS 'cluster_udfs.upper' LANGUAGE PYTHON;
CREATE TEMPORARY FUNCTION ai_model AS 'cluster_udfs.ai_model_parameter' LANGUAGE PYTHON;
SET 'ai.model' = 'model:from-set';
CREATE TABLE local_out (id INT, upper_word STRING)
  WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv');
INSERT INTO local_out SELECT id, py_upper(word) FROM (VALUES (1, 'a;b'), (2, 'c')) AS t(id, word);
SELECT id, py_upper(word) AS w, ai_model(word) AS m FROM (VALUES (7, 'x'), (8, 'y'), (9, 'z')) AS t(id, word);
RESET 'parallelism.default';
SET;
"""
    )
    assert sql_file.main(["-f", str(script), "--max-rows", "2", "--set", "pipeline.name=local-sql"]) == 0
    printed = capsys.readouterr().out
    lines = sorted(
        line
        for part in out.iterdir()
        if not part.name.startswith(".")
        for line in part.read_text().splitlines()
    )
    assert lines == ["1,A;B", "2,C"]
    assert "op | id | w | m" in printed
    # SET 'ai.model' reached the Python worker as a job parameter (':' needs Flink's quoting).
    assert "+I | 7 | X | model:from-set" in printed and "+I | 8 | Y | model:from-set" in printed
    assert "+I | 9 | Z" not in printed and "stopped after 2 rows" in printed
    # SET; lists what is still set: --set and the file's SETs, minus the RESET one.
    assert "'pipeline.name' = 'local-sql'" in printed
    assert "'parallelism.default'" not in printed.split("(2 rows)")[-1]


@pytest.mark.flink
def test_failing_statement_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "bad.sql"
    script.write_text(
        "SET 'a' = 'b';\n\nCREATE TEMPORARY VIEW v AS SELECT 1 AS x;\n\nSELECT nope\nFROM missing_table;\n"
    )
    assert sql_file.main(["-f", str(script)]) == 1
    error = capsys.readouterr().err
    assert "statement 3 (line 5) failed: SELECT nope" in error
    assert "missing_table" in error

"""Bad inputs through Flink under IGNORE: the job runs to its end, good rows get their own answers,
every bad row is NULL (with an error naming why where the path reports errors), and no request
carrying invalid JSON reaches the simulator.

The Table API lets through what a function argument can be: a STRING column (NULL, empty, a 1 MB
text, a lone surrogate, which Flink itself turns into '?' on the way to Python) and columns of
other types (INT, DOUBLE with NaN, BYTES, BOOLEAN, ARRAY<STRING>), each checked on the Pandas UDF
(``ai_complete_result``: value, error, attempts) and the async function (``ai_complete_async``:
value). The DataStream function's ``text_of`` can hand the engine any Python value: the whole
``BAD_INPUTS`` table, with good rows between the bad ones.
"""

from __future__ import annotations

import collections

import pytest
from helpers.flink_jobs import (
    ANSWERED,
    IGNORE_BEAM_HANGUP,
    NULL_IN,
    ONE_MB_TEXT,
    answer,
    assert_unsent,
    bad_input_table,
    chat_calls,
    collect,
    invalid_json_problems,
    recorded,
    sequence_table,
    stream_env,
    table_env,
)

from flink_llm_udf import EngineSettings, OpenAICompatProvider
from flink_llm_udf.flink import LLMAsyncFunction, apply_llm, register_functions

pytestmark = [pytest.mark.flink, IGNORE_BEAM_HANGUP]

SETTINGS = EngineSettings(max_concurrency=4)
# A row with the 1 MB text carries it (or its answer) more than twice: above collect()'s 2 MB default.
BIG_ROWS = {"collect-sink.batch-size.max": "16mb"}
ROWS = 9
# The STRING column: SQL for the odd rows, and the text the function then sees; even rows are good.
STRING_ROWS = {
    1: ("CAST(NULL AS STRING)", None),
    3: ("''", ""),
    5: ("REPEAT('x', 1048576)", ONE_MB_TEXT),
    7: ("U&'x\\D800y'", "x?y"),  # Java encodes the lone surrogate to UTF-8 as '?' before Python sees it
}
# The other columns, each row of them not a string.
OTHER_COLUMNS = {
    "int": "CAST(42 + id AS INT)",
    "double": "CASE WHEN id % 2 = 0 THEN CAST('NaN' AS DOUBLE) ELSE id + 0.5 END",
    "bytes": "CAST(CONCAT('b', CAST(id AS STRING)) AS BYTES)",
    "bool": "id % 2 = 0",
    "array": "ARRAY['a', CAST(id AS STRING)]",
}


def _string_text(i: int) -> str | None:
    return STRING_ROWS[i][1] if i in STRING_ROWS else f"good row {i}"


def _why(column: str, i: int) -> str:
    """What the Pandas UDF makes of row ``i`` of a non-string column: the word its error names, or
    NULL_IN (Pandas shows a NULL DOUBLE as NaN, so a NaN reads as NULL there)."""
    if column == "double":
        return NULL_IN if i % 2 == 0 else "float"
    return {"int": "int", "bytes": "bytes", "bool": "bool", "array": "not a string"}[column]


def test_table_api_bad_inputs_leave_the_job_running_and_every_good_row_answered(sim) -> None:
    """One job, every column through ``ai_complete_result`` (Pandas) and ``ai_complete_async``: the
    STRING column's rows get their own answers (NULL: NULL, nothing sent); every row of the other
    columns is NULL, and on the Pandas path has no attempt and an error naming its type (a NaN
    DOUBLE: NULL without an error). The simulator gets each sendable text once per function,
    nothing else, and only valid JSON."""
    t_env = table_env(1, **BIG_ROWS)
    for prefix in ("p", "a"):  # one model per function kind, to tell their requests apart
        provider = OpenAICompatProvider(endpoint=sim.base_url, model=prefix, error_handling_strategy="IGNORE")
        register_functions(t_env, provider, settings=SETTINGS, names_prefix=f"{prefix}_")
    sequence_table(t_env, "seq", ROWS)
    string_sql = " ".join(f"WHEN id = {i} THEN {sql}" for i, (sql, _) in STRING_ROWS.items())
    columns = [("txt", f"CASE {string_sql} ELSE CONCAT('good row ', CAST(id AS STRING)) END")]
    columns += [(f"c_{name}", sql) for name, sql in OTHER_COLUMNS.items()]  # c_: INT etc. are keywords
    results = ", ".join(f"p_ai_complete_result({name}) AS r_{name}" for name, _ in columns)
    fields = ", ".join(f"r_{name}.`value`, r_{name}.error, r_{name}.attempts" for name, _ in columns)
    asyncs = ", ".join(f"a_ai_complete_async({name})" for name, _ in columns)
    out = collect(
        t_env.sql_query(f"""
        SELECT id, {fields}, {asyncs}
        FROM (SELECT id, {", ".join(name for name, _ in columns)}, {results}
              FROM (SELECT id, {", ".join(f"{sql} AS {name}" for name, sql in columns)} FROM seq))""")
    )

    assert sorted(row[0] for row in out) == list(range(ROWS))  # the job ran to its end
    width = len(columns)
    for row in out:
        i = row[0]
        pandas = [row[1 + 3 * k : 4 + 3 * k] for k in range(width)]
        async_values = row[1 + 3 * width :]
        text = _string_text(i)
        if text is None:
            assert pandas[0] == (None, None, 0) and async_values[0] is None, i
        else:
            assert pandas[0] == (answer(text), None, 1), (i, pandas[0][1:])
            assert async_values[0] == answer(text), i
        for k, name in enumerate(OTHER_COLUMNS, start=1):
            where = (i, name)
            assert async_values[k] is None, where  # ai_complete_async shows only the value
            value, error, attempts = pandas[k]
            assert value is None and attempts == 0, where  # nothing was sent
            why = _why(name, i)
            if why == NULL_IN:
                assert error is None, where
            else:
                assert_unsent(error, why, where)

    requests = recorded(sim)
    assert invalid_json_problems(requests) == []
    sendable = [t for i in range(ROWS) if (t := _string_text(i)) is not None]
    expected = collections.Counter([("p", t) for t in sendable] + [("a", t) for t in sendable])
    assert chat_calls(requests) == expected  # each sendable text once per function, nothing else


def test_datastream_bad_inputs_leave_the_job_running_and_every_good_row_answered(sim) -> None:
    """``text_of`` hands the engine each value of the table as it is; one output record per input."""
    from pyflink.common import Types

    table = bad_input_table()
    env = stream_env(1, **BIG_ROWS)
    source = env.from_collection([(i,) for i in range(len(table))], type_info=Types.ROW([Types.INT()]))
    function = LLMAsyncFunction(
        OpenAICompatProvider(endpoint=sim.base_url, model="m", error_handling_strategy="IGNORE"),
        SETTINGS,
        text_of=lambda r: table[r[0]][1],
        key_of=lambda r: r[0],
    )
    with apply_llm(source, function).execute_and_collect() as results:
        out = {int(r["key"]): r for r in results}

    assert sorted(out) == list(range(len(table)))  # the job ran to its end, one record per input
    for i, (name, value, why) in enumerate(table):
        record = out[i]
        got = (record["value"], record["error"], record["attempts"])
        if why == ANSWERED:
            assert got == (answer(value), None, 1), (name, got[1:])
            assert record["input"] == value, name
        elif why == NULL_IN:
            assert got == (None, None, 0), name
        else:
            assert got[0] is None and got[2] == 0, (name, got)
            assert_unsent(got[1], why, name)
    requests = recorded(sim)
    assert invalid_json_problems(requests) == []
    assert chat_calls(requests) == {("m", value): 1 for _, value, why in table if why == ANSWERED}

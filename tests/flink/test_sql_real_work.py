"""SQL for real work, in real Flink jobs: classify, extract and summarise, each function with its
own configuration, checked at the server (every request body) and on the outputs.

Few jobs (each costs a mini-cluster start): one pure-SQL job (named functions configured by job
parameters, per-call options, a prompt template, ``ai_extract`` with a nested type string and
``JSON_VALUE``, ``ai_classify`` with string and ARRAY labels, replies that break the schema), one
Table API job (typed ``ai_extract_udf`` results, ``ai_classify_udf``, ``register_functions``),
one DataStream job (``LLMAsyncFunction`` with a result type).

Every structured answer is predicted from the simulator's rules (``_structured_replies``): a
value hangs only on the row's text and the value's path, ``stable_hash(row, "$.address.city")``.

What Flink 2.3 allows here (pinned by ``test_flink_refuses_two_level_field_access_on_a_python_result``):
an untyped ``NULL`` as the model argument, ``ARRAY['a', 'b']`` as labels, and one level of field
access on a Python function's ROW result (``f(review).score``, ``f(review).address``); two levels
(``f(review).address.city``) fail in the planner. Flink shares one call of an async function
among every use of its result (``f(review).score`` and ``f(review).address``; ``x`` and
``JSON_VALUE(x, …)``); a vectorized (Pandas) one is called once per use
(``test_reusing_a_result_in_sql_calls_the_function_once``). ``extract`` is a SQL keyword: a
function of that name cannot be called.
"""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from helpers.flink_jobs import (
    DEFAULT_SYSTEM_PROMPT,
    IGNORE_BEAM_HANGUP,
    answer,
    chat_bodies,
    collect,
    recorded,
    stream_env,
    table_env,
    user_text,
)

from flink_llm_udf import OpenAICompatProvider
from flink_llm_udf.simulator import stable_hash, structured_reply

pytestmark = [pytest.mark.flink, IGNORE_BEAM_HANGUP]

MAX_CONCURRENCY = 4
ASYNC_CONF = {  # what a SQL user SETs for the async functions (see README, Flink settings)
    "table.exec.async-scalar.max-concurrent-operations": str(2 * MAX_CONCURRENCY),
    "table.exec.async-scalar.timeout": "0 ms",
    "table.exec.async-scalar.retry-strategy": "NO_RETRY",
}


def digest8(row: str, path: str) -> str:
    """The first 8 hex digits of the simulator's hash of a value's path (its string values)."""
    return hashlib.sha256(f"{row}|{path}".encode()).hexdigest()[:8]


def predicted_label(row: str, labels: list[str]) -> str:
    return labels[stable_hash(row, "$.label") % len(labels)]


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def chat_body(model: str, system: str, user: str, **extra: Any) -> dict[str, Any]:
    """A chat request body as the package sends it: only what is configured, nothing else."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return {"model": model, "messages": messages, **extra}


def json_schema_format(schema: dict[str, Any], name: str, strict: bool = True) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


def labels_schema(labels: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": labels}},
        "required": ["label"],
        "additionalProperties": False,
    }


def nullable(json_type: str, **more: Any) -> dict[str, Any]:
    return {"type": [json_type, "null"], **more}


def closed_object(**properties: dict[str, Any]) -> dict[str, Any]:
    """A strict JSON-schema object: every property required, no others (a Flink ROW)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# ----------------------------------------------------------------------------- 1. pure SQL
SENTIMENTS = ["positive", "negative", "neutral"]
EXTRACT_TYPE = "ROW<sentiment STRING, score DOUBLE, tags ARRAY<STRING>, address ROW<city STRING>>"
#: The JSON schema the type string above must become (nullable fields accept null too).
EXTRACT_SCHEMA = closed_object(
    sentiment=nullable("string"),
    score=nullable("number"),
    tags=nullable("array", items=nullable("string")),
    address={"anyOf": [closed_object(city=nullable("string")), {"type": "null"}]},
)
#: ai_extract_async gets a JSON schema text instead of a type string.
STARS_SCHEMA = closed_object(
    summary={"type": "string"}, stars={"type": "integer", "minimum": 1, "maximum": 5}
)
BASE_MODEL, SUMMARY_MODEL = "sim-base", "sim-summary"
BASE_PROMPT = "You review products, briefly."
CLASSIFY_PROMPT = "Label the review: one word, no comma: really."
SUMMARY_TOKENS = 6
#: Braces and a placeholder-like text in the data must reach the model literally.
TEMPLATE = "Product: {product} | Review: {review} | Note: {note}"

#: (id, product, review, note): unique texts (the engine shares identical requests in flight).
SQL_ROWS: list[tuple[int, str | None, str | None, str | None]] = [
    (1, "kettle", "Great kettle, boils fast.", "a gift"),
    (2, "lamp {desk}", 'Said "bright"; it is {not}.', "use {review} as is"),
    (3, "o'brien mug", "The {review} and {product} words stay }{ as typed", "braces {{ }}"),
    (4, "blender", "Broke after a week \\ sadly", None),  # NULL note: no summary, no request
    (5, "e-reader", "Très bien, とても良い 👍", "{note}"),
    (6, "yoga mat", None, "NULL review"),  # NULL review: NULL everywhere, no request
]
RETRIED = "[sim:fail=2,schema_violation] retried extract row"  # wrong twice, then right
HOPELESS = "[sim:schema_violation] hopeless extract row"  # wrong every time
INVALID_ROWS = [(7, RETRIED), (8, HOPELESS)]
INVALID_OUTPUT_RETRIES = 2  # EngineSettings' default

SQL_COLUMNS = (
    "id",
    "named_label",
    "summary",
    "warm",
    "warm_untyped_null",
    "extracted",
    "city",
    "label",
    "ab",
    "stars_json",
)


def write_sql_rows(path: Path) -> None:
    rows = [dict(id=i, product=p, review=r, note=n, kind="normal") for i, p, r, n in SQL_ROWS]
    rows += [dict(id=i, product="probe", review=r, note="n", kind="invalid") for i, r in INVALID_ROWS]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def rendered(product: str, review: str, note: str) -> str:
    """The template filled in by hand: each value inserted as it is."""
    return "Product: " + product + " | Review: " + review + " | Note: " + note


def sql_job_query() -> str:
    """Normal rows through every function; the rows whose replies break the schema only through
    ``ai_extract`` (the simulator counts a directive's attempts per text, across functions).

    No column reuses another's result: Flink would inline the call into each use (see
    ``test_reusing_a_result_in_sql_calls_the_function_once``).
    """
    city = f"JSON_VALUE(ai_extract(review, '{EXTRACT_TYPE}'), '$.address.city')"
    return f"""
        SELECT id,
               classify(review, 'positive,negative,neutral') AS named_label,
               summarize(JSON_OBJECT('product' VALUE product, 'review' VALUE review,
                                     'note' VALUE note)) AS summary,
               ai_complete(review, CAST(NULL AS STRING), JSON_OBJECT('temperature' VALUE 0.5)) AS warm,
               ai_complete(review, NULL, JSON_OBJECT('temperature' VALUE 0.25)) AS warm_untyped_null,
               ai_extract_async(review, '{EXTRACT_TYPE}') AS extracted,
               {city} AS city,
               ai_classify(review, 'positive,negative,neutral') AS label,
               ai_classify(review, ARRAY['a', 'b']) AS ab,
               ai_extract_async(review, '{json.dumps(STARS_SCHEMA)}') AS stars_json
        FROM reviews WHERE kind = 'normal'
        UNION ALL
        SELECT id, CAST(NULL AS STRING), CAST(NULL AS STRING), CAST(NULL AS STRING),
               CAST(NULL AS STRING), CAST(NULL AS STRING), {city},
               CAST(NULL AS STRING), CAST(NULL AS STRING), CAST(NULL AS STRING)
        FROM reviews WHERE kind = 'invalid'"""


def predicted_extract(row: str) -> dict[str, Any]:
    """``EXTRACT_TYPE``'s reply, from the simulator's rules by hand."""
    return {
        "sentiment": f"sentiment-{digest8(row, '$.sentiment')}",
        "score": (stable_hash(row, "$.score") % 10000) / 100,
        "tags": [f"value-{digest8(row, '$.tags[0]')}", f"value-{digest8(row, '$.tags[1]')}"],
        "address": {"city": f"city-{digest8(row, '$.address.city')}"},
    }


def expected_sql_bodies() -> collections.Counter[str]:
    """Every request the pure-SQL job must send, exactly (one per function and sendable row)."""
    bodies: list[dict[str, Any]] = []
    for _, product, review, note in SQL_ROWS:
        if review is None:
            continue
        sentiments = json_schema_format(labels_schema(SENTIMENTS), "label")
        extract = chat_body(
            BASE_MODEL, BASE_PROMPT, review, response_format=json_schema_format(EXTRACT_SCHEMA, "row")
        )
        bodies += [
            chat_body(BASE_MODEL, CLASSIFY_PROMPT, review, temperature=0.0, response_format=sentiments),
            chat_body(BASE_MODEL, BASE_PROMPT, review, temperature=0.5),
            chat_body(BASE_MODEL, BASE_PROMPT, review, temperature=0.25),
            *[extract] * 2,  # ai_extract for the city, ai_extract_async for the whole reply
            chat_body(BASE_MODEL, BASE_PROMPT, review, response_format=sentiments),
            chat_body(
                BASE_MODEL,
                BASE_PROMPT,
                review,
                response_format=json_schema_format(labels_schema(["a", "b"]), "label"),
            ),
            chat_body(
                BASE_MODEL, BASE_PROMPT, review, response_format=json_schema_format(STARS_SCHEMA, "row")
            ),
        ]
        if product is not None and note is not None:
            prompt = rendered(product, review, note)
            bodies.append(chat_body(SUMMARY_MODEL, BASE_PROMPT, prompt, max_tokens=SUMMARY_TOKENS))
    for _, review in INVALID_ROWS:  # asked again at once after each reply that breaks the schema
        body = chat_body(
            BASE_MODEL, BASE_PROMPT, review, response_format=json_schema_format(EXTRACT_SCHEMA, "row")
        )
        bodies += [body] * (1 + INVALID_OUTPUT_RETRIES)
    return collections.Counter(canonical(body) for body in bodies)


def test_pure_sql_classify_extract_summarize_each_with_its_own_options(sim, tmp_path: Path) -> None:
    data = tmp_path / "reviews.jsonl"
    write_sql_rows(data)
    t_env = table_env(
        1,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": BASE_MODEL,
            "ai.system-prompt": BASE_PROMPT,
            "ai.max-concurrency": MAX_CONCURRENCY,
            "ai.error-handling-strategy": "IGNORE",
            # classify: its own system prompt (with a colon and a comma) and temperature 0
            "ai.classify.system-prompt": CLASSIFY_PROMPT,
            "ai.classify.temperature": 0,
            # summarize: another model, a token cap and a template over three columns
            "ai.summarize.model": SUMMARY_MODEL,
            "ai.summarize.max-tokens": SUMMARY_TOKENS,
            "ai.summarize.prompt-template": TEMPLATE,
        },
        **ASYNC_CONF,
    )
    for name, where in (
        ("classify", "classify.classify"),
        ("summarize", "complete.summarize"),
        ("ai_complete", "ai_complete"),
        ("ai_extract", "ai_extract"),
        ("ai_extract_async", "ai_extract_async"),
        ("ai_classify", "ai_classify"),
    ):
        t_env.execute_sql(f"CREATE TEMPORARY FUNCTION {name} AS 'flink_llm_udf.sql.{where}' LANGUAGE PYTHON")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE reviews (id INT, product STRING, review STRING, note STRING, kind STRING)
        WITH ('connector' = 'filesystem', 'path' = '{data.as_uri()}', 'format' = 'json')""")

    out = {
        row[0]: dict(zip(SQL_COLUMNS, row, strict=True)) for row in collect(t_env.sql_query(sql_job_query()))
    }
    requests = recorded(sim)

    # at the server: exactly the requests expected, each with its own function's options
    got = collections.Counter(canonical(body) for body in chat_bodies(requests))
    expected = expected_sql_bodies()
    unexpected, missing = list((got - expected).elements()), list((expected - got).elements())
    assert got == expected, f"unexpected: {unexpected[:3]}\nmissing: {missing[:3]}"
    assert {r["path"] for r in requests} == {"/v1/chat/completions"}

    assert sorted(out) == [i for i, *_ in SQL_ROWS] + [i for i, _ in INVALID_ROWS]
    for i, product, review, note in SQL_ROWS:
        row = out[i]
        if review is None:
            assert all(row[column] is None for column in SQL_COLUMNS[1:]), row
            continue
        assert row["named_label"] == predicted_label(review, SENTIMENTS), row
        assert row["label"] == predicted_label(review, SENTIMENTS), row  # same row, same label
        assert row["ab"] == predicted_label(review, ["a", "b"]), row
        assert row["warm"] == row["warm_untyped_null"] == answer(review), row
        if note is None:
            assert row["summary"] is None, row  # a NULL template field: NULL, no request
        else:
            assert row["summary"] == answer(rendered(product, review, note), max_tokens=SUMMARY_TOKENS)
        extracted = json.loads(row["extracted"])
        assert extracted == predicted_extract(review) == structured_reply(EXTRACT_SCHEMA, review)
        assert row["city"] == f"city-{digest8(review, '$.address.city')}", row
        stars = json.loads(row["stars_json"])
        assert stars == {
            "summary": " ".join(review.split()[:8]),  # a 'summary' property echoes the row's words
            "stars": 1 + stable_hash(review, "$.stars") % 5,
        }, row

    # schema violations: asked again at once, up to invalid-output-retries times
    assert out[7]["city"] == predicted_extract(RETRIED)["address"]["city"]  # right at the third try
    assert out[8]["city"] is None  # IGNORE: NULL after 3 tries
    faults = [r for r in requests if user_text(r["body"]) in (RETRIED, HOPELESS)]
    by_row = collections.Counter((user_text(r["body"]), r["fault"]) for r in faults)
    assert by_row == {
        (RETRIED, "directive_schema_violation"): 2,
        (RETRIED, None): 1,
        (HOPELESS, "directive_schema_violation"): 1 + INVALID_OUTPUT_RETRIES,
    }


def test_flink_refuses_two_level_field_access_on_a_python_result(flink_runtime) -> None:
    """Planner-only (no job): ``f(x).address`` plans, ``f(x).address.city`` does not (Flink 2.3's
    ``RemoteCalcSplitRule`` casts the inner field access to a call). Read such a field in the
    client from the ROW, or in SQL from ``ai_extract``'s JSON with ``JSON_VALUE``."""
    from flink_llm_udf.flink import ai_extract_udf

    t_env = table_env(1)
    provider = OpenAICompatProvider(endpoint="http://127.0.0.1:9/v1", model="m")
    t_env.create_temporary_function(
        "fx", ai_extract_udf(provider, "ROW<score DOUBLE, address ROW<city STRING>>")
    )
    t_env.execute_sql("CREATE TEMPORARY VIEW r AS SELECT * FROM (VALUES (1, 'a')) AS v(id, review)")
    t_env.explain_sql("SELECT id, fx(review).score, fx(review).address FROM r")
    with pytest.raises(
        Exception, match=r"RexFieldAccess cannot be cast to class org\.apache\.calcite\.rex\.RexCall"
    ):
        t_env.explain_sql("SELECT id, fx(review).address.city FROM r")


def test_reading_an_async_result_several_times_is_one_call_a_row(flink_runtime) -> None:
    """Planner-only: ``x`` and ``JSON_VALUE(x, …)`` of one ``ai_extract_async`` are one call (the
    README's advice); the Pandas ``ai_extract`` is copied into each projection that reads it."""
    t_env = table_env(1)
    for name in ("ai_extract", "ai_extract_async"):
        t_env.execute_sql(f"CREATE TEMPORARY FUNCTION {name} AS 'flink_llm_udf.sql.{name}' LANGUAGE PYTHON")
    t_env.execute_sql("CREATE TEMPORARY VIEW r AS SELECT * FROM (VALUES (1, 'a')) AS v(id, review)")

    def calls(function: str, operator: str) -> int:
        plan = t_env.explain_sql(f"""
            SELECT id, x, JSON_VALUE(x, '$.score') AS score
            FROM (SELECT id, {function}(review, 'ROW<score DOUBLE>') AS x FROM r)""")
        optimized = plan.split("== Optimized Execution Plan ==")[-1].splitlines()
        line = next(line for line in optimized if operator in line)
        return line.count(f"{function}(")

    assert calls("ai_extract_async", "PythonAsyncCalc") == 1
    assert calls("ai_extract", "PythonCalc") == 2


# ----------------------------------------------------------------------------- 2 + 5. Table API
TYPED_ROWS = [(1, "Sturdy backpack, fits a laptop."), (2, "Zip broke {twice}."), (3, None), (4, "Meh.")]
TYPED_LABELS = ["keep", "return"]
TYPED_MODEL = "sim-typed"
TYPED_TYPE_STRING = (
    "ROW<`stars` INT, `score` DOUBLE, `recommend` BOOLEAN, `tags` ARRAY<STRING>, "
    "`address` ROW<`city` STRING, `zip` INT>>"
)


def typed_result_type():
    from pyflink.table import DataTypes

    return DataTypes.ROW(
        [
            DataTypes.FIELD("stars", DataTypes.INT()),
            DataTypes.FIELD("score", DataTypes.DOUBLE()),
            DataTypes.FIELD("recommend", DataTypes.BOOLEAN()),
            DataTypes.FIELD("tags", DataTypes.ARRAY(DataTypes.STRING())),
            DataTypes.FIELD(
                "address",
                DataTypes.ROW(
                    [DataTypes.FIELD("city", DataTypes.STRING()), DataTypes.FIELD("zip", DataTypes.INT())]
                ),
            ),
        ]
    )


def as_tuples(value: Any) -> Any:
    """A ROW's values as nested tuples (a dict's in its order), lists kept, for comparing."""
    from pyflink.common import Row

    if isinstance(value, dict):
        value = tuple(value.values())
    if isinstance(value, (tuple, Row)):
        return tuple(as_tuples(item) for item in value)
    return value


def predicted_typed(row: str) -> dict[str, Any]:
    return {
        "stars": stable_hash(row, "$.stars") % 100,
        "score": (stable_hash(row, "$.score") % 10000) / 100,
        "recommend": stable_hash(row, "$.recommend") % 2 == 1,
        "tags": [f"value-{digest8(row, '$.tags[0]')}", f"value-{digest8(row, '$.tags[1]')}"],
        "address": {
            "city": f"city-{digest8(row, '$.address.city')}",
            "zip": stable_hash(row, "$.address.zip") % 100,
        },
    }


def test_table_api_typed_rows_labels_and_registered_functions(sim) -> None:
    from pyflink.common import Row
    from pyflink.table import DataTypes
    from pyflink.table.expressions import col

    from flink_llm_udf.flink import ai_classify_udf, ai_extract_udf, register_functions

    t_env = table_env(
        1,
        {
            "ai.endpoint": sim.base_url,
            "ai.model": BASE_MODEL,
            "ai.max-concurrency": MAX_CONCURRENCY,
            "ai.classify.system-prompt": CLASSIFY_PROMPT,
            "ai.classify.temperature": 0,
            "ai.summarize.model": SUMMARY_MODEL,
            "ai.summarize.max-tokens": SUMMARY_TOKENS,
        },
        **ASYNC_CONF,
    )
    provider = OpenAICompatProvider(endpoint=sim.base_url, model=TYPED_MODEL)
    extract = ai_extract_udf(provider, typed_result_type())
    label_of = ai_classify_udf(provider, labels=TYPED_LABELS)
    own = {"classify": None, "summarize": None, "topic": "classify"}  # a kind: topic(text, labels)
    names = register_functions(t_env, None, functions=own)
    assert {"classify", "summarize", "topic", "ai_complete"} <= set(names)
    t_env.create_temporary_function("typed_extract", extract)

    reviews = t_env.from_elements(
        TYPED_ROWS,
        DataTypes.ROW(
            [DataTypes.FIELD("id", DataTypes.INT()), DataTypes.FIELD("review", DataTypes.STRING())]
        ),
    )
    typed = reviews.select(
        col("id"), col("review"), extract(col("review")).alias("x"), label_of(col("review")).alias("label")
    )
    t_env.create_temporary_view("typed", typed)
    result = t_env.sql_query("""
        SELECT id, x, label,
               typed_extract(review).score AS score_sql, typed_extract(review).address AS address_sql,
               classify(review) AS c, summarize(review) AS s, topic(review, 'north,south') AS t
        FROM typed""")
    schema = str(result.get_resolved_schema())
    assert f"`x` {TYPED_TYPE_STRING}" in schema and "`address_sql` ROW<`city` STRING, `zip` INT>" in schema
    out = collect(result)
    requests = recorded(sim)

    by_id = {row[0]: row for row in out}
    assert sorted(by_id) == [i for i, _ in TYPED_ROWS]
    for i, text in TYPED_ROWS:
        _, x, label, score_sql, address_sql, c, s, t = by_id[i]
        if text is None:
            assert (x, label, score_sql, address_sql, c, s, t) == (None,) * 7
            continue
        # a collected ROW is positional (fields in the declared order), a nested one a Row too
        want = predicted_typed(text)
        assert isinstance(x, Row) and isinstance(x[4], Row) and isinstance(address_sql, Row), x
        assert as_tuples(x) == as_tuples(want), (i, x)
        stars, score, recommend, _, (_, zip_code) = x
        assert (type(stars), type(score), type(recommend), type(zip_code)) == (int, float, bool, int), x
        assert score_sql == want["score"] and type(score_sql) is float
        assert as_tuples(address_sql) == as_tuples(want["address"])
        assert label == predicted_label(text, TYPED_LABELS)
        assert c == answer(text) and s == answer(text, max_tokens=SUMMARY_TOKENS)
        assert t == predicted_label(text, ["north", "south"])

    typed_schema = closed_object(
        stars=nullable("integer"),
        score=nullable("number"),
        recommend=nullable("boolean"),
        tags=nullable("array", items=nullable("string")),
        address={
            "anyOf": [closed_object(city=nullable("string"), zip=nullable("integer")), {"type": "null"}]
        },
    )
    texts = [text for _, text in TYPED_ROWS if text is not None]
    expected: list[dict[str, Any]] = []
    for text in texts:
        expected += [
            chat_body(
                TYPED_MODEL,
                DEFAULT_SYSTEM_PROMPT,
                text,
                response_format=json_schema_format(labels_schema(TYPED_LABELS), "label"),
            ),
            chat_body(BASE_MODEL, CLASSIFY_PROMPT, text, temperature=0.0),
            chat_body(SUMMARY_MODEL, DEFAULT_SYSTEM_PROMPT, text, max_tokens=SUMMARY_TOKENS),
            chat_body(
                BASE_MODEL,
                DEFAULT_SYSTEM_PROMPT,
                text,
                response_format=json_schema_format(labels_schema(["north", "south"]), "label"),
            ),
        ]
    got = collections.Counter(canonical(body) for body in chat_bodies(requests))
    extract_body = {
        text: canonical(
            chat_body(
                TYPED_MODEL,
                DEFAULT_SYSTEM_PROMPT,
                text,
                response_format=json_schema_format(typed_schema, "row"),
            )
        )
        for text in texts
    }
    # two typed calls a row: the Table API's x, and one that SQL's .score and .address share
    # (Flink's planner splits the call out of both field accesses once)
    extract_calls = {text: got.pop(extract_body[text], 0) for text in texts}
    assert extract_calls == {text: 2 for text in texts}
    assert got == collections.Counter(canonical(body) for body in expected)


# ----------------------------------------------------------------------------- 4. DataStream
def test_datastream_result_type_gives_a_typed_value_field(sim) -> None:
    from pyflink.common import Row, Types

    from flink_llm_udf.flink import LLMAsyncFunction, apply_llm

    # No NULL text: PyFlink's execute_and_collect cannot turn a NULL ROW field back into Python
    # (pickled_bytes_to_python_obj reads data[0] of the pickled None: "cannot convert 'int' object
    # to bytes", raised in the client while collecting).
    texts = ["first record {x}", "second record", "third record"]
    env = stream_env(1)
    source = env.from_collection(
        [(i, t) for i, t in enumerate(texts)],
        type_info=Types.ROW_NAMED(["id", "txt"], [Types.INT(), Types.STRING()]),
    )
    function = LLMAsyncFunction(
        OpenAICompatProvider(endpoint=sim.base_url, model="sim-ds"),
        result_type="ROW<label STRING, score DOUBLE, detail ROW<n INT>>",
        text_of=lambda r: r[1],
        key_of=lambda r: r[0],
        options_of=lambda r: {"temperature": 0.1 * r[0]},
    )
    with apply_llm(source, function).execute_and_collect() as results:
        out = {int(r["key"]): r for r in results}
    bodies = chat_bodies(recorded(sim))

    assert sorted(out) == [0, 1, 2]
    for i, text in enumerate(texts):
        value = out[i]["value"]
        assert isinstance(value, Row), out[i]
        assert value.as_dict(recursive=True) == {
            "label": f"label-{digest8(text, '$.label')}",
            "score": (stable_hash(text, "$.score") % 10000) / 100,
            "detail": {"n": stable_hash(text, "$.detail.n") % 100},
        }
        assert type(value["detail"]["n"]) is int and out[i]["error"] is None
    assert {user_text(b): b["temperature"] for b in bodies} == {text: 0.1 * i for i, text in enumerate(texts)}
    assert all(b["response_format"]["type"] == "json_schema" for b in bodies)

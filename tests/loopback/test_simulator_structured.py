"""The simulator's structured output over real HTTP on 127.0.0.1: json_schema, json_object, faults."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from flink_llm_udf.simulator import (
    INVALID_JSON_REPLY,
    JSON_SCHEMA_UNSUPPORTED,
    NO_VIOLATION,
    SCHEMA_MARKER,
    SchemaError,
    SimulatorConfig,
    SimulatorProcess,
    SimulatorThread,
    count_words,
    expected_chat_reply,
    expected_prompt_tokens,
    schema_violation,
    stable_hash,
    structured_reply,
)
from flink_llm_udf.simulator._behaviour import build_parser, config_from_argv, config_to_argv

Response = tuple[int, Any]

#: Nested on purpose: an array of objects through $defs, an enum, integer bounds, nullable
#: types, a nullable object (anyOf with null), formats, a const, a map. Strict-mode shaped.
REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "language": {"type": ["string", "null"]},
        "published": {"type": "string", "format": "date"},
        "version": {"const": 2},
        "aspects": {"type": "array", "items": {"$ref": "#/$defs/aspect"}},
        "author": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "verified": {"type": "boolean"}},
                    "required": ["name", "verified"],
                    "additionalProperties": False,
                },
            ]
        },
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
    },
    "required": [
        "summary",
        "sentiment",
        "stars",
        "confidence",
        "language",
        "published",
        "version",
        "aspects",
        "author",
        "counts",
    ],
    "additionalProperties": False,
    "$defs": {
        "aspect": {
            "type": "object",
            "properties": {
                "topic": {"type": "string"},
                "score": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 3},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
            },
            "required": ["topic", "score", "tags"],
            "additionalProperties": False,
        }
    },
}

LABELS = ["positive", "negative", "neutral", "mixed"]
CLASSIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": LABELS}},
    "required": ["label"],
    "additionalProperties": False,
}


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread() as server:
        yield server


def post(url: str, payload: Any) -> Response:
    """One blocking POST; returns the status and the JSON body."""
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def json_schema_format(schema: dict[str, Any], name: str = "row") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def messages_for(row: str, system: str | None = None) -> list[dict[str, str]]:
    head = [] if system is None else [{"role": "system", "content": system}]
    return [*head, {"role": "user", "content": row}]


def ask(sim: Any, row: str, response_format: Any, system: str | None = None) -> Response:
    payload = {
        "model": "sim-model",
        "messages": messages_for(row, system),
        "response_format": response_format,
    }
    return post(sim.base_url + "/chat/completions", payload)


def content_of(body: dict[str, Any]) -> str:
    return str(body["choices"][0]["message"]["content"])


def fallback_prompt(schema: dict[str, Any]) -> str:
    """A system prompt like the client's json_object fallback: the marker line, then the schema."""
    compact = json.dumps(schema, separators=(",", ":"))
    return f"Answer with one JSON object.\n{SCHEMA_MARKER}\n{compact}"


def validate(value: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(value)


# ------------------------------------------------------------------ json_schema


def test_json_schema_reply_validates_and_is_predicted(sim: SimulatorThread) -> None:
    row = "The battery lasts two days and the screen is bright, but the speaker is tinny."
    status, body = ask(sim, row, json_schema_format(REVIEW_SCHEMA, "review"))
    assert status == 200
    value = json.loads(content_of(body))
    validate(value, REVIEW_SCHEMA)
    assert value == structured_reply(REVIEW_SCHEMA, row)
    assert value["summary"] == "The battery lasts two days and the screen"  # the row's first 8 words
    assert value["version"] == 2 and len(value["aspects"]) == 2
    assert all(len(aspect["tags"]) == 3 for aspect in value["aspects"])
    assert value["author"] is not None and value["confidence"] is not None  # the non-null branch
    assert body["choices"][0]["finish_reason"] == "stop"


def test_usage_counts_words_and_request_counters_keep_counting(sim: SimulatorThread) -> None:
    row = "two words"
    status, body = ask(sim, row, json_schema_format(REVIEW_SCHEMA))
    assert status == 200
    usage = body["usage"]
    assert usage["prompt_tokens"] == expected_prompt_tokens(messages_for(row))
    assert usage["completion_tokens"] == count_words(content_of(body))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    stats = sim.stats()
    assert stats["requests_total"] == 1 and stats["by_status"] == {"200": 1}
    assert stats["by_path"] == {"/v1/chat/completions": 1}


def test_same_row_same_reply_different_rows_differ(sim: SimulatorThread) -> None:
    rows = [f"review number {i}" for i in range(6)]
    first = [content_of(ask(sim, row, json_schema_format(REVIEW_SCHEMA))[1]) for row in rows]
    again = [content_of(ask(sim, row, json_schema_format(REVIEW_SCHEMA))[1]) for row in rows]
    assert first == again
    assert len(set(first)) == len(rows)


@pytest.mark.parametrize("row", ["I loved it", "Terrible service.", "meh", "", "ünïcode ✓ 中文"])
def test_enum_label_follows_the_documented_hash(sim: SimulatorThread, row: str) -> None:
    status, body = ask(sim, row, json_schema_format(CLASSIFY_SCHEMA, "classify"))
    assert status == 200
    digest = hashlib.sha256((row + "|" + "$.label").encode("utf-8")).hexdigest()
    expected = LABELS[int(digest, 16) % len(LABELS)]
    assert json.loads(content_of(body)) == {"label": expected}
    assert stable_hash(row, "$.label") == int(digest, 16)


def test_every_choice_gets_the_same_structured_reply(sim: SimulatorThread) -> None:
    payload = {
        "model": "sim-model",
        "messages": messages_for("a row"),
        "response_format": json_schema_format(CLASSIFY_SCHEMA),
        "n": 3,
        "max_tokens": 1,  # structured replies are never cut
    }
    status, body = post(sim.base_url + "/chat/completions", payload)
    assert status == 200
    contents = {c["message"]["content"] for c in body["choices"]}
    assert contents == {json.dumps(structured_reply(CLASSIFY_SCHEMA, "a row"))}


def test_the_row_is_the_first_user_message(sim: SimulatorThread) -> None:
    messages = [*messages_for("the row"), {"role": "user", "content": "Classify the row above."}]
    payload = {"model": "m", "messages": messages, "response_format": json_schema_format(CLASSIFY_SCHEMA)}
    status, body = post(sim.base_url + "/chat/completions", payload)
    assert status == 200
    assert json.loads(content_of(body)) == structured_reply(CLASSIFY_SCHEMA, "the row")


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema"}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"schema": CLASSIFY_SCHEMA}},
            "response_format.json_schema.name",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": []}},
            "response_format.json_schema.schema",
        ),
        (json_schema_format({"$ref": "https://example.com/schema.json"}), "response_format"),
        (json_schema_format({"type": "integer", "minimum": 5, "maximum": 1}), "response_format"),
        (json_schema_format({"type": "decimal"}), "response_format"),
    ],
)
def test_bad_json_schema_requests_get_openai_400(
    sim: SimulatorThread, response_format: Any, param: str
) -> None:
    status, body = ask(sim, "x", response_format)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param


# ------------------------------------------------------------------ json_object


def test_json_object_with_the_marker_answers_the_prompt_schema(sim: SimulatorThread) -> None:
    row = "Shipping took three weeks."
    status, body = ask(sim, row, {"type": "json_object"}, system=fallback_prompt(REVIEW_SCHEMA))
    assert status == 200
    value = json.loads(content_of(body))
    validate(value, REVIEW_SCHEMA)
    assert value == structured_reply(REVIEW_SCHEMA, row)
    _, by_schema = ask(sim, row, json_schema_format(REVIEW_SCHEMA))
    assert content_of(by_schema) == content_of(body)  # the same answer either way


@pytest.mark.parametrize(
    "system", [None, "Be terse.", f"{SCHEMA_MARKER}\nnot json", f"{SCHEMA_MARKER}\n[1, 2]"]
)
def test_json_object_without_a_usable_schema_answers_an_object(
    sim: SimulatorThread, system: str | None
) -> None:
    row = 'row "7"'
    status, body = ask(sim, row, {"type": "json_object"}, system=system)
    assert status == 200
    expected = {"answer": expected_chat_reply(messages_for(row, system)), "input": row}
    assert json.loads(content_of(body)) == expected


# ------------------------------------------------------------- no json_schema


def test_json_schema_refused_when_support_is_off_and_json_object_still_works() -> None:
    with SimulatorThread(json_schema_support=False) as server:
        status, body = ask(server, "row", json_schema_format(CLASSIFY_SCHEMA))
        assert status == 400
        assert body == {
            "error": {
                "message": JSON_SCHEMA_UNSUPPORTED,
                "type": "invalid_request_error",
                "param": "response_format",
                "code": None,
            }
        }
        assert JSON_SCHEMA_UNSUPPORTED == (
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
        )
        status, body = ask(server, "row", {"type": "json_object"}, system=fallback_prompt(CLASSIFY_SCHEMA))
        assert status == 200
        assert json.loads(content_of(body)) == structured_reply(CLASSIFY_SCHEMA, "row")
        assert server.stats()["by_status"] == {"400": 1, "200": 1}


def test_json_schema_support_changes_at_runtime(sim: SimulatorThread) -> None:
    sim.update(json_schema_support=False)
    assert ask(sim, "row", json_schema_format(CLASSIFY_SCHEMA))[0] == 400
    sim.update(json_schema_support=True)
    assert ask(sim, "row", json_schema_format(CLASSIFY_SCHEMA))[0] == 200


def test_json_schema_support_flag_reaches_a_simulator_process() -> None:
    with SimulatorProcess(json_schema_support=False) as proc:
        status, body = ask(proc, "row", json_schema_format(CLASSIFY_SCHEMA))
    assert status == 400 and body["error"]["message"] == JSON_SCHEMA_UNSUPPORTED


def test_structured_options_round_trip_through_argv() -> None:
    config = SimulatorConfig(json_schema_support=False, fault_invalid_json=0.5, fault_schema_violation=0.25)
    argv = config_to_argv(config)
    assert argv == [
        "--fault-invalid-json",
        "0.5",
        "--fault-schema-violation",
        "0.25",
        "--no-json-schema-support",
    ]
    assert config_from_argv(build_parser().parse_args(argv)) == config
    assert config_from_argv(build_parser().parse_args([])).json_schema_support is True


# ------------------------------------------------------------------- faults


def test_fault_invalid_json_spoils_structured_replies_only() -> None:
    with SimulatorThread(fault_invalid_json=1.0) as server:
        for response_format, system in [
            (json_schema_format(REVIEW_SCHEMA), None),
            ({"type": "json_object"}, fallback_prompt(REVIEW_SCHEMA)),
            ({"type": "json_object"}, None),
        ]:
            status, body = ask(server, "row", response_format, system=system)
            assert status == 200 and content_of(body) == INVALID_JSON_REPLY
            with pytest.raises(ValueError):
                json.loads(content_of(body))
            assert body["usage"]["completion_tokens"] == count_words(INVALID_JSON_REPLY)
        status, body = ask(server, "plain row", None)
        assert status == 200 and content_of(body) == expected_chat_reply(messages_for("plain row"))
        assert server.stats()["faults"] == {"fault_invalid_json": 3}


def test_fault_schema_violation_is_json_that_fails_the_schema() -> None:
    rows = [f"row {i}" for i in range(4)]
    with SimulatorThread(fault_schema_violation=1.0) as server:
        for row in rows:
            for response_format, system in [
                (json_schema_format(REVIEW_SCHEMA), None),
                ({"type": "json_object"}, fallback_prompt(REVIEW_SCHEMA)),
            ]:
                status, body = ask(server, row, response_format, system=system)
                assert status == 200
                value = json.loads(content_of(body))
                assert value == schema_violation(REVIEW_SCHEMA, row)
                with pytest.raises(jsonschema.ValidationError):
                    validate(value, REVIEW_SCHEMA)
        _, body = ask(server, "row", {"type": "json_object"})
        assert json.loads(content_of(body)) == {"input": "row"}  # no schema: "answer" is missing
        assert server.stats()["faults"] == {"fault_schema_violation": 2 * len(rows) + 1}


@pytest.mark.parametrize(
    ("schema", "violation"),
    [
        (CLASSIFY_SCHEMA, {}),  # the first required property is dropped
        ({"type": "object", "properties": {"n": {"type": "integer"}}}, "not valid for the schema"),
        ({"type": ["string", "null"]}, 12345),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, True),
        ({}, NotImplemented),  # anything goes: nothing can violate it
    ],
)
def test_schema_violation_table(schema: dict[str, Any], violation: Any) -> None:
    got = schema_violation(schema, "row")
    if violation is NotImplemented:
        assert got is NO_VIOLATION
        return
    assert got == violation
    with pytest.raises(jsonschema.ValidationError):
        validate(got, schema)


def test_directives_spoil_the_rows_that_carry_them(sim: SimulatorThread) -> None:
    schema_format = json_schema_format(CLASSIFY_SCHEMA)
    status, body = ask(sim, "[sim:invalid_json] row 1", schema_format)
    assert status == 200 and content_of(body) == INVALID_JSON_REPLY
    row = "[sim:schema_violation] row 2"
    status, body = ask(sim, row, schema_format)
    assert status == 200 and json.loads(content_of(body)) == schema_violation(CLASSIFY_SCHEMA, row) == {}
    status, body = ask(sim, "row 3", schema_format)
    assert json.loads(content_of(body)) == structured_reply(CLASSIFY_SCHEMA, "row 3")
    status, body = ask(sim, "[sim:invalid_json] plain row", None)  # not structured: answered as usual
    assert content_of(body) == expected_chat_reply(messages_for("[sim:invalid_json] plain row"))
    assert sim.stats()["faults"] == {"directive_invalid_json": 1, "directive_schema_violation": 1}


@pytest.mark.parametrize("fault", ["invalid_json", "schema_violation"])
def test_directive_fails_the_first_attempts_then_answers(sim: SimulatorThread, fault: str) -> None:
    row = f"[sim:fail=2,{fault}] row 4"
    schema_format = json_schema_format(REVIEW_SCHEMA)
    replies = [content_of(ask(sim, row, schema_format)[1]) for _ in range(3)]
    for spoiled in replies[:2]:
        if fault == "invalid_json":
            assert spoiled == INVALID_JSON_REPLY
        else:
            with pytest.raises(jsonschema.ValidationError):
                validate(json.loads(spoiled), REVIEW_SCHEMA)
    value = json.loads(replies[2])
    validate(value, REVIEW_SCHEMA)
    assert value == structured_reply(REVIEW_SCHEMA, row)  # the row text includes the directive
    stats = sim.stats()
    assert stats["attempts"] == {row: 3}
    assert stats["faults"] == {f"directive_{fault}": 2}


# ----------------------------------------------------- the rules, without a server


@pytest.mark.parametrize(
    ("schema", "row", "expected"),
    [
        ({"const": "x"}, "r", "x"),
        ({"type": "null"}, "r", None),
        ({"type": ["null", "boolean"]}, "r", stable_hash("r", "$") % 2 == 1),
        ({"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 7, "maximum": 7}]}, "r", 7),
        ({"oneOf": [{"$ref": "#/definitions/n"}], "definitions": {"n": {"enum": [3]}}}, "r", 3),
        ({"type": "integer"}, "r", stable_hash("r", "$") % 100),
        ({"type": "integer", "minimum": 10}, "r", 10 + stable_hash("r", "$") % 100),
        ({"type": "integer", "maximum": -10}, "r", -10 - stable_hash("r", "$") % 100),
        ({"type": "string", "maxLength": 3}, "r", "val"),
        ({"type": "string", "minLength": 16}, "r", f"value-{hashlib.sha256(b'r|$').hexdigest()[:8]}xx"),
        ({"type": "array", "items": {"type": "null"}, "maxItems": 1}, "r", [None]),
        ({"type": "array", "items": {"type": "null"}, "minItems": 4}, "r", [None] * 4),
        (
            {"type": "object", "properties": {"text": {"type": "string"}, "description": {"type": "string"}}},
            "  one two  three ",
            {"text": "one two three", "description": "one two three"},
        ),
        (
            {"allOf": [{"properties": {"a": {"const": 1}}}, {"properties": {"b": {"const": 2}}}]},
            "r",
            {"a": 1, "b": 2},
        ),
    ],
)
def test_structured_reply_rules(schema: dict[str, Any], row: str, expected: Any) -> None:
    assert structured_reply(schema, row) == expected


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "minimum": -1.5, "maximum": 2.5},
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "number", "exclusiveMaximum": 0},
        {"type": "integer", "exclusiveMinimum": 0.5, "exclusiveMaximum": 2},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "email"},
        {"type": "string", "format": "uuid"},
        {"type": "string", "format": "uri"},
        {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2},
        {
            "$defs": {
                "node": {
                    "properties": {"v": {"type": "integer"}, "kids": {"items": {"$ref": "#/$defs/node"}}}
                }
            },
            "$ref": "#/$defs/node",
        },
    ],
)
def test_structured_reply_validates_for_every_row(schema: dict[str, Any]) -> None:
    for i in range(20):
        validate(structured_reply(schema, f"row {i}"), schema)


def test_a_reference_cycle_without_an_end_is_a_schema_error() -> None:
    endless = {
        "$defs": {"a": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "required": ["a"]}}
    }
    with pytest.raises(SchemaError, match="a cycle"):
        structured_reply({**endless, "$ref": "#/$defs/a"}, "r")
    with pytest.raises(SchemaError, match="local"):
        structured_reply({"$ref": "other.json#/x"}, "r")

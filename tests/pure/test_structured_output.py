"""Structured output: type strings to JSON schemas, labels, response formats and reply checks."""

from __future__ import annotations

import json
import pickle

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flink_llm_udf._errors import FlinkLLMError, InvalidOptionError, InvalidOptionTypeError
from flink_llm_udf._structured import (
    SCHEMA_MARKER,
    FlinkField,
    FlinkType,
    InvalidOutputError,
    OutputValidator,
    canonical_json,
    classification_schema,
    is_strict_compatible,
    json_schema_of,
    parse_labels,
    parse_type_string,
    response_format_json_schema,
    schema_from_argument,
    schema_from_type_string,
    schema_instruction,
    strip_code_fence,
)


def _object(properties: dict, *, nullable: bool = False) -> dict:
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


# --- type strings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,properties",
    [
        (
            "ROW<sentiment STRING, score DOUBLE>",
            {"sentiment": {"type": ["string", "null"]}, "score": {"type": ["number", "null"]}},
        ),
        (
            "ROW<sentiment STRING NOT NULL, score DOUBLE NULL>",
            {"sentiment": {"type": "string"}, "score": {"type": ["number", "null"]}},
        ),
        ("row(a int not null, b Boolean)", {"a": {"type": "integer"}, "b": {"type": ["boolean", "null"]}}),
        (
            "ROW<`my field` VARCHAR(10), `a``b` CHAR(3) NOT NULL, `ROW` INT>",
            {
                "my field": {"type": ["string", "null"]},
                "a`b": {"type": "string"},
                "ROW": {"type": ["integer", "null"]},
            },
        ),
        (
            "ROW<price DECIMAL(10, 2) NOT NULL, d DEC, n NUMERIC(5), f FLOAT, p DOUBLE PRECISION NOT NULL>",
            {
                "price": {"type": "number"},
                "d": {"type": ["number", "null"]},
                "n": {"type": ["number", "null"]},
                "f": {"type": ["number", "null"]},
                "p": {"type": "number"},
            },
        ),
        (
            "ROW<t TINYINT, s SMALLINT, i INTEGER, b BIGINT NOT NULL>",
            {
                "t": {"type": ["integer", "null"]},
                "s": {"type": ["integer", "null"]},
                "i": {"type": ["integer", "null"]},
                "b": {"type": "integer"},
            },
        ),
        (
            "ROW<d DATE NOT NULL, t TIME(3), ts TIMESTAMP(3), lt TIMESTAMP_LTZ(3), "
            "w TIMESTAMP WITHOUT TIME ZONE, z TIMESTAMP(6) WITH LOCAL TIME ZONE NOT NULL>",
            {
                "d": {"type": "string", "format": "date"},
                "t": {"type": ["string", "null"], "format": "time"},
                "ts": {"type": ["string", "null"], "format": "date-time"},
                "lt": {"type": ["string", "null"], "format": "date-time"},
                "w": {"type": ["string", "null"], "format": "date-time"},
                "z": {"type": "string", "format": "date-time"},
            },
        ),
        (
            "ROW<tags ARRAY<STRING NOT NULL> NOT NULL, scores MAP<STRING, DOUBLE>>",
            {
                "tags": {"type": "array", "items": {"type": "string"}},
                "scores": {"type": ["object", "null"], "additionalProperties": {"type": ["number", "null"]}},
            },
        ),
        (
            "ROW<a STRING 'the answer', b INT NOT NULL 'it''s a count'>",
            {
                "a": {"type": ["string", "null"], "description": "the answer"},
                "b": {"type": "integer", "description": "it's a count"},
            },
        ),
    ],
)
def test_type_string_to_schema(text, properties):
    assert schema_from_type_string(text) == _object(properties)


def test_nested_rows_and_arrays_of_rows():
    text = (
        "ROW<order ROW<id BIGINT NOT NULL, lines ARRAY<ROW<sku STRING NOT NULL, qty INT> NOT NULL>>"
        " NOT NULL, notes ARRAY<ROW<text STRING>>>"
    )
    line = _object({"sku": {"type": "string"}, "qty": {"type": ["integer", "null"]}})
    note = _object({"text": {"type": ["string", "null"]}}, nullable=True)
    assert schema_from_type_string(text) == _object(
        {
            "order": _object(
                {"id": {"type": "integer"}, "lines": {"type": ["array", "null"], "items": line}}
            ),
            "notes": {"type": ["array", "null"], "items": note},
        }
    )


def test_the_top_level_row_is_never_nullable():
    assert parse_type_string("ROW<a INT>").nullable is False
    assert parse_type_string("ROW<a INT> NOT NULL") == parse_type_string("row<a int>")
    assert schema_from_type_string("ROW<a INT> NULL") == _object({"a": {"type": ["integer", "null"]}})


def test_parse_type_string_gives_the_tree_with_flink_defaults():
    text = (
        "ROW(`a b` DECIMAL(10, 2) NOT NULL, c DECIMAL, d VARCHAR, e TIMESTAMP, f TIME, "
        "g ARRAY<INT>, h MAP<VARCHAR(5), ROW<x STRING>> 'desc')"
    )
    parsed = parse_type_string(text)
    assert parsed == FlinkType(
        "ROW",
        nullable=False,
        fields=(
            FlinkField("a b", FlinkType("DECIMAL", nullable=False, params=(10, 2))),
            FlinkField("c", FlinkType("DECIMAL", params=(10, 0))),
            FlinkField("d", FlinkType("VARCHAR", params=(1,))),
            FlinkField("e", FlinkType("TIMESTAMP", params=(6,))),
            FlinkField("f", FlinkType("TIME", params=(0,))),
            FlinkField("g", FlinkType("ARRAY", children=(FlinkType("INT"),))),
            FlinkField(
                "h",
                FlinkType(
                    "MAP",
                    children=(
                        FlinkType("VARCHAR", params=(5,)),
                        FlinkType("ROW", fields=(FlinkField("x", FlinkType("STRING")),)),
                    ),
                ),
                "desc",
            ),
        ),
    )
    assert {parsed: "cached"}[parse_type_string(text.lower())] == "cached"  # frozen, hashable


def test_json_schema_of_a_nullable_row_allows_null():
    row = FlinkType("ROW", fields=(FlinkField("x", FlinkType("INT", nullable=False)),))
    assert json_schema_of(row) == _object({"x": {"type": "integer"}}, nullable=True)


NOT_AN_OBJECT = "structured output is an object"


@pytest.mark.parametrize(
    "text,what",
    [
        ("ROW<a STRIN>", "unknown type 'STRIN' at position 6"),
        ("INT", "the result type must be a ROW<...>, got INT: " + NOT_AN_OBJECT),
        ("ARRAY<ROW<a INT>>", "the result type must be a ROW<...>, got ARRAY: " + NOT_AN_OBJECT),
        ("", "expected a type at position 0, found the end"),
        ("ROW<a INT", "expected ',' or '>' at position 9, found the end"),
        ("ROW<a INT)", "expected ',' or '>' at position 9, found ')'"),
        ("ROW(a INT>", "expected ',' or ')' at position 9, found '>'"),
        ("ROW<a INT,>", "expected a field name at position 10, found '>'"),
        ("ROW<>", "expected a field name at position 4, found '>'"),
        ("ROW a INT", "expected '<' or '(' after ROW at position 4, found 'a'"),
        ("ROW<a>", "expected a type at position 5, found '>'"),
        ("ROW<a INT> x", "expected the end of the type at position 11, found 'x'"),
        ("ROW<a INT NOT>", "expected 'NULL' at position 13, found '>'"),
        ("ROW<a INT, a STRING>", "the field name 'a' repeats at position 11"),
        ("ROW<a DECIMAL(40, 2)>", "a precision must be between 1 and 38, got 40 at position 14"),
        ("ROW<a DECIMAL(5, 6)>", "a scale must be between 0 and 5, got 6 at position 17"),
        ("ROW<a DECIMAL(x)>", "expected a precision at position 14, found 'x'"),
        ("ROW<a VARCHAR(0)>", "a length must be between 1 and 2147483647, got 0 at position 14"),
        ("ROW<a TIMESTAMP(10)>", "a precision must be between 0 and 9, got 10 at position 16"),
        ("ROW<a ARRAY<INT>", "expected ',' or '>' at position 16, found the end"),
        (
            "ROW<a MAP<INT, STRING>>",
            "the MAP at position 6 has INT keys; structured output needs STRING keys "
            "(JSON object keys are strings)",
        ),
        ("ROW<a MAP<STRING>>", "expected ',' at position 16, found '>'"),
        ("ROW<`a INT>", "unterminated field name starting at position 4"),
        ("ROW<a INT; b INT>", "unexpected character ';' at position 9"),
        ("ROW<a TIMESTAMP WITH TIME ZONE>", "expected 'LOCAL' at position 21, found 'TIME'"),
        ("ROW<a INT 'desc>", "unterminated description starting at position 10"),
    ],
)
def test_bad_type_strings_say_where_and_what(text, what):
    with pytest.raises(InvalidOptionError) as caught:
        schema_from_type_string(text)
    assert str(caught.value) == f"cannot read the type {text!r}: {what}"


def test_a_long_type_string_is_cut_in_the_message():
    text = "ROW<" + ", ".join(f"field_{i} STRING" for i in range(40)) + ", x STRIN>"
    with pytest.raises(InvalidOptionError) as caught:
        parse_type_string(text)
    message = str(caught.value)
    assert message.startswith("cannot read the type 'ROW<field_0 STRING, ")
    assert "…': unknown type 'STRIN' at position " + str(text.index("STRIN>")) in message


def test_a_type_string_must_be_a_string():
    with pytest.raises(InvalidOptionTypeError, match="a result type must be a type string, got int"):
        parse_type_string(3)  # type: ignore[arg-type]


# --- the SQL schema argument ----------------------------------------------------------------------
USER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city"],
}


def test_schema_argument_reads_json_schemas_and_type_strings():
    assert schema_from_argument(json.dumps(USER_SCHEMA)) == USER_SCHEMA
    assert schema_from_argument("  \n" + json.dumps(USER_SCHEMA)) == USER_SCHEMA
    assert schema_from_argument("ROW<city STRING NOT NULL>") == _object({"city": {"type": "string"}})


@pytest.mark.parametrize(
    "text,what",
    [
        (
            '{"type": "object",',
            "is not JSON: Expecting property name enclosed in double quotes: line 1 column 19 (char 18)",
        ),
        ('{"type": "array", "items": {}}', 'must have "type": "object": ' + NOT_AN_OBJECT),
        ('{"properties": {}}', 'must have "type": "object": ' + NOT_AN_OBJECT),
    ],
)
def test_json_schema_arguments_that_are_not_object_schemas(text, what):
    with pytest.raises(InvalidOptionError) as caught:
        schema_from_argument(text)
    assert str(caught.value) == f"the JSON schema {text!r} {what}"


@pytest.mark.parametrize(
    "schema,what",
    [
        (
            {"type": "object", "properties": {"a": {"type": "strin"}}},
            "at $.properties.a.type: 'strin' is not valid under any of the given schemas",
        ),
        ({"type": "object", "required": "a"}, "at $.required: 'a' is not of type 'array'"),
    ],
)
def test_invalid_json_schema_arguments(schema, what):
    with pytest.raises(InvalidOptionError) as caught:
        schema_from_argument(json.dumps(schema))
    assert str(caught.value) == f"the JSON schema {canonical_json(schema)!r} is not valid: {what}"


def test_schema_argument_must_be_text():
    with pytest.raises(InvalidOptionTypeError, match="got NoneType"):
        schema_from_argument(None)  # type: ignore[arg-type]


# --- strict mode ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "schema,strict",
    [
        (schema_from_type_string("ROW<a STRING, b ARRAY<ROW<c INT>>>"), True),
        (classification_schema(["x", "y"]), True),
        (USER_SCHEMA, False),  # population is not required
        ({**USER_SCHEMA, "required": ["city", "population"]}, False),  # additionalProperties missing
        ({**USER_SCHEMA, "required": ["population", "city"], "additionalProperties": False}, True),
        ({**USER_SCHEMA, "required": ["city", "population", "x"], "additionalProperties": False}, False),
        ({"type": "object", "additionalProperties": {"type": "string"}}, False),
        (schema_from_type_string("ROW<m MAP<STRING, INT>>"), False),
        (
            _object(
                {"a": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "string"}}}}}
            ),
            False,
        ),
        (_object({"a": {"anyOf": [{"type": "object", "properties": {}}, {"type": "null"}]}}), False),
        (_object({"a": {"anyOf": [_object({"b": {"type": "string"}}), {"type": "null"}]}}), True),
        (
            {
                **_object({"a": {"$ref": "#/$defs/x"}}),
                "$defs": {"x": {"type": "object", "properties": {"y": {}}}},
            },
            False,
        ),
        ({**_object({"a": {"$ref": "#/$defs/x"}}), "$defs": {"x": _object({"y": {"type": "string"}})}}, True),
        (_object({"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}), False),
        (_object({"a": {"allOf": [{"type": "string"}]}}), False),
        (_object({"a": {"type": ["object", "null"], "properties": {"b": {"type": "string"}}}}), False),
        (_object({"a": {"type": ["object", "null"], "properties": {}, "additionalProperties": False}}), True),
    ],
)
def test_strict_compatibility(schema, strict):
    assert is_strict_compatible(schema) is strict


def test_response_format_json_schema():
    schema = schema_from_type_string("ROW<a INT NOT NULL>")
    assert response_format_json_schema(schema) == {
        "type": "json_schema",
        "json_schema": {"name": "row", "schema": schema, "strict": True},
    }
    assert response_format_json_schema(USER_SCHEMA, "city facts")["json_schema"] == {
        "name": "city_facts",
        "schema": USER_SCHEMA,
        "strict": False,
    }


@pytest.mark.parametrize(
    "name,sent",
    [("row", "row"), ("my-Result_2", "my-Result_2"), ("ärger!", "_rger_"), ("", "row"), ("x" * 70, "x" * 64)],
)
def test_response_format_names_are_sanitized(name, sent):
    assert response_format_json_schema({"type": "object"}, name)["json_schema"]["name"] == sent


# --- labels ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels,parsed",
    [
        ("positive,negative,neutral", ("positive", "negative", "neutral")),
        ("positive, negative , neutral ", ("positive", "negative", "neutral")),
        ('a,"b,c"', ("a", "b,c")),
        ('a, "b, c", d', ("a", "b, c", "d")),
        ('"say ""hi""",x', ('say "hi"', "x")),
        ("a,,b,", ("a", "b")),
        ("a,b,a,B", ("a", "b", "B")),
        ("spam\nham", ("spam", "ham")),
        ("only", ("only",)),
        (["x", "y"], ("x", "y")),
        (("x", " y ", "", None, "x"), ("x", "y")),
        (np.array(["cat", "dog", "cat"]), ("cat", "dog")),
    ],
)
def test_parse_labels(labels, parsed):
    assert parse_labels(labels) == parsed


@pytest.mark.parametrize("labels", ["", " , ,", [], [None, ""], np.array([], dtype=str)])
def test_labels_must_name_at_least_one(labels):
    with pytest.raises(InvalidOptionError, match="labels must name at least one label, got "):
        parse_labels(labels)


@pytest.mark.parametrize(
    "labels,message",
    [
        (5, "labels must be a comma-separated string or an array of strings, got int"),
        (b"a,b", "labels must be a comma-separated string or an array of strings, got bytes"),
        (["a", 2], "labels must be strings, got int 2"),
    ],
)
def test_labels_of_the_wrong_type(labels, message):
    with pytest.raises(InvalidOptionTypeError) as caught:
        parse_labels(labels)
    assert str(caught.value) == message


def test_classification_schema():
    assert classification_schema('pos, neg,"it, depends"') == {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["pos", "neg", "it, depends"]}},
        "required": ["label"],
        "additionalProperties": False,
    }


# --- the json_object fallback's instruction -------------------------------------------------------
def test_schema_instruction_ends_with_the_marker_and_the_compact_schema():
    schema = schema_from_type_string("ROW<zeta STRING, alpha INT NOT NULL 'größe'>")
    text = schema_instruction(schema)
    assert SCHEMA_MARKER == "JSON schema:"
    assert text == (
        "Answer with one JSON object and nothing else: no prose and no Markdown code fence. "
        "The object must match this JSON schema.\n"
        "JSON schema:\n"
        '{"type":"object","properties":{"zeta":{"type":["string","null"]},'
        '"alpha":{"type":"integer","description":"größe"}},"required":["zeta","alpha"],'
        '"additionalProperties":false}'
    )
    assert schema_instruction(schema) == text


def test_the_simulator_finds_the_schema_in_the_instruction():
    from flink_llm_udf.simulator._structured_replies import schema_in_prompt

    schema = schema_from_type_string("ROW<a ARRAY<ROW<b STRING 'multi\nline'>>>")
    prompt = "You are a helpful assistant.\n\n" + schema_instruction(schema)
    assert schema_in_prompt([prompt]) == schema


# --- validating replies ---------------------------------------------------------------------------
SENTIMENT = schema_from_type_string("ROW<sentiment STRING NOT NULL, score DOUBLE, tags ARRAY<STRING>>")


@pytest.fixture(scope="module")
def sentiment() -> OutputValidator:
    return OutputValidator(SENTIMENT)


@pytest.mark.parametrize(
    "reply,value",
    [
        (
            '{"sentiment": "pos", "score": 0.9, "tags": ["a"]}',
            {"sentiment": "pos", "score": 0.9, "tags": ["a"]},
        ),
        (
            '{"sentiment": "pos", "score": null, "tags": null}',
            {"sentiment": "pos", "score": None, "tags": None},
        ),
        ('{"sentiment": "pos", "score": 1, "tags": []}', {"sentiment": "pos", "score": 1, "tags": []}),
        (
            '  {"sentiment": "ü", "score": -1e3, "tags": []}\n',
            {"sentiment": "ü", "score": -1000.0, "tags": []},
        ),
        (
            '```json\n{"sentiment": "pos", "score": 1, "tags": []}\n```',
            {"sentiment": "pos", "score": 1, "tags": []},
        ),
        (
            '\n```\n{"sentiment": "pos", "score": 1, "tags": []}\n```\n',
            {"sentiment": "pos", "score": 1, "tags": []},
        ),
        (
            '```JSON \r\n{"sentiment": "pos",\n "score": 1, "tags": []}```',
            {"sentiment": "pos", "score": 1, "tags": []},
        ),
    ],
)
def test_valid_replies_parse(sentiment, reply, value):
    assert sentiment.parse(reply) == value


@pytest.mark.parametrize(
    "reply,where,what",
    [
        (
            '{"sentiment": "pos", "score": "high", "tags": []}',
            "$.score",
            "'high' is not of type 'number', 'null'",
        ),
        ('{"sentiment": null, "score": 1, "tags": []}', "$.sentiment", "None is not of type 'string'"),
        ('{"sentiment": "pos", "score": 1}', "$", "'tags' is a required property"),
        (
            '{"sentiment": "pos", "score": 1, "tags": [], "x": 1}',
            "$",
            "Additional properties are not allowed ('x' was unexpected)",
        ),
        (
            '{"sentiment": "pos", "score": 1, "tags": ["a", 2]}',
            "$.tags[1]",
            "2 is not of type 'string', 'null'",
        ),
        (
            '{"sentiment": "pos", "score": true, "tags": []}',
            "$.score",
            "True is not of type 'number', 'null'",
        ),
        ("[1, 2]", "$", "[1, 2] is not of type 'object'"),
    ],
)
def test_replies_that_do_not_match_say_where_and_what(sentiment, reply, where, what):
    with pytest.raises(InvalidOutputError) as caught:
        sentiment.parse(reply)
    assert str(caught.value) == f"the reply does not match the schema: at {where}: {what}"
    assert isinstance(caught.value, FlinkLLMError)


LONG_REPLY = (
    'Sure! Here is the JSON you asked for: {"sentiment": "pos", "score": 1, "tags": []} Anything else?'
)


@pytest.mark.parametrize(
    "reply,what",
    [
        (LONG_REPLY, f"Expecting value at line 1 column 1 (reply starts {LONG_REPLY[:80] + '…'!r})"),
        ("Sure!", "Expecting value at line 1 column 1 (reply 'Sure!')"),
        (
            '{"sentiment": "pos",',
            "Expecting property name enclosed in double quotes at line 1 column 21 "
            '(reply \'{"sentiment": "pos",\')',
        ),
        ('{"a": 1} {"b": 2}', 'Extra data at line 1 column 10 (reply \'{"a": 1} {"b": 2}\')'),
        ("", "it is empty"),
        (" \n", "it is empty"),
        ("```json\n\n```", "it is empty"),
    ],
)
def test_replies_that_are_not_json_show_their_start(sentiment, reply, what):
    with pytest.raises(InvalidOutputError) as caught:
        sentiment.parse(reply)
    assert str(caught.value) == f"the reply is not JSON: {what}"


def test_a_long_reply_is_cut_at_80_characters(sentiment):
    with pytest.raises(InvalidOutputError) as caught:
        sentiment.parse(LONG_REPLY)
    assert str(caught.value).endswith(
        """(reply starts 'Sure! Here is the JSON you asked for: {"sentiment": "pos", "score": 1, """
        """"tags": […')"""
    )


def test_an_enum_violation_names_the_labels():
    validator = OutputValidator(classification_schema("pos,neg"))
    assert validator.parse('{"label": "neg"}') == {"label": "neg"}
    with pytest.raises(InvalidOutputError) as caught:
        validator.parse('{"label": "maybe"}')
    assert str(caught.value) == (
        "the reply does not match the schema: at $.label: 'maybe' is not one of ['pos', 'neg']"
    )


def test_a_long_validation_message_is_cut():
    validator = OutputValidator(classification_schema([f"label-{i}" for i in range(40)]))
    with pytest.raises(InvalidOutputError) as caught:
        validator.parse('{"label": "other"}')
    message = str(caught.value)
    prefix = "the reply does not match the schema: at $.label: "
    assert message.startswith(prefix + "'other' is not one of ['label-0', 'label-1',")
    assert message.endswith("…")
    assert len(message) == len(prefix) + 200 + 1


def test_integral_floats_follow_json_schema():
    validator = OutputValidator(schema_from_type_string("ROW<n INT NOT NULL>"))
    assert validator.parse('{"n": 2.0}') == {"n": 2.0}  # JSON Schema counts 2.0 as an integer
    with pytest.raises(InvalidOutputError, match=r"at \$\.n: 2\.5 is not of type 'integer'"):
        validator.parse('{"n": 2.5}')


def test_user_schemas_with_other_keywords_are_checked_fully():
    validator = OutputValidator(USER_SCHEMA)
    assert validator.parse('{"city": "Oslo", "population": 700000, "extra": true}')["city"] == "Oslo"
    with pytest.raises(InvalidOutputError) as caught:
        validator.parse('{"city": "Oslo", "population": -1}')
    assert str(caught.value) == (
        "the reply does not match the schema: at $.population: -1 is less than the minimum of 0"
    )


def test_a_reply_without_text_is_invalid(sentiment):
    with pytest.raises(InvalidOutputError, match="the reply has no text, got NoneType"):
        sentiment.parse(None)


def test_formats_are_not_checked():
    validator = OutputValidator(schema_from_type_string("ROW<d DATE>"))
    assert validator.parse('{"d": "not a date"}') == {"d": "not a date"}


def test_an_invalid_schema_is_refused_when_compiled():
    with pytest.raises(InvalidOptionError, match=r"is not valid: at \$\.type: 'thing' is not valid"):
        OutputValidator({"type": "thing"})


def test_validators_compare_hash_and_pickle_by_schema(sentiment):
    same = OutputValidator(json.loads(json.dumps(SENTIMENT)))
    assert same == sentiment
    assert hash(same) == hash(sentiment)
    assert {sentiment: 1}[same] == 1
    assert OutputValidator(USER_SCHEMA) != sentiment
    copy = pickle.loads(pickle.dumps(sentiment))
    assert copy == sentiment
    reply = '{"sentiment": "x", "score": 2, "tags": null}'
    assert copy.parse(reply) == {"sentiment": "x", "score": 2, "tags": None}


@pytest.mark.parametrize(
    "content,inside",
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ('```\n{"a": 1}```', '{"a": 1}'),
        ('{"a": 1}', '{"a": 1}'),
        ('Here:\n```json\n{"a": 1}\n```', 'Here:\n```json\n{"a": 1}\n```'),  # not wholly fenced
        ('```json\n{"a": 1}\n```\nDone.', '```json\n{"a": 1}\n```\nDone.'),
        ('```json {"a": 1}```', '```json {"a": 1}```'),  # no newline after the info string
    ],
)
def test_strip_code_fence(content, inside):
    assert strip_code_fence(content) == inside


# The quick check must never accept what jsonschema rejects.
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5, allow_nan=False)
    | st.sampled_from(["a", "pos", ""]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "label", "tags", "x"]), children, max_size=4)
    ),
    max_leaves=12,
)
_SCHEMAS = [
    schema_from_type_string("ROW<a STRING NOT NULL, b ARRAY<INT NOT NULL>, tags MAP<STRING, BOOLEAN>>"),
    schema_from_type_string("ROW<a ROW<b DOUBLE NOT NULL>, x ARRAY<ROW<a STRING>> NOT NULL>"),
    classification_schema("pos,a"),
    {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    {
        "type": "object",
        "properties": {
            "a": {"type": ["integer", "string"]},
            "b": {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]},
        },
        "required": ["a"],
    },
]


@pytest.mark.parametrize("schema", _SCHEMAS)
def test_type_string_and_label_schemas_take_the_quick_check(schema):
    assert OutputValidator(schema)._fast is not None


@pytest.mark.parametrize(
    "schema",
    [
        USER_SCHEMA,  # minimum
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"type": "string"}}},
        {"type": "object", "properties": {"a": {"enum": [1, "x"]}}},
    ],
)
def test_other_keywords_are_left_to_jsonschema(schema):
    assert OutputValidator(schema)._fast is None


#: a value of the wrong JSON type, mostly one that Python's == or isinstance would confuse
_MISTAKEN_LEAF = st.sampled_from([True, False, 0, 1, 1.5, 2.0, "1", None, [], {}])
_LEAVES = {
    "string": st.sampled_from(["a", "pos", ""]),
    "integer": st.integers(-3, 3),
    "number": st.integers(-3, 3) | st.floats(-3, 3, allow_nan=False),
    "boolean": st.booleans(),
    "null": st.none(),
}


def _near(schema: dict) -> st.SearchStrategy:
    """Values valid for ``schema`` and values one mistake away (a key dropped or added, a leaf changed)."""
    options = []
    if "anyOf" in schema:
        options += [_near(branch) for branch in schema["anyOf"]]
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    types = schema.get("type", [])
    for name in [types] if isinstance(types, str) else types:
        if name == "object":
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties", True)
            extra_value = _near(extra) if isinstance(extra, dict) else _json_values
            options.append(
                st.builds(
                    _mistake,
                    st.fixed_dictionaries({key: _near(sub) for key, sub in properties.items()}),
                    st.sampled_from([None, *properties]),
                    st.sampled_from([None, "x", "a"]),
                    extra_value,
                )
            )
        elif name == "array":
            options.append(st.lists(_near(schema.get("items", {})), max_size=3))
        else:
            options.append(_LEAVES[name])
    return st.one_of(*options, *options, _MISTAKEN_LEAF)


def _mistake(value: dict, drop: str | None, add: str | None, added: object) -> dict:
    value = dict(value)
    value.pop(drop, None)
    if add is not None:
        value[add] = added
    return value


@settings(max_examples=500, deadline=None)
@given(data=st.data(), index=st.integers(0, len(_SCHEMAS) - 1))
def test_validation_agrees_with_jsonschema(data, index):
    schema = _SCHEMAS[index]
    text = json.dumps(data.draw(_near(schema)))
    valid = jsonschema.validators.validator_for(schema)(schema).is_valid(json.loads(text))
    try:
        OutputValidator(schema).parse(text)
        accepted = True
    except InvalidOutputError:
        accepted = False
    assert accepted is valid


def test_canonical_json_is_sorted_compact_and_unescaped():
    value = {"b": [1, {"d": None, "c": "é"}], "a": True}
    assert canonical_json(value) == '{"a":true,"b":[1,{"c":"é","d":null}]}'
    assert canonical_json(SENTIMENT) == canonical_json(json.loads(json.dumps(SENTIMENT, sort_keys=True)))

"""Prompt templates: placeholders checked once, rendered literally, NULL in means NULL out."""

from __future__ import annotations

import datetime
import decimal
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flink_llm_udf._errors import FlinkLLMError, InvalidOptionError
from flink_llm_udf._templates import (
    PromptTemplate,
    TemplateFieldError,
    TemplateInputError,
    fields_of_input,
    value_text,
)

REVIEW = PromptTemplate.parse("Product: {product} Review: {review}")


@pytest.mark.parametrize(
    "text,literals,placeholders,fields",
    [
        (
            "Product: {product} Review: {review}",
            ("Product: ", " Review: ", ""),
            ("product", "review"),
            ("product", "review"),
        ),
        ("{text}", ("", ""), ("text",), ("text",)),
        ("{a}{b}{a}", ("", "", "", ""), ("a", "b", "a"), ("a", "b")),
        ("no placeholders", ("no placeholders",), (), ()),
        ("", ("",), (), ()),
        ('JSON: {{"k": {value}}}', ('JSON: {"k": ', "}"), ("value",), ("value",)),
        ("{{literal}} and {{{x}}}", ("{literal} and {", "}"), ("x",), ("x",)),
        (
            "{_private} {with-dash} {x_1}",
            ("", " ", " ", ""),
            ("_private", "with-dash", "x_1"),
            ("_private", "with-dash", "x_1"),
        ),
        ("Ünïcode {Name}", ("Ünïcode ", ""), ("Name",), ("Name",)),
    ],
)
def test_parse(text, literals, placeholders, fields):
    template = PromptTemplate.parse(text)
    assert template.literals == literals
    assert template.placeholders == placeholders
    assert template.fields == fields
    assert template == PromptTemplate(text)
    assert hash(template) == hash(PromptTemplate(text))


NOT_A_NAME = (
    "is not a placeholder: a name is letters, digits, '_' and '-', starting with a letter or '_'; "
    "write '{{' for a literal brace"
)


@pytest.mark.parametrize(
    "text,what",
    [
        ("Product: {product", "unmatched '{' at position 9; write '{{' for a literal brace"),
        ("a } b", "unmatched '}' at position 2; write '}}' for a literal brace"),
        ("{a}}", "unmatched '}' at position 3; write '}}' for a literal brace"),
        ("{{a}", "unmatched '}' at position 3; write '}}' for a literal brace"),
        ("{a{b}", "unmatched '{' at position 0; write '{{' for a literal brace"),
        ('{"k": 1}', f"'{{\"k\": 1}}' at position 0 {NOT_A_NAME}"),
        ("x {}", f"'{{}}' at position 2 {NOT_A_NAME}"),
        ("{ name }", f"'{{ name }}' at position 0 {NOT_A_NAME}"),
        ("{0}", f"'{{0}}' at position 0 {NOT_A_NAME}"),
        ("{a.b}", f"'{{a.b}}' at position 0 {NOT_A_NAME}"),
        ("{-a}", f"'{{-a}}' at position 0 {NOT_A_NAME}"),
    ],
)
def test_bad_templates_name_the_brace(text, what):
    with pytest.raises(InvalidOptionError) as caught:
        PromptTemplate.parse(text)
    assert str(caught.value) == f"prompt template {text!r}: {what}"


def test_a_long_template_is_cut_in_the_message():
    with pytest.raises(InvalidOptionError) as caught:
        PromptTemplate.parse("x" * 100 + "{")
    assert str(caught.value) == (
        "prompt template '" + "x" * 80 + "…': unmatched '{' at position 100; write '{{' for a literal brace"
    )


def test_render_inserts_values_literally():
    values = {"product": "Mug {review}", "review": 'Says "{{hi}}" \\n {product}'}
    assert REVIEW.render(values) == 'Product: Mug {review} Review: Says "{{hi}}" \\n {product}'


def test_render_repeats_a_field():
    assert PromptTemplate.parse("{a}-{b}-{a}").render({"a": "1", "b": "2", "unused": "x"}) == "1-2-1"


@pytest.mark.parametrize(
    "values",
    [
        {"product": None, "review": "good"},
        {"product": "mug", "review": None},
        {"review": None, "product": "x"},
    ],
)
def test_a_null_field_makes_the_prompt_null(values):
    assert REVIEW.render(values) is None


def test_a_missing_field_is_named():
    with pytest.raises(TemplateFieldError) as caught:
        REVIEW.render({"product": "mug", "rating": 5})
    error = caught.value
    assert str(error) == "the prompt template needs the field 'review'; the row has: product, rating"
    assert (error.field, error.given) == ("review", ("product", "rating"))
    assert isinstance(error, KeyError)
    assert isinstance(error, ValueError)
    assert isinstance(error, FlinkLLMError)
    with pytest.raises(TemplateFieldError, match="needs the field 'product'; the row has no fields"):
        REVIEW.render({})


@pytest.mark.parametrize(
    "value,text",
    [
        ("text", "text"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-12, "-12"),
        (0.1, "0.1"),
        (2.5e-10, "2.5e-10"),
        (1e22, "1e+22"),
        (float("nan"), "nan"),
        (decimal.Decimal("12.50"), "12.50"),
        ([1, "a", None, True], '[1,"a",null,true]'),
        ({"k": "ü", "n": [1.5]}, '{"k":"ü","n":[1.5]}'),
        ((1, 2), "[1,2]"),
        ({"when": datetime.date(2024, 1, 2)}, '{"when":"2024-01-02"}'),
        (datetime.date(2024, 1, 2), "2024-01-02"),
        (b"bytes \xc3\xbc", "bytes ü"),
        (np.float64(0.5), "0.5"),
        (np.int64(7), "7"),
        (np.bool_(True), "true"),
        (np.array(["a", "b"]), '["a","b"]'),
        ([np.int32(3)], "[3]"),
    ],
)
def test_value_text(value, text):
    assert value_text(value) == text
    assert PromptTemplate.parse("<{v}>").render({"v": value}) == f"<{text}>"


# --- the literal-insertion property ---------------------------------------------------------------
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)
_tricky = st.text(alphabet=st.sampled_from(list("ab {}\"'\\\n")) | st.characters(), max_size=20)
_values = _tricky | st.sampled_from(["{product}", "{{review}}", "}{", "{", "}", "\\{x\\}"])


def _escape(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")


@given(
    parts=st.lists(st.tuples(_tricky, _names), max_size=5),
    tail=_tricky,
    data=st.data(),
)
def test_render_is_the_concatenation_of_literals_and_values(parts, tail, data):
    names = {name for _, name in parts}
    values = {name: data.draw(_values, label=name) for name in sorted(names)}
    template = PromptTemplate.parse(
        "".join(_escape(lit) + "{" + name + "}" for lit, name in parts) + _escape(tail)
    )
    expected = "".join(lit + values[name] for lit, name in parts) + tail
    assert template.render(values) == expected
    assert template.fields == tuple(dict.fromkeys(name for _, name in parts))


@given(text=_tricky)
def test_an_escaped_text_renders_as_itself(text):
    assert PromptTemplate.parse(_escape(text)).render({}) == text


@given(value=st.integers() | st.floats(allow_nan=False) | st.booleans())
def test_scalars_render_as_their_json_text_or_python_repr(value):
    rendered = PromptTemplate.parse("{v}").render({"v": value})
    assert rendered is not None
    if isinstance(value, int):  # bools too
        assert json.loads(rendered) == value
    else:
        assert float(rendered) == value


# --- a row's input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "template,value,fields",
    [
        (REVIEW, {"product": "mug"}, {"product": "mug"}),
        (REVIEW, '{"product": "mug", "review": "fine"}', {"product": "mug", "review": "fine"}),
        (REVIEW, ' {"product": "mug", "review": null}', {"product": "mug", "review": None}),
        (PromptTemplate.parse("Summarize: {text}"), "a long text", {"text": "a long text"}),
        (PromptTemplate.parse("Summarize: {text}"), '{"text": "x"}', {"text": '{"text": "x"}'}),
        (PromptTemplate.parse("Translate {input} please"), "hallo", {"input": "hallo"}),
        (PromptTemplate.parse("Fixed prompt"), "anything", {}),
        (REVIEW, None, None),
        (PromptTemplate.parse("{text}"), None, None),
    ],
)
def test_fields_of_input(template, value, fields):
    assert fields_of_input(value, template) == fields


def test_a_json_object_input_renders_with_null_as_null():
    row = '{"product": "Mug {1}", "review": "ok"}'
    assert REVIEW.render(fields_of_input(row, REVIEW)) == "Product: Mug {1} Review: ok"
    assert REVIEW.render(fields_of_input('{"product": "Mug", "review": null}', REVIEW)) is None


@pytest.mark.parametrize(
    "template,value,got",
    [
        (REVIEW, "a plain review", "got text that is not a JSON object: 'a plain review'"),
        (REVIEW, '["mug", "fine"]', 'got text that is not a JSON object: \'["mug", "fine"]\''),
        (REVIEW, '{"product": "mug",', 'got text that is not a JSON object: \'{"product": "mug",\''),
        (REVIEW, 5, "got int 5"),
        (REVIEW, ["mug", "fine"], "got list ['mug', 'fine']"),
        (PromptTemplate.parse("{text} and {more}"), "x", "got text that is not a JSON object: 'x'"),
    ],
)
def test_inputs_that_do_not_fit_say_how_to_give_them(template, value, got):
    with pytest.raises(TemplateInputError) as caught:
        fields_of_input(value, template)
    fields = ", ".join(template.fields)
    example = ", ".join(f"'{name}' VALUE {name}" for name in template.fields)
    assert str(caught.value) == (
        f"the prompt template needs the fields {fields}: give the row as JSON_OBJECT({example}) "
        f"or a mapping, {got}"
    )
    assert isinstance(caught.value, ValueError)


def test_the_example_is_cut_after_two_fields():
    template = PromptTemplate.parse("{a} {b} {c}")
    with pytest.raises(TemplateInputError) as caught:
        fields_of_input("x", template)
    assert str(caught.value) == (
        "the prompt template needs the fields a, b, c: give the row as "
        "JSON_OBJECT('a' VALUE a, 'b' VALUE b, …) or a mapping, got text that is not a JSON object: 'x'"
    )

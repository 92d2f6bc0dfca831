"""SQL for real work at the engine level, checked at the simulator: per-call options, prompt
templates, structured output, classification, invalid replies and the json_object fallback.

Every assertion is on what the server recorded (request bodies) or on values the simulator's
documented rules predict (``expected_chat_reply``, ``structured_reply``, ``stable_hash``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from flink_llm_udf import BlockingEngine, LLMEngine, OpenAICompatProvider, run_batch
from flink_llm_udf._call_options import CallOptions, parse_call_options
from flink_llm_udf._call_plan import output_spec
from flink_llm_udf._engine_settings import EngineSettings
from flink_llm_udf._errors import InvalidOptionError, RowFailedError
from flink_llm_udf._results import IGNORED, NULL_INPUT, OK, RowResult
from flink_llm_udf.simulator import (
    INVALID_JSON_REPLY,
    JSON_SCHEMA_UNSUPPORTED,
    SCHEMA_MARKER,
    SimulatorThread,
    expected_chat_reply,
    stable_hash,
    structured_reply,
)
from flink_llm_udf.simulator._structured_replies import schema_in_prompt

#: Every test here runs once per HTTP client the package ships (tests/loopback/conftest.py).
pytestmark = pytest.mark.usefixtures("each_http_client")

SYSTEM = "You are a helpful assistant."  # the provider's default system prompt
BOUND_S = 10.0  # no engine call here may take longer

#: A result type with everything the brief names: nested ROW, ARRAY<ROW<...>>, INT, DOUBLE,
#: BOOLEAN, STRING NOT NULL (with a description), and a row-derived string (``summary``).
ROW_TYPE = (
    "ROW<name STRING NOT NULL 'the product''s name', stars INT, score DOUBLE, recommended BOOLEAN, "
    "summary STRING, author ROW<handle STRING, age INT>, "
    "aspects ARRAY<ROW<topic STRING, weight DOUBLE>>>"
)


def _nullable(json_type: str) -> dict[str, Any]:
    return {"type": [json_type, "null"]}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


#: The JSON schema ROW_TYPE must become, written out by hand (nullable types accept null; a
#: nullable ROW is an anyOf with null; every field required; nothing else allowed).
ROW_SCHEMA: dict[str, Any] = _object(
    {
        "name": {"type": "string", "description": "the product's name"},
        "stars": _nullable("integer"),
        "score": _nullable("number"),
        "recommended": _nullable("boolean"),
        "summary": _nullable("string"),
        "author": {
            "anyOf": [_object({"handle": _nullable("string"), "age": _nullable("integer")}), {"type": "null"}]
        },
        "aspects": {
            "type": ["array", "null"],
            "items": {
                "anyOf": [
                    _object({"topic": _nullable("string"), "weight": _nullable("number")}),
                    {"type": "null"},
                ]
            },
        },
    }
)

LABELS = ("positive", "negative", "mixed, unsure")
LABELS_CSV = 'positive, negative,"mixed, unsure"'
LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": list(LABELS)}},
    "required": ["label"],
    "additionalProperties": False,
}


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(record_requests=True, record_limit=1000) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def chat(sim: SimulatorThread, **kwargs: Any) -> OpenAICompatProvider:
    kwargs.setdefault("model", "sim-model")
    return OpenAICompatProvider(endpoint=sim.base_url, **kwargs)


def ignoring(sim: SimulatorThread, **kwargs: Any) -> OpenAICompatProvider:
    return chat(sim, error_handling_strategy="IGNORE", **kwargs)


def recorded(sim: SimulatorThread) -> list[dict[str, Any]]:
    return list(sim.stats(include_requests=True)["requests"])


def bodies(sim: SimulatorThread) -> list[dict[str, Any]]:
    return [record["body"] for record in recorded(sim)]


def user_text(body: dict[str, Any]) -> str:
    (first,) = [m for m in body["messages"] if m["role"] == "user"][:1]
    return str(first["content"])


def body_of(sim: SimulatorThread, text: str) -> dict[str, Any]:
    """The one recorded body whose first user message is ``text``."""
    (body,) = [b for b in bodies(sim) if user_text(b) == text]
    return body


def messages(text: str, system: str | None = SYSTEM) -> list[dict[str, str]]:
    head = [] if system is None else [{"role": "system", "content": system}]
    return [*head, {"role": "user", "content": text}]


def requests_total(sim: SimulatorThread) -> int:
    return int(sim.stats()["requests_total"])


def run_engine(coroutine_factory: Any) -> Any:
    """Run ``coroutine_factory()`` on a fresh loop, bounded in time."""

    async def main() -> Any:
        return await asyncio.wait_for(coroutine_factory(), BOUND_S)

    return asyncio.run(main())


# --- 1. per-call options ---------------------------------------------------------------------------


def test_per_call_options_reach_the_body_and_do_not_leak_into_later_calls(sim: SimulatorThread) -> None:
    provider = chat(sim, temperature=0.7)
    rows = ["alpha beta gamma delta", "one two three four five"]
    options = {"temperature": 0, "max-tokens": 3, "system-prompt": "Be terse."}
    results = run_batch(provider, rows, options=options)
    assert [r.value for r in results] == [
        expected_chat_reply(messages(t, "Be terse."), max_tokens=3) for t in rows
    ]
    assert [r.outcome for r in results] == [OK, OK]
    for text in rows:
        assert body_of(sim, text) == {
            "model": "sim-model",
            "temperature": 0.0,
            "max_tokens": 3,
            "messages": messages(text, "Be terse."),
        }

    # the same provider without options: its own temperature, its own prompt, no max_tokens
    (plain,) = run_batch(provider, ["after the options"])
    assert plain.value == expected_chat_reply(messages("after the options"))
    assert body_of(sim, "after the options") == {
        "model": "sim-model",
        "temperature": 0.7,
        "messages": messages("after the options"),
    }
    assert requests_total(sim) == 3


def test_options_as_json_text_like_sql_json_object(sim: SimulatorThread) -> None:
    provider = chat(sim, seed=11)
    run_batch(provider, ["as json text"], options='{"temperature": 0}')
    # SQL gives numbers as text too; a JSON null keeps the configured value (seed stays 11)
    run_batch(provider, ["text numbers"], options='{"max_tokens": "2", "top-p": "0.5", "seed": null}')
    assert body_of(sim, "as json text") == {
        "model": "sim-model",
        "temperature": 0.0,
        "seed": 11,
        "messages": messages("as json text"),
    }
    assert body_of(sim, "text numbers") == {
        "model": "sim-model",
        "max_tokens": 2,
        "top_p": 0.5,
        "seed": 11,
        "messages": messages("text numbers"),
    }


def test_per_row_options_and_call_row_options_on_one_engine_stay_apart(sim: SimulatorThread) -> None:
    provider = chat(sim, max_tokens=50)
    cold = parse_call_options({"temperature": 0, "system-prompt": "Cold."})
    hot = parse_call_options({"temperature": 1.5, "user-prompt": "Then rhyme."})
    assert cold is not None and hot is not None
    rows = ["row zero", "row one", "row two", "row three"]

    async def calls() -> tuple[list[RowResult], RowResult, RowResult]:
        engine = LLMEngine(provider, EngineSettings(max_concurrency=4), environ={})
        try:
            batch = await engine.run_batch(rows, options=[cold, None, hot, cold])
            single = await engine.call_row("single hot", options=hot)
            plain = await engine.call_row("single plain")
            return batch, single, plain
        finally:
            await engine.aclose()

    batch, single, plain = run_engine(calls)
    assert [r.outcome for r in batch] == [OK] * 4 and single.ok and plain.ok

    def cold_body(text: str) -> dict[str, Any]:
        return {
            "model": "sim-model",
            "max_tokens": 50,
            "temperature": 0.0,
            "messages": messages(text, "Cold."),
        }

    def hot_body(text: str) -> dict[str, Any]:
        return {
            "model": "sim-model",
            "max_tokens": 50,
            "temperature": 1.5,
            "messages": [*messages(text), {"role": "user", "content": "Then rhyme."}],
        }

    def plain_body(text: str) -> dict[str, Any]:
        return {"model": "sim-model", "max_tokens": 50, "messages": messages(text)}

    assert body_of(sim, "row zero") == cold_body("row zero")
    assert body_of(sim, "row one") == plain_body("row one")
    assert body_of(sim, "row two") == hot_body("row two")
    assert body_of(sim, "row three") == cold_body("row three")
    assert body_of(sim, "single hot") == hot_body("single hot")
    assert body_of(sim, "single plain") == plain_body("single plain")
    hot_messages = [*messages("single hot"), {"role": "user", "content": "Then rhyme."}]
    assert single.value == expected_chat_reply(hot_messages, max_tokens=50)
    assert batch[0].value == expected_chat_reply(messages("row zero", "Cold."), max_tokens=50)
    assert requests_total(sim) == 6


def test_two_engines_with_different_providers_each_send_their_own_options(sim: SimulatorThread) -> None:
    first = chat(sim, temperature=0.2, system_prompt="First engine.")
    second = chat(sim, model="other-model", max_tokens=7, system_prompt="Second engine.")
    shared = parse_call_options({"seed": 5})
    assert shared is not None

    async def both() -> list[RowResult]:
        engines = [LLMEngine(p, environ={}) for p in (first, second)]
        try:
            return list(
                await asyncio.gather(
                    engines[0].call_row("to first", options=shared),
                    engines[1].call_row("to second", options=shared),
                    engines[0].call_row("first plain"),
                    engines[1].call_row("second plain"),
                )
            )
        finally:
            for engine in engines:
                await engine.aclose()

    results = run_engine(both)
    assert [r.outcome for r in results] == [OK] * 4
    assert body_of(sim, "to first") == {
        "model": "sim-model",
        "temperature": 0.2,
        "seed": 5,
        "messages": messages("to first", "First engine."),
    }
    assert body_of(sim, "to second") == {
        "model": "other-model",
        "max_tokens": 7,
        "seed": 5,
        "messages": messages("to second", "Second engine."),
    }
    assert body_of(sim, "first plain") == {
        "model": "sim-model",
        "temperature": 0.2,
        "messages": messages("first plain", "First engine."),
    }
    assert body_of(sim, "second plain") == {
        "model": "other-model",
        "max_tokens": 7,
        "messages": messages("second plain", "Second engine."),
    }


def test_the_model_per_call_and_per_row(sim: SimulatorThread) -> None:
    provider = chat(sim)
    results = run_batch(
        provider,
        ["by options", "by row", "by neither"],
        options={"model": "call-model"},
        models=[None, "row-model", None],
    )
    assert [r.outcome for r in results] == [OK] * 3
    # a row's own model wins over the call's; the call's over the provider's
    assert body_of(sim, "by options")["model"] == "call-model"
    assert body_of(sim, "by row")["model"] == "row-model"
    assert body_of(sim, "by neither")["model"] == "call-model"
    (plain,) = run_batch(provider, ["provider model"])
    assert plain.ok and body_of(sim, "provider model")["model"] == "sim-model"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"endpoint": "http://elsewhere"}, "'endpoint'"),
        ({"api-key": "sk-not-per-call"}, "'api-key'"),
        ({"error-handling-strategy": "IGNORE"}, "'error-handling-strategy'"),
        ({"temperature": "hot"}, "'temperature'"),
        ({"max-tokens": 0}, "max_tokens"),
        ({"structured-output": "xml"}, "'structured-output'"),
        ({"invalid-output-retries": -1}, "'invalid-output-retries'"),
        ({"prompt-template": "broken {brace"}, "'prompt-template'"),
        ('{"temperature": 0', "must be a JSON object"),
        ("[0]", "must be a JSON object"),
    ],
)
def test_bad_options_raise_naming_the_key_and_send_nothing(
    sim: SimulatorThread, options: Any, named: str
) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        run_batch(chat(sim), ["never sent"], options=options)
    assert named in str(caught.value)
    assert "sk-not-per-call" not in str(caught.value)
    assert requests_total(sim) == 0


# --- 2. prompt templates ---------------------------------------------------------------------------

TEMPLATE = "Product: {product} Review: {review} Stars: {stars}"


def test_template_inserts_values_literally_braces_quotes_and_placeholders_included(
    sim: SimulatorThread,
) -> None:
    rows: list[Any] = [
        {"product": '{"a": "}{"}', "review": "says {review} and {{x}} and {stars}", "stars": 4},
        json.dumps({"product": 'lamp "deluxe"', "review": "it's {bright}\\n", "stars": 4.5}),
        {"product": "}", "review": "{", "stars": True},
    ]
    expected = [
        'Product: {"a": "}{"} Review: says {review} and {{x}} and {stars} Stars: 4',
        'Product: lamp "deluxe" Review: it\'s {bright}\\n Stars: 4.5',
        "Product: } Review: { Stars: true",
    ]
    results = run_batch(chat(sim), rows, prompt_template=TEMPLATE)
    assert [r.outcome for r in results] == [OK] * 3
    assert [r.value for r in results] == [expected_chat_reply(messages(t)) for t in expected]
    assert sorted(user_text(b) for b in bodies(sim)) == sorted(expected)
    for text in expected:
        assert body_of(sim, text)["messages"] == messages(text)


def test_template_null_field_is_a_null_row_and_a_missing_field_is_the_rows_own_error(
    sim: SimulatorThread,
) -> None:
    rows: list[Any] = [
        {"product": "kettle", "review": None, "stars": 3},
        '{"product": "kettle", "review": "fine", "stars": null}',
        {"product": "kettle", "stars": 3},
        "a plain sentence, not a JSON object",
        None,
        {"product": "kettle", "review": "fine", "stars": 3},
    ]
    results = run_batch(ignoring(sim), rows, prompt_template=TEMPLATE)
    assert [r.outcome for r in results] == [NULL_INPUT, NULL_INPUT, IGNORED, IGNORED, NULL_INPUT, OK]
    assert [r.value for r in results[:5]] == [None] * 5
    assert [r.attempts for r in results] == [0, 0, 0, 0, 0, 1]
    assert results[2].error == (
        "the row cannot be sent: the prompt template needs the field 'review'; the row has: product, stars"
    )
    assert results[3].error is not None
    assert results[3].error.startswith(
        "the row cannot be sent: the prompt template needs the fields product, review, stars: "
        "give the row as JSON_OBJECT('product' VALUE product, 'review' VALUE review, …) or a mapping"
    )
    assert results[5].value == expected_chat_reply(messages("Product: kettle Review: fine Stars: 3"))
    assert [user_text(b) for b in bodies(sim)] == ["Product: kettle Review: fine Stars: 3"]


def test_template_missing_field_under_failover_raises_naming_the_row(sim: SimulatorThread) -> None:
    rows = [{"product": "a", "review": "b", "stars": 1}, {"product": "a", "review": "b"}]
    with pytest.raises(RowFailedError) as caught:
        run_batch(chat(sim), rows, prompt_template=TEMPLATE, max_concurrency=1)
    assert caught.value.row_index == 1 and caught.value.attempts == 0
    assert "the prompt template needs the field 'stars'" in caught.value.cause


def test_template_as_a_per_call_option_with_text_rows(sim: SimulatorThread) -> None:
    results = run_batch(
        chat(sim), ["first {x} row", None], options={"prompt-template": "Summarise: {text} [end]"}
    )
    assert [r.outcome for r in results] == [OK, NULL_INPUT]
    assert [user_text(b) for b in bodies(sim)] == ["Summarise: first {x} row [end]"]
    (plain,) = run_batch(chat(sim), ["no template here"])
    assert plain.ok and body_of(sim, "no template here")["messages"] == messages("no template here")


# --- 3. structured output --------------------------------------------------------------------------


def test_row_type_string_sends_a_strict_json_schema_and_returns_the_predicted_object(
    sim: SimulatorThread,
) -> None:
    rows = ["great kettle, boils fast and quietly every single morning", "ünïcode 中文 review ✓", None]
    results = run_batch(chat(sim), rows, output_schema=ROW_TYPE)
    assert [r.outcome for r in results] == [OK, OK, NULL_INPUT]
    for text, result in zip(rows[:2], results[:2], strict=True):
        assert result.value == structured_reply(ROW_SCHEMA, text)
        assert result.attempts == 1
        body = body_of(sim, text)
        assert body == {
            "model": "sim-model",
            "messages": messages(text),
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "row", "schema": ROW_SCHEMA, "strict": True},
            },
        }
    value = results[0].value
    # the rules, spelled out for one row: nothing here is taken from the package's own answer
    assert value["summary"] == "great kettle, boils fast and quietly every single"  # 8 words
    assert value["stars"] == stable_hash(rows[0], "$.stars") % 100
    assert value["recommended"] is (stable_hash(rows[0], "$.recommended") % 2 == 1)
    assert value["score"] == (stable_hash(rows[0], "$.score") % 10000) / 100
    assert value["author"]["age"] == stable_hash(rows[0], "$.author.age") % 100
    assert [a["weight"] for a in value["aspects"]] == [
        (stable_hash(rows[0], f"$.aspects[{i}].weight") % 10000) / 100 for i in range(2)
    ]
    assert isinstance(value["name"], str) and value["name"].startswith("name-")
    assert requests_total(sim) == 2


def test_json_schema_mapping_and_text_work_too(sim: SimulatorThread) -> None:
    strict = _object(
        {"city": {"type": "string"}, "zip": {"type": "integer", "minimum": 1000, "maximum": 9999}}
    )
    loose = {
        "type": "object",
        "properties": {
            "mood": {"type": "string", "enum": ["calm", "angry"]},
            "reason": {"type": "string", "maxLength": 12},
            "count": {"type": "integer", "minimum": 1},
        },
        "required": ["mood"],
    }
    (by_mapping,) = run_batch(chat(sim), ["ship to Berlin"], output_schema=strict)
    (by_text,) = run_batch(chat(sim), ["why so loud today"], output_schema=json.dumps(loose))
    assert by_mapping.value == structured_reply(strict, "ship to Berlin")
    assert 1000 <= by_mapping.value["zip"] <= 9999
    assert by_text.value == {
        "mood": ["calm", "angry"][stable_hash("why so loud today", "$.mood") % 2],
        "reason": "why so loud ",
        "count": 1 + stable_hash("why so loud today", "$.count") % 100,
    }
    assert body_of(sim, "ship to Berlin")["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "row", "schema": strict, "strict": True},
    }
    # not every property required: OpenAI's strict mode would refuse it, so strict is off
    assert body_of(sim, "why so loud today")["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "row", "schema": loose, "strict": False},
    }


def test_structured_output_over_a_template_answers_for_the_rendered_prompt(sim: SimulatorThread) -> None:
    rows = [{"product": "kettle", "review": "loud {but} fast", "stars": 2}]
    (result,) = run_batch(chat(sim), rows, prompt_template=TEMPLATE, output_schema=ROW_TYPE)
    prompt = "Product: kettle Review: loud {but} fast Stars: 2"
    assert result.value == structured_reply(ROW_SCHEMA, prompt)
    assert result.value["summary"] == prompt
    assert body_of(sim, prompt)["response_format"]["json_schema"]["schema"] == ROW_SCHEMA


def test_call_row_with_an_output_spec_and_without_on_one_engine(sim: SimulatorThread) -> None:
    spec = output_spec(schema=ROW_TYPE)
    assert spec is not None

    async def calls() -> tuple[RowResult, RowResult]:
        engine = LLMEngine(chat(sim), environ={})
        try:
            return await engine.call_row("structured one", output=spec), await engine.call_row("free one")
        finally:
            await engine.aclose()

    structured, free = run_engine(calls)
    assert structured.value == structured_reply(ROW_SCHEMA, "structured one")
    assert free.value == expected_chat_reply(messages("free one"))
    assert "response_format" not in body_of(sim, "free one")
    assert body_of(sim, "structured one")["response_format"]["type"] == "json_schema"


# --- 4. classification -----------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [LABELS_CSV, list(LABELS)], ids=["csv", "list"])
def test_labels_send_an_enum_and_every_value_is_the_predicted_label(
    sim: SimulatorThread, labels: Any
) -> None:
    rows = [f"review number {i}: {'good' if i % 2 else 'bad'} product" for i in range(12)]
    results = run_batch(chat(sim), rows, labels=labels)
    predicted = [LABELS[stable_hash(text, "$.label") % len(LABELS)] for text in rows]
    assert [r.value for r in results] == predicted
    assert all(r.value in LABELS for r in results)
    assert len(set(predicted)) > 1  # the rows do not all land on one label
    for text in rows:
        assert body_of(sim, text)["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "label", "schema": LABEL_SCHEMA, "strict": True},
        }


# --- 5. invalid replies ----------------------------------------------------------------------------


def test_a_reply_wrong_twice_is_asked_again_and_succeeds_on_attempt_three(sim: SimulatorThread) -> None:
    text = "[sim:fail=2,schema_violation] wrong twice"
    (result,) = run_batch(chat(sim), [text], output_schema=ROW_TYPE, invalid_output_retries=2)
    assert result.outcome == OK and result.attempts == 3
    assert result.value == structured_reply(ROW_SCHEMA, text)
    assert sim.stats()["attempts"][text] == 3


def test_an_always_violating_reply_is_ignored_after_the_retries(sim: SimulatorThread) -> None:
    text = "[sim:schema_violation] always wrong"
    (result,) = run_batch(ignoring(sim), [text], output_schema=ROW_TYPE)
    assert result.value is None and result.outcome == IGNORED and result.attempts == 3
    assert result.status == 200
    # the violation drops the root's first required property
    assert result.error is not None
    assert result.error.startswith("the reply does not match the schema: at $: 'name' is a required property")
    assert sim.stats()["attempts"][text] == 3


def test_invalid_output_retries_zero_and_per_call(sim: SimulatorThread) -> None:
    never = "[sim:schema_violation] no second chance"
    once = "[sim:schema_violation] one second chance"
    (zero,) = run_batch(ignoring(sim), [never], output_schema=ROW_TYPE, invalid_output_retries=0)
    (one,) = run_batch(ignoring(sim), [once], output_schema=ROW_TYPE, options={"invalid-output-retries": 1})
    assert (zero.outcome, zero.attempts) == (IGNORED, 1)
    assert (one.outcome, one.attempts) == (IGNORED, 2)
    assert sim.stats()["attempts"] == {never: 1, once: 2}


def test_a_reply_that_is_not_json_says_so(sim: SimulatorThread) -> None:
    text = "[sim:invalid_json] chatty model"
    (result,) = run_batch(ignoring(sim), [text], labels=LABELS_CSV)
    assert result.value is None and result.outcome == IGNORED and result.attempts == 3
    assert result.error is not None
    assert result.error.startswith("the reply is not JSON: Expecting value at line 1 column 1")
    assert repr(INVALID_JSON_REPLY) in result.error


def test_invalid_replies_under_failover_raise(sim: SimulatorThread) -> None:
    rows = ["fine row", "[sim:invalid_json] the bad one"]
    with pytest.raises(RowFailedError) as caught:
        run_batch(chat(sim), rows, output_schema=ROW_TYPE, max_concurrency=1)
    assert caught.value.row_index == 1 and caught.value.attempts == 3
    assert caught.value.cause.startswith("the reply is not JSON")
    assert sim.stats()["attempts"]["[sim:invalid_json] the bad one"] == 3


# --- 6. the json_object fallback -------------------------------------------------------------------


def _check_fallback_body(body: dict[str, Any], text: str, schema: dict[str, Any], system: str) -> None:
    """A json_object request: the schema on the line after ``JSON schema:`` in the system prompt."""
    assert body["response_format"] == {"type": "json_object"}
    assert body["model"] == "sim-model"
    (system_message, user_message) = body["messages"]
    assert user_message == {"role": "user", "content": text}
    assert system_message["role"] == "system"
    prompt = system_message["content"]
    assert prompt.startswith(system + "\n\n")
    lines = prompt.splitlines()
    marker = lines.index(SCHEMA_MARKER)
    assert json.loads(lines[marker + 1]) == schema
    assert marker + 2 == len(lines)  # the schema is the prompt's last line
    assert schema_in_prompt([prompt]) == schema


def test_a_refused_json_schema_falls_back_to_json_object_once_and_for_good(sim: SimulatorThread) -> None:
    sim.update(json_schema_support=False)
    rows = ["first row refused", "second row", "third row"]
    results = run_batch(chat(sim), rows, output_schema=ROW_TYPE, max_concurrency=1)
    assert [r.outcome for r in results] == [OK] * 3
    assert [r.value for r in results] == [structured_reply(ROW_SCHEMA, t) for t in rows]
    records = recorded(sim)
    assert [(user_text(r["body"]), r["status"]) for r in records] == [
        ("first row refused", 400),
        ("first row refused", 200),
        ("second row", 200),
        ("third row", 200),
    ]
    assert records[0]["body"]["response_format"]["type"] == "json_schema"
    for record, text in zip(records[1:], rows, strict=True):
        _check_fallback_body(record["body"], text, ROW_SCHEMA, SYSTEM)


def test_after_a_refusal_the_engine_asks_json_object_for_every_later_batch_and_schema(
    sim: SimulatorThread,
) -> None:
    sim.update(json_schema_support=False)
    with BlockingEngine(chat(sim), EngineSettings(max_concurrency=1)) as engine:
        first = engine.run_batch(["refused once"], output=output_spec(schema=ROW_TYPE), timeout=BOUND_S)
        later = engine.run_batch(["labelled later"], output=output_spec(labels=LABELS_CSV), timeout=BOUND_S)
        terse = parse_call_options({"system-prompt": "Be terse."})
        assert isinstance(terse, CallOptions)
        own_prompt = engine.run_batch(
            ["own system prompt"], options=terse, output=output_spec(schema=ROW_TYPE), timeout=BOUND_S
        )
    assert first[0].value == structured_reply(ROW_SCHEMA, "refused once")
    assert later[0].value == LABELS[stable_hash("labelled later", "$.label") % len(LABELS)]
    assert own_prompt[0].value == structured_reply(ROW_SCHEMA, "own system prompt")
    statuses = [(user_text(r["body"]), r["status"]) for r in recorded(sim)]
    assert statuses == [
        ("refused once", 400),
        ("refused once", 200),
        ("labelled later", 200),
        ("own system prompt", 200),
    ]
    _check_fallback_body(recorded(sim)[2]["body"], "labelled later", LABEL_SCHEMA, SYSTEM)
    _check_fallback_body(recorded(sim)[3]["body"], "own system prompt", ROW_SCHEMA, "Be terse.")


def test_structured_output_json_object_from_the_start_sends_no_json_schema(sim: SimulatorThread) -> None:
    (result,) = run_batch(
        chat(sim), ["straight away"], output_schema=ROW_TYPE, structured_output="json_object"
    )
    assert result.value == structured_reply(ROW_SCHEMA, "straight away")
    (record,) = recorded(sim)
    assert record["status"] == 200
    _check_fallback_body(record["body"], "straight away", ROW_SCHEMA, SYSTEM)


@pytest.mark.parametrize(
    "how",
    [{"structured_output": "json_schema"}, {"options": {"structured-output": "json_schema"}}],
    ids=["setting", "per-call"],
)
def test_structured_output_json_schema_never_falls_back(sim: SimulatorThread, how: dict[str, Any]) -> None:
    sim.update(json_schema_support=False)
    rows = ["no fallback one", "no fallback two"]
    results = run_batch(ignoring(sim), rows, output_schema=ROW_TYPE, max_concurrency=1, **how)
    for result in results:
        assert result.value is None and result.outcome == IGNORED
        assert result.status == 400 and result.attempts == 1
        assert result.error is not None and "response_format" in result.error
        assert JSON_SCHEMA_UNSUPPORTED in result.error
    records = recorded(sim)
    assert [(user_text(r["body"]), r["status"]) for r in records] == [
        ("no fallback one", 400),
        ("no fallback two", 400),
    ]
    assert all(r["body"]["response_format"]["type"] == "json_schema" for r in records)


def test_structured_output_json_schema_under_failover_raises(sim: SimulatorThread) -> None:
    sim.update(json_schema_support=False)
    with pytest.raises(RowFailedError) as caught:
        run_batch(chat(sim), ["refused"], output_schema=ROW_TYPE, structured_output="json_schema")
    assert caught.value.status == 400 and "response_format" in caught.value.cause
    assert requests_total(sim) == 1


# --- known gaps ------------------------------------------------------------------------------------


def test_the_context_limit_is_the_functions_own_not_a_per_call_option(sim: SimulatorThread) -> None:
    """Rows are fitted to the function's context limit; a call naming one is refused, not ignored."""
    with pytest.raises(InvalidOptionError, match="'max-context-size' is not one a call can set"):
        run_batch(chat(sim, model="gpt-4"), ["x"], options={"max-context-size": 5})
    assert requests_total(sim) == 0

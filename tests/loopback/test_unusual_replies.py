"""Replies a real endpoint may send that the simulator does not: each stays the row's own
outcome (never the batch's exception), and none lets spending or secrets slip.

A scripted server on 127.0.0.1 answers every chat request with the content (and usage) the
test sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from helpers.servers import serve_app

from flink_llm_udf import BlockingEngine, EngineSettings, OpenAICompatProvider, run_batch
from flink_llm_udf._call_plan import OutputSpec
from flink_llm_udf._errors import InvalidOptionError
from flink_llm_udf._results import IGNORED, OK
from flink_llm_udf.flink._structured_types import ResultType
from flink_llm_udf.job_parameters import settings_from_lookup


class ScriptedServer:
    """Answers chat requests with ``content``; ``usage`` None leaves it out of the reply."""

    def __init__(self) -> None:
        self.content = "{}"
        self.usage: dict[str, int] | None = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def chat(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        reply: dict[str, Any] = {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.content}}],
        }
        if self.usage is not None:
            reply["usage"] = self.usage
        return web.json_response(reply)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app


@pytest.fixture
def server() -> Iterator[tuple[ScriptedServer, str]]:
    scripted = ScriptedServer()
    with serve_app(scripted.app()) as base:
        yield scripted, base + "/v1"


def ignore(endpoint: str, **options: Any) -> OpenAICompatProvider:
    return OpenAICompatProvider(endpoint=endpoint, model="m", error_handling_strategy="IGNORE", **options)


def test_an_integer_beyond_64_bits_is_answered_and_simply_not_cached(server) -> None:
    scripted, endpoint = server
    scripted.content = json.dumps({"a": 2**70})
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    results = run_batch(ignore(endpoint), ["x", "y"], output_schema=schema, cache="memory")
    assert [(r.outcome, r.value) for r in results] == [(OK, {"a": 2**70})] * 2


def test_a_reply_that_cannot_become_the_flink_row_is_asked_again_then_the_rows_error(server) -> None:
    scripted, endpoint = server
    scripted.content = json.dumps({"d": "next Tuesday", "t": 300})
    typed = ResultType("ROW<d DATE, t TINYINT>")
    output = OutputSpec.of(typed.schema, check=typed.value)
    with BlockingEngine(ignore(endpoint)) as engine:
        (result,) = engine.run_batch(["x"], output=output)
    assert result.outcome == IGNORED and result.value is None
    assert "does not fit the result type" in (result.error or ""), result.error
    assert result.attempts == 3 and len(scripted.requests) == 3  # 1 + invalid_output_retries


def test_a_schema_whose_reference_leads_nowhere_is_the_rows_error_not_the_batchs(server) -> None:
    scripted, endpoint = server
    scripted.content = json.dumps({"a": 1})
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/missing"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    (result,) = run_batch(ignore(endpoint), ["x"], output_schema=schema)
    assert result.outcome == IGNORED and "the schema cannot be checked" in (result.error or "")
    assert result.attempts == 1


def test_an_endpoint_without_usage_still_spends_the_budget(server, caplog) -> None:
    scripted, endpoint = server
    scripted.content = "fine"
    scripted.usage = None
    budget = 300
    results = run_batch(
        ignore(endpoint, max_tokens=50),
        [f"row {i}" for i in range(40)],
        token_budget=budget,
        max_concurrency=1,
    )
    answered = sum(r.ok for r in results)
    # each request is counted at its estimate (prompt + 50): a handful fit, the rest are refused
    assert 1 <= answered <= budget // 50 and len(scripted.requests) == answered
    assert all("budget spent" in (r.error or "") for r in results if not r.ok)
    assert "without 'usage'" in caplog.text


def test_a_budget_of_zero_is_refused_not_read_as_no_budget() -> None:
    for key, value in (("ai.token-budget", "0"), ("ai.cost-budget", "0")):
        with pytest.raises(InvalidOptionError, match=key):
            settings_from_lookup({key: value, "ai.prices": "*=1"}.get)
    assert settings_from_lookup({"ai.token-budget": "none"}.get).token_budget is None


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cr#et-word@host:6379/0",
        "redis://user:pa/ss?w@host:6379/0",
        "redis://:s3cret-word@host:99999/0",
        "redis://host:6379/0?password=s3cret-word",
    ],
)
def test_a_cache_password_never_shows_however_the_url_is_written(url: str) -> None:
    secret_pieces = ("s3cr", "et-word", "pa/ss", "ss?w")
    try:
        shown = repr(EngineSettings(cache=url))
    except InvalidOptionError as exc:
        shown = str(exc)
    assert not any(piece in shown for piece in secret_pieces), shown
    try:
        settings_from_lookup({"ai.cache": url}.get)
    except InvalidOptionError as exc:
        assert not any(piece in str(exc) for piece in secret_pieces), str(exc)


def test_headers_a_gateway_routes_by_are_part_of_the_cache_key_and_the_key_is_not(
    server, redis_server
) -> None:
    scripted, endpoint = server
    scripted.content = "answer"
    rows = ["a", "b"]
    first = ignore(endpoint, api_key="sk-first-key-0000", extra_header='{"X-Route": "blue"}')
    run_batch(first, rows, cache=redis_server.url)
    assert len(scripted.requests) == 2
    rotated = first.replace(api_key="sk-second-key-1111")
    assert all(r.cached for r in run_batch(rotated, rows, cache=redis_server.url))
    assert len(scripted.requests) == 2  # a rotated key finds the stored answers
    rerouted = first.replace(extra_header='{"X-Route": "green"}')
    assert not any(r.cached for r in run_batch(rerouted, rows, cache=redis_server.url))
    assert len(scripted.requests) == 4  # another route is another answer

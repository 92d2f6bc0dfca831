"""``EngineSettings(context_tokenizer="endpoint")``: the context limit counted by the server.

A small server stands in for llama.cpp: its tokenizer makes one token per character (far more
than tiktoken for ordinary words), and it records what it was asked to complete. With tiktoken
counting, a text cut to the limit still overflows the server's count; with the server's own
``/tokenize`` and ``/detokenize`` the text that arrives fits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from helpers.servers import serve_app

from flink_llm_udf import EngineSettings, InvalidOptionError, OpenAICompatProvider, run_batch
from flink_llm_udf._endpoint_tokens import tokenizer_urls
from flink_llm_udf._results import OK, SKIPPED

LIMIT = 40
TEXT = " ".join(f"word{i}" for i in range(60))  # 60 words: ~120 tiktoken tokens, 389 characters


class CharTokenizerServer:
    """Chat completions plus llama.cpp's /tokenize and /detokenize, one token per character."""

    def __init__(self, *, with_tokenizer: bool = True) -> None:
        self.prompts: list[str] = []
        self.tokenize_calls = 0
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        if with_tokenizer:
            self.app.router.add_post("/tokenize", self.tokenize)
            self.app.router.add_post("/detokenize", self.detokenize)

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        self.prompts.append(prompt)
        if len(prompt) > LIMIT:
            return web.json_response(
                {"error": {"message": f"{len(prompt)} tokens > n_ctx {LIMIT}"}}, status=400
            )
        return web.json_response({"choices": [{"index": 0, "message": {"content": f"ok {len(prompt)}"}}]})

    async def tokenize(self, request: web.Request) -> web.Response:
        self.tokenize_calls += 1
        body = await request.json()
        return web.json_response({"tokens": [ord(c) for c in body["content"]]})

    async def detokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"content": "".join(chr(t) for t in body["tokens"])})


@pytest.fixture
def char_server() -> Iterator[tuple[CharTokenizerServer, str]]:
    server = CharTokenizerServer()
    with serve_app(server.app) as base_url:
        yield server, base_url


def provider(base_url: str, **options: object) -> OpenAICompatProvider:
    return OpenAICompatProvider(
        endpoint=f"{base_url}/v1",
        model="tiny",
        system_prompt="",
        max_context_size=LIMIT,
        error_handling_strategy="IGNORE",
        **options,  # type: ignore[arg-type]
    )


def test_tiktoken_counting_lets_a_self_hosted_model_overflow(char_server):
    server, base_url = char_server
    (result,) = run_batch(provider(base_url), [TEXT])
    assert len(server.prompts[0]) > LIMIT  # cut to 40 tiktoken tokens, still > 40 server tokens
    assert result.status == 400 and "n_ctx" in (result.error or "")


@pytest.mark.parametrize(
    ("action", "kept"),
    [
        ("truncated-tail", TEXT[:LIMIT]),
        ("truncated-head", TEXT[-LIMIT:]),
        ("truncated-tail-log", TEXT[:LIMIT]),
    ],
)
def test_the_server_tokenizer_cuts_the_row_to_fit(char_server, action, kept):
    server, base_url = char_server
    settings = EngineSettings(context_tokenizer="endpoint")
    (result,) = run_batch(provider(base_url, context_overflow_action=action), [TEXT], settings=settings)
    assert result.outcome == OK and result.value == f"ok {LIMIT}"
    assert server.prompts == [kept]


def test_skipped_rows_and_short_rows_with_the_server_tokenizer(char_server):
    server, base_url = char_server
    # one row at a time: the server sees the rows in their order (two in flight may arrive swapped)
    settings = EngineSettings(context_tokenizer="endpoint", max_concurrency=1)
    rows = [TEXT, "short row", "x" * LIMIT]
    results = run_batch(provider(base_url, context_overflow_action="skipped"), rows, settings=settings)
    assert [r.outcome for r in results] == [SKIPPED, OK, OK]
    assert server.prompts == ["short row", "x" * LIMIT]
    assert server.tokenize_calls == 1  # rows of at most LIMIT bytes need no count


def test_a_server_without_a_tokenizer_falls_back_to_tiktoken_with_one_warning(caplog):
    server = CharTokenizerServer(with_tokenizer=False)
    settings = EngineSettings(context_tokenizer="endpoint", max_concurrency=1)
    with serve_app(server.app) as base_url, caplog.at_level(logging.WARNING, logger="flink_llm_udf"):
        results = run_batch(provider(base_url), [TEXT, TEXT], settings=settings)
    assert all(r.status == 400 for r in results)  # tiktoken's cut, as without the setting
    warnings = [r for r in caplog.records if "no usable tokenizer" in r.getMessage()]
    assert len(warnings) == 1 and "counting with tiktoken instead" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("url", "tokenize"),
    [
        ("http://h:8080/v1/chat/completions", "http://h:8080/tokenize"),
        ("https://h/proxy/v1/embeddings", "https://h/proxy/tokenize"),
        ("http://h/chat/completions?api-version=1", "http://h/tokenize"),
    ],
)
def test_tokenizer_urls_sit_beside_v1(url, tokenize):
    assert tokenizer_urls(url)[0] == tokenize
    assert tokenizer_urls(url)[1] == tokenize.replace("/tokenize", "/detokenize")


def test_an_unknown_context_tokenizer_is_refused():
    with pytest.raises(InvalidOptionError, match=r"context_tokenizer='spacy'.*tiktoken, endpoint"):
        EngineSettings(context_tokenizer="spacy")  # type: ignore[arg-type]

"""The package against llama.cpp's ``llama-server``: chat, embeddings, concurrency, errors, context guard.

Everything goes through the package (``run_batch``, ``LLMEngine``), as a user's job would; the
server is asked directly only to measure (its ``/tokenize`` count, its slot context), never to
produce a value under test. The model is the tiny random one from ``llama_cpp.py``: its replies
are noise, but they are real llama.cpp replies, with llama.cpp's framing, usage, errors and
tokenizer, and they always run to ``max_tokens`` (the model never picks an end-of-turn token).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest
from compat.llama_cpp import N_EMBD, LlamaServer

from flink_llm_udf import (
    EngineSettings,
    LLMEngine,
    OpenAICompatProvider,
    RowFailedError,
    RowResult,
    run_batch,
)
from flink_llm_udf._results import IGNORED, OK
from flink_llm_udf._tokens import fit_to_context, load_encoding

MODEL = "tiny-llama"
#: The row limit the context-guard tests set: the issue measured a cut to 300 cl100k tokens.
GUARD_LIMIT = 300

# Ordinary English words, most of them absent from the tiny vocabulary's training text, so the
# served tokenizer splits them into pieces as a small real vocabulary would split rarer words.
_WORD_TEXT = (
    "river mountain quietly engine yellow harbour window silver morning garden market letter "
    "pencil thunder kitchen journey blanket orange teacher village coffee winter forest ladder "
    "camera bridge candle doctor island jacket lemon mirror needle pocket rocket saddle tunnel "
    "violin wagon zipper anchor button castle dragon feather glacier hammer insect jungle kettle "
    "lantern meadow notebook oyster parrot quilt ribbon shadow tomato umbrella velvet walnut"
)
_WORDS = tuple(_WORD_TEXT.split())


def prose(n_words: int, seed: int) -> str:
    """``n_words`` words of deterministic pseudo-English, with some punctuation."""
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(n_words)]
    for i in range(7, n_words, 8):
        words[i] += rng.choice([",", ".", ";"])
    return " ".join(words)


def chat_provider(server: LlamaServer, **options: Any) -> OpenAICompatProvider:
    """A provider for the server's chat endpoint (llama-server serves whatever model it loaded)."""
    return OpenAICompatProvider(endpoint=server.base_url + "/v1/chat/completions", model=MODEL, **options)


def embedding_provider(server: LlamaServer, **options: Any) -> OpenAICompatProvider:
    """A provider for the server's embeddings endpoint."""
    return OpenAICompatProvider(endpoint=server.base_url + "/v1/embeddings", model=MODEL, **options)


def run_engine(
    provider: OpenAICompatProvider, rows: Sequence[str | None], settings: EngineSettings
) -> list[RowResult]:
    """``LLMEngine.run_batch`` on a fresh event loop, closing the engine afterwards."""

    async def run() -> list[RowResult]:
        engine = LLMEngine(provider, settings)
        try:
            return await engine.run_batch(list(rows), raise_on_failover=False)
        finally:
            await engine.aclose()

    return asyncio.run(run())


def prompt_overhead(server: LlamaServer) -> int:
    """Tokens a chat request adds around the row: template, system prompt, BOS (measured)."""
    [result] = run_batch(chat_provider(server, max_tokens=1), ["x"])
    assert result.ok and result.usage is not None, result
    return result.usage.prompt_tokens - server.count_tokens("x")


# --- chat -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_tokens", [1, 7, 24])
def test_every_chat_row_is_answered_with_usage_counted_and_max_tokens_respected(
    chat_server: LlamaServer, max_tokens: int
) -> None:
    rows = [prose(5 + 3 * i, seed=i) for i in range(6)]
    results = run_batch(chat_provider(chat_server, max_tokens=max_tokens), rows)

    assert [r.outcome for r in results] == [OK] * len(rows), [r.error for r in results]
    for row, result in zip(rows, results, strict=True):
        assert isinstance(result.value, str) and result.value.strip(), result
        assert result.status == 200 and result.attempts == 1
        assert result.usage is not None
        # The tiny model never ends a turn by itself, so max_tokens is what stopped every reply.
        assert result.usage.completion_tokens == max_tokens
        # The server counts the prompt with its own tokenizer: the row is in it, with a template.
        assert result.usage.prompt_tokens > chat_server.count_tokens(row)
        assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_a_null_row_is_not_sent_and_its_neighbours_are_answered(chat_server: LlamaServer) -> None:
    results = run_batch(chat_provider(chat_server, max_tokens=3), ["first", None, "third"])

    assert [r.outcome for r in results] == [OK, "null_input", OK]
    assert results[1].value is None and results[1].attempts == 0


# --- embeddings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows_per_request", [1, 4])
def test_every_embedding_row_gets_a_vector_of_the_models_width_in_row_order(
    embedding_server: LlamaServer, rows_per_request: int
) -> None:
    rows = [prose(4 + i, seed=100 + i) for i in range(10)]
    provider = embedding_provider(embedding_server)

    results = run_batch(provider, rows, embedding_rows_per_request=rows_per_request)
    one_by_one = run_batch(provider, rows, embedding_rows_per_request=1)

    assert [r.outcome for r in results] == [OK] * len(rows), [r.error for r in results]
    for result, alone in zip(results, one_by_one, strict=True):
        assert isinstance(result.value, list) and len(result.value) == N_EMBD
        assert isinstance(alone.value, list)
        # Each row has its own vector, in row order, however the rows were grouped into requests.
        assert result.value == pytest.approx(alone.value, abs=1e-5)
    distinct = {tuple(round(x, 4) for x in cast("list[float]", r.value)) for r in results}
    assert len(distinct) == len(rows)
    # A group's usage is reported once (on its first row), so the sums match row-by-row calls.
    assert sum(r.usage.prompt_tokens for r in results if r.usage) == sum(
        r.usage.prompt_tokens for r in one_by_one if r.usage
    )
    requests = -(-len(rows) // rows_per_request)
    assert sum(1 for r in results if r.usage is not None) == requests


# --- concurrency -----------------------------------------------------------------------------------
def test_more_rows_than_slots_at_max_concurrency_8_are_all_answered_and_none_are_lost(
    chat_server: LlamaServer,
) -> None:
    # Row i has one word more than row i-1 (and a piece never spans two words in this
    # vocabulary), so the prompt counts the server reports rise strictly with the row index:
    # each answer provably belongs to its own row.
    words = prose(60, seed=7).split()
    rows = [" ".join(words[: 5 + i]) for i in range(48)]

    results = run_batch(chat_provider(chat_server, max_tokens=4), rows, max_concurrency=8)

    assert len(results) == len(rows)
    assert [r.outcome for r in results] == [OK] * len(rows), [r.error for r in results]
    assert all(r.attempts == 1 for r in results)
    prompt_tokens = [r.usage.prompt_tokens if r.usage else 0 for r in results]
    assert all(a < b for a, b in itertools.pairwise(prompt_tokens)), prompt_tokens
    assert all(r.usage is not None and r.usage.completion_tokens == 4 for r in results)


# --- errors ----------------------------------------------------------------------------------------
def test_a_prompt_beyond_the_servers_context_is_a_non_retried_row_error_under_ignore(
    chat_server: LlamaServer,
) -> None:
    too_long = prose(2000, seed=1)
    assert chat_server.count_tokens(too_long) > chat_server.slot_context()
    provider = chat_provider(
        chat_server,
        max_tokens=4,
        error_handling_strategy="RETRY",
        retry_num=5,
        retry_fallback_strategy="IGNORE",
    )

    short, long, after = run_batch(provider, ["a short row", too_long, "another short row"])

    assert short.ok and after.ok
    assert long.outcome == IGNORED and long.value is None
    assert long.status == 400
    assert long.attempts == 1  # a 400 is the request's fault: retrying cannot help
    assert long.error is not None and "exceeds the available context size" in long.error


def test_a_prompt_beyond_the_servers_context_fails_its_row_by_index_under_failover(
    chat_server: LlamaServer,
) -> None:
    rows = ["a short row", "another short row", prose(2000, seed=2), "a last row"]
    provider = chat_provider(chat_server, max_tokens=4, error_handling_strategy="FAILOVER")

    with pytest.raises(RowFailedError) as failed:
        run_batch(provider, rows)

    assert failed.value.row_index == 2
    assert failed.value.status == 400
    assert failed.value.attempts == 1
    assert "exceeds the available context size" in failed.value.cause
    assert "row 2" in str(failed.value)


def test_a_wrong_api_key_is_a_401_row_error_that_is_not_retried(
    keyed_server: LlamaServer, server_api_key: str
) -> None:
    wrong_key = "sk-wrong-" + server_api_key[-24:][::-1]
    provider = chat_provider(
        keyed_server,
        api_key=wrong_key,
        max_tokens=2,
        error_handling_strategy="RETRY",
        retry_num=5,
        retry_fallback_strategy="IGNORE",
    )

    [result] = run_batch(provider, ["hello"])

    assert result.outcome == IGNORED
    assert result.status == 401
    assert result.attempts == 1
    assert result.error is not None and "Invalid API Key" in result.error
    assert wrong_key not in result.error
    [right] = run_batch(provider.replace(api_key=server_api_key), ["hello"])
    assert right.ok, right.error


# --- the context guard -----------------------------------------------------------------------------
def test_counting_with_tiktoken_lets_a_cut_row_exceed_the_served_models_context(
    chat_server: LlamaServer, record_property: Callable[[str, object], None]
) -> None:
    """The defect item 8 of issue 10 fixes, measured: cl100k counts are not the model's counts."""
    text = prose(2000, seed=3)
    cut = fit_to_context(text, load_encoding(MODEL), GUARD_LIMIT, "truncated-tail").text
    assert cut is not None
    served_tokens = chat_server.count_tokens(cut)
    record_property("cl100k_tokens_of_cut_row", GUARD_LIMIT)
    record_property("served_tokens_of_cut_row", served_tokens)
    print(f"a row cut to {GUARD_LIMIT} cl100k tokens is {served_tokens} tokens for the served model")

    # The limit holds in cl100k tokens but not in the model's own: the cut text is over it ...
    assert served_tokens > GUARD_LIMIT
    # ... and over the whole slot context, so the server refuses the row the guard let through.
    assert served_tokens > chat_server.slot_context()
    provider = chat_provider(
        chat_server, max_tokens=4, max_context_size=GUARD_LIMIT, error_handling_strategy="IGNORE"
    )
    [result] = run_batch(provider, [text])
    assert result.outcome == IGNORED and result.status == 400
    assert result.error is not None and "exceeds the available context size" in result.error


def test_counting_with_the_endpoints_tokenizer_cuts_the_row_to_fit_and_it_is_answered(
    chat_server: LlamaServer,
) -> None:
    text = prose(2000, seed=3)
    overhead = prompt_overhead(chat_server)
    provider = chat_provider(
        chat_server, max_tokens=4, max_context_size=GUARD_LIMIT, error_handling_strategy="IGNORE"
    )

    [result] = run_engine(provider, [text], EngineSettings(context_tokenizer="endpoint"))

    assert result.outcome == OK, result.error
    assert result.usage is not None
    assert result.usage.prompt_tokens <= chat_server.slot_context()
    # The row itself was cut to the limit in the server's tokens: not over it, and not far under.
    # (A piece at the row's edge may tokenize a little differently inside the chat template.)
    row_tokens = result.usage.prompt_tokens - overhead
    print(
        f"cut with the endpoint's tokenizer: the row is {row_tokens} served tokens (limit {GUARD_LIMIT}), "
        f"the prompt {result.usage.prompt_tokens} of the slot's {chat_server.slot_context()}"
    )
    assert GUARD_LIMIT - 10 <= row_tokens <= GUARD_LIMIT + 2, (row_tokens, overhead)

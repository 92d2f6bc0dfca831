"""Structured output and paying once against llama.cpp's ``llama-server``.

llama.cpp turns a ``json_schema`` (or ``json_object``) ``response_format`` into a grammar. For
the tiny random model of ``llama_cpp.py`` its grammar sampler cannot be initialised (the
server's log shows the grammar, rooted at the chat template's ``<|im_start|>assistant``, then
"error initializing grammar sampler"), so what is checked here is how such a refusal reaches a
row; typed replies are checked against the simulator. Counting happens at the package
(``RowResult``, the observer), never by asking the server for a value under test.
"""

from __future__ import annotations

from typing import Any

import pytest
from compat.llama_cpp import LlamaServer

from flink_llm_udf import CountingObserver, OpenAICompatProvider, run_batch

MODEL = "tiny-llama"
LABELS = ["positive", "negative", "neutral"]


def chat_provider(server: LlamaServer, **options: Any) -> OpenAICompatProvider:
    return OpenAICompatProvider(endpoint=server.base_url + "/v1/chat/completions", model=MODEL, **options)


@pytest.mark.parametrize("structured_output", ["json_schema", "json_object", "auto"])
def test_a_schema_the_server_cannot_apply_is_each_rows_error_and_the_batch_goes_on(
    chat_server: LlamaServer, structured_output: str
) -> None:
    """llama-server turns the schema into a grammar; for the tiny model it cannot initialise the
    grammar sampler and answers HTTP 400 ("Failed to initialize samplers"). Each row gets that
    error under IGNORE, once (a 400 is not retried), and ``auto`` does not fall back to
    ``json_object``: the server did not say ``response_format`` is unsupported."""
    rows = [f"review number {i}: it was fine" for i in range(4)]
    observer = CountingObserver()
    results = run_batch(
        chat_provider(chat_server, max_tokens=32, error_handling_strategy="IGNORE"),
        [*rows, None],
        labels=LABELS,
        structured_output=structured_output,
        observer=observer,
    )
    assert [r.outcome for r in results] == ["ignored"] * len(rows) + ["null_input"]
    for result in results[: len(rows)]:
        assert result.status == 400 and result.attempts == 1, result
        assert "Failed to initialize samplers" in (result.error or ""), result.error
    assert observer.value("requests") == len(rows)


def test_duplicates_and_a_rerun_cost_one_request_per_distinct_prompt(
    chat_server: LlamaServer, each_http_client: str
) -> None:
    provider = chat_provider(chat_server, max_tokens=4)
    same, other = f"same prompt ({each_http_client})", f"other prompt ({each_http_client})"
    rows = [same, other, same, same]
    observer = CountingObserver()
    first = run_batch(provider, rows, observer=observer, cache="memory")
    assert observer.value("requests") == 2 and [r.cached for r in first] == [False, False, True, True]
    assert first[0].value == first[2].value  # one sample, shared
    rerun = CountingObserver()  # the memory cache is the process's: a rerun sends nothing
    again = run_batch(provider, rows, observer=rerun, cache="memory")
    assert rerun.value("requests") == 0 and [r.value for r in again] == [r.value for r in first]

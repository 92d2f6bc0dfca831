"""Context-size limits: offline tiktoken encodings, truncation and skipping."""

from __future__ import annotations

import logging

import pytest

from flink_llm_udf import LLMEngine, OpenAICompatProvider, TokenizerUnavailableError
from flink_llm_udf._tokens import encoding_name_for, fit_to_context, load_encoding


@pytest.fixture(scope="module")
def cl100k():
    return load_encoding(None)


@pytest.fixture
def fresh_tokenizers():
    load_encoding.cache_clear()
    yield
    load_encoding.cache_clear()


@pytest.mark.parametrize(
    "model,encoding",
    [
        (None, "cl100k_base"),
        ("", "cl100k_base"),
        ("my-local-llama", "cl100k_base"),
        ("qwen-plus", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
    ],
)
def test_encoding_name_for(model, encoding):
    assert encoding_name_for(model) == encoding


@pytest.mark.parametrize("model", [None, "unknown-model", "gpt-4"])
def test_cl100k_models_load_offline_from_an_empty_cache(model, tmp_path, monkeypatch, fresh_tokenizers):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    encoding = load_encoding(model)
    assert encoding.encode("apple banana cherry") == load_encoding(None).encode("apple banana cherry")
    assert len(encoding.encode("apple banana cherry")) == 3


# The spec's black-box vector: cl100k_base, N=2, "apple banana cherry".
@pytest.mark.parametrize(
    "action,text",
    [
        ("truncated-tail", "apple banana"),
        ("truncated-tail-log", "apple banana"),
        ("truncated-head", " banana cherry"),
        ("truncated-head-log", " banana cherry"),
        ("skipped", None),
        ("skipped-log", None),
    ],
)
def test_black_box_vector(cl100k, action, text):
    fitted = fit_to_context("apple banana cherry", cl100k, 2, action)
    assert fitted.text == text
    assert fitted.token_count == 3
    assert fitted.changed


@pytest.mark.parametrize("action", ["truncated-tail", "truncated-head-log", "skipped", "skipped-log"])
@pytest.mark.parametrize(
    "text,limit", [("apple banana cherry", 3), ("apple banana cherry", 100), ("", 1), ("x", 1)]
)
def test_within_limit_is_unchanged(cl100k, action, text, limit):
    fitted = fit_to_context(text, cl100k, limit, action)
    assert fitted.text == text
    assert not fitted.changed


MULTIBYTE = [
    "中文字符测试，这是一个很长的句子，用来检查截断不会把一个字切开。" * 3,
    "日本語のテキストはトークンの境界が文字の途中にあることがあります。",
    "🙂🙃😀😁😂🤣😊😇🥰😍🤩😘😗☺😚😙🥲😋😛😜🤪😝🤑🤗🤭",
    "👨‍👩‍👧‍👦 family 👩🏽‍💻 coder 🏳️‍🌈 flag",
    "mixed ascii and 한국어 텍스트 and ελληνικά and עברית",
]


@pytest.mark.parametrize("text", MULTIBYTE)
@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 13])
def test_truncation_never_splits_a_character(cl100k, text, limit):
    tail = fit_to_context(text, cl100k, limit, "truncated-tail").text
    head = fit_to_context(text, cl100k, limit, "truncated-head").text
    for kept in (tail, head):
        assert kept is not None
        assert "\ufffd" not in kept
        kept.encode("utf-8")  # no lone surrogates
    assert text.startswith(tail)
    assert text.endswith(head)
    assert len(cl100k.encode(tail)) <= limit + 1
    assert len(cl100k.encode(head)) <= limit + 1


@pytest.mark.parametrize("action", ["truncated-tail-log", "truncated-head-log", "skipped-log"])
def test_log_variants_log_counts_once_but_never_the_text(cl100k, caplog, action):
    secret_text = "confidential payroll numbers for alice and bob " * 4
    count = len(cl100k.encode(secret_text))
    with caplog.at_level(logging.DEBUG, logger="flink_llm_udf"):
        fit_to_context(secret_text, cl100k, 5, action)
    records = [r for r in caplog.records if r.name.startswith("flink_llm_udf")]
    assert len(records) == 1
    message = records[0].getMessage()
    assert str(count) in message and "5" in message
    assert "confidential" not in message and "payroll" not in message
    assert "payroll" not in caplog.text


@pytest.mark.parametrize("action", ["truncated-tail", "truncated-head", "skipped"])
def test_plain_variants_do_not_log(cl100k, caplog, action):
    with caplog.at_level(logging.DEBUG, logger="flink_llm_udf"):
        fit_to_context("apple banana cherry", cl100k, 1, action)
    assert [r for r in caplog.records if r.name.startswith("flink_llm_udf")] == []


def test_log_variant_under_limit_does_not_log(cl100k, caplog):
    with caplog.at_level(logging.DEBUG, logger="flink_llm_udf"):
        fit_to_context("apple", cl100k, 10, "truncated-tail-log")
    assert [r for r in caplog.records if r.name.startswith("flink_llm_udf")] == []


def test_unavailable_encoding_fails_at_engine_open(tmp_path, monkeypatch, fresh_tokenizers):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    provider = OpenAICompatProvider(endpoint="http://127.0.0.1:9/v1", model="gpt-4o", max_context_size=10)
    with pytest.raises(TokenizerUnavailableError) as info:
        LLMEngine(provider, environ={})
    message = str(info.value)
    assert "o200k_base" in message and "gpt-4o" in message
    assert "TIKTOKEN_CACHE_DIR" in message


def test_engine_without_max_context_size_needs_no_tokenizer(tmp_path, monkeypatch, fresh_tokenizers):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    engine = LLMEngine(OpenAICompatProvider(endpoint="http://127.0.0.1:9/v1", model="gpt-4o"), environ={})
    assert engine.encoding is None


def test_engine_with_unknown_model_uses_bundled_cl100k(tmp_path, monkeypatch, fresh_tokenizers):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    provider = OpenAICompatProvider(endpoint="http://127.0.0.1:9/v1", model="llama3", max_context_size=2)
    engine = LLMEngine(provider, environ={})
    assert fit_to_context("apple banana cherry", engine.encoding, 2, "truncated-tail").text == "apple banana"

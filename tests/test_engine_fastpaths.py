"""The engine's fast paths give exactly what the plain code would.

Request bodies come from per-model byte templates (``_BodyTemplates``); they must be the very
bytes ``json.dumps(build_*_body(...), ensure_ascii=False)`` gives, for every provider shape.
"""
from __future__ import annotations

import json

import pytest

from flink_llm_udf import OpenAICompatProvider
from flink_llm_udf.engine import _BodyTemplates
from flink_llm_udf.protocol import build_chat_body, build_embeddings_body, resolve_call

CHAT = [
    {},
    {"system_prompt": ""},
    {"system_prompt": "Be terse.\nNo \"quotes\" — ünïcode ✓", "user_prompt": "Answer in French."},
    {"temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "n": 2, "seed": 7, "stop": 'END,"x,y"',
     "response_format": "json_object"},
    {"content_type": "IMAGE_URL"},
    {"extra_body": '{"user": "u1", "metadata": {"k": [1, 2]}}'},
    {"system_prompt": "\x00flink-llm-row\x00"},  # the marker itself: generic path, same bytes
    {"model": None},
]
TEXTS = ["hello", "", "ünïcode 中文 ✓ \"q\" \\ \n\t", "\x00flink-llm-row\x00", "x" * 3000, "\u2028"]


def _provider(**kwargs):
    kwargs.setdefault("model", "m1")
    return OpenAICompatProvider(endpoint="http://127.0.0.1:9/v1", **kwargs)


@pytest.mark.parametrize("options", CHAT)
@pytest.mark.parametrize("model", [None, "row-model", "m1"])
def test_chat_body_bytes_match_the_generic_encoding(options, model):
    spec = resolve_call(_provider(**options), {})
    templates = _BodyTemplates(spec)
    for text in TEXTS:
        expected = json.dumps(build_chat_body(spec, text, model), ensure_ascii=False).encode()
        assert templates.encode(text, model) == expected


@pytest.mark.parametrize("options", [{}, {"dimension": 8}, {"extra_body": '{"user": "u"}'}])
@pytest.mark.parametrize("value", ["one", ["a", "b\n", "ü"], []])
def test_embedding_body_bytes_match_the_generic_encoding(options, value):
    spec = resolve_call(_provider(task="embeddings", **options), {})
    templates = _BodyTemplates(spec)
    for model in (None, "e2"):
        expected = json.dumps(build_embeddings_body(spec, value, model), ensure_ascii=False).encode()
        assert templates.encode(value, model) == expected


def test_many_per_row_models_fall_back_to_the_generic_path():
    spec = resolve_call(_provider(), {})
    templates = _BodyTemplates(spec)
    for i in range(200):
        model = f"model-{i}"
        expected = json.dumps(build_chat_body(spec, "t", model), ensure_ascii=False).encode()
        assert templates.encode("t", model) == expected
    assert len(templates._templates) == _BodyTemplates._MAX_MODELS

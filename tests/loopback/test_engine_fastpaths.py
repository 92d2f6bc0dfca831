"""The engine's fast paths give exactly what the plain code would.

Request bodies come from per-model byte templates (``BodyTemplates``); they must be the very
bytes ``json.dumps(build_*_body(...), ensure_ascii=False)`` gives, for every provider shape.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from flink_llm_udf import OpenAICompatProvider
from flink_llm_udf._wire import BodyTemplates, build_chat_body, build_embeddings_body, resolve_call

#: Every test here runs once per HTTP client the package ships (tests/loopback/conftest.py).
pytestmark = pytest.mark.usefixtures("each_http_client")

CHAT = [
    {},
    {"system_prompt": ""},
    {"system_prompt": 'Be terse.\nNo "quotes" — ünïcode ✓', "user_prompt": "Answer in French."},
    {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "n": 2,
        "seed": 7,
        "stop": 'END,"x,y"',
        "response_format": "json_object",
    },
    {"content_type": "IMAGE_URL"},
    {"extra_body": '{"user": "u1", "metadata": {"k": [1, 2]}}'},
    {"system_prompt": "\x00flink-llm-row\x00"},  # the marker itself: generic path, same bytes
    {"model": None},
]
TEXTS = ["hello", "", 'ünïcode 中文 ✓ "q" \\ \n\t', "\x00flink-llm-row\x00", "x" * 3000, "\u2028"]


def _provider(**kwargs):
    kwargs.setdefault("model", "m1")
    return OpenAICompatProvider(endpoint="http://127.0.0.1:9/v1", **kwargs)


@pytest.mark.parametrize("options", CHAT)
@pytest.mark.parametrize("model", [None, "row-model", "m1"])
def test_chat_body_bytes_match_the_generic_encoding(options, model):
    spec = resolve_call(_provider(**options), {})
    templates = BodyTemplates(spec)
    for text in TEXTS:
        expected = json.dumps(build_chat_body(spec, text, model), ensure_ascii=False).encode()
        assert templates.encode(text, model) == expected


@pytest.mark.parametrize("options", [{}, {"dimension": 8}, {"extra_body": '{"user": "u"}'}])
@pytest.mark.parametrize("value", ["one", ["a", "b\n", "ü"], []])
def test_embedding_body_bytes_match_the_generic_encoding(options, value):
    spec = resolve_call(_provider(task="embeddings", **options), {})
    templates = BodyTemplates(spec)
    for model in (None, "e2"):
        expected = json.dumps(build_embeddings_body(spec, value, model), ensure_ascii=False).encode()
        assert templates.encode(value, model) == expected


def test_many_per_row_models_fall_back_to_the_generic_path():
    spec = resolve_call(_provider(), {})
    templates = BodyTemplates(spec)
    for i in range(200):
        model = f"model-{i}"
        expected = json.dumps(build_chat_body(spec, "t", model), ensure_ascii=False).encode()
        assert templates.encode("t", model) == expected
    assert len(templates._templates) == BodyTemplates._MAX_MODELS


# --- run_batch's worker pool ---------------------------------------------------------------------


def test_worker_pool_hands_a_backing_off_rows_slot_to_the_next_rows():
    """max_concurrency=1: while the first row waits to retry, the other rows must still run."""
    from flink_llm_udf._engine import EngineSettings, LLMEngine
    from flink_llm_udf.simulator import SimulatorThread, expected_chat_reply

    class OthersDone:
        def __init__(self) -> None:
            self.event, self.ok = asyncio.Event(), 0

        def request_done(self, latency_s: float, ok: bool) -> None:
            pass

        def retry(self) -> None:
            pass

        def row_done(self, result) -> None:
            self.ok += result.ok
            if self.ok >= 3:
                self.event.set()

    inputs = ["[sim:fail=1,status=503] flaky", "a", "b", "c"]
    with SimulatorThread(latency_ms=5) as sim:

        async def main():
            observer = OthersDone()

            async def sleep(seconds: float) -> None:
                await asyncio.wait_for(observer.event.wait(), 10)  # times out if the slot idles

            engine = LLMEngine(
                OpenAICompatProvider(endpoint=sim.base_url, model="m1"),
                EngineSettings(max_concurrency=1),
                observer=observer,
                environ={},
                sleep=sleep,
            )
            try:
                return await engine.run_batch(inputs)
            finally:
                await engine.aclose()

        results = asyncio.run(main())
        stats = sim.stats()
    assert [r.value for r in results] == [
        expected_chat_reply([{"role": "user", "content": t}]) for t in inputs
    ]
    assert results[0].attempts == 2
    assert stats["max_in_flight"] == 1


@pytest.mark.parametrize("rows,concurrency", [(0, 4), (1, 4), (3, 8), (50, 4)])
def test_worker_pool_returns_every_row_in_order(rows: int, concurrency: int):
    from flink_llm_udf import run_batch
    from flink_llm_udf.simulator import SimulatorThread, expected_chat_reply

    inputs = [None if i % 7 == 3 else f"row {i}" for i in range(rows)]
    with SimulatorThread(latency_ms=1) as sim:
        results = run_batch(
            OpenAICompatProvider(endpoint=sim.base_url, model="m1"), inputs, max_concurrency=concurrency
        )
    assert [r.value for r in results] == [
        None if t is None else expected_chat_reply([{"role": "user", "content": t}]) for t in inputs
    ]


# --- the loop thread's event loop -----------------------------------------------------------------


@pytest.mark.parametrize("setting,expected", [(None, "uvloop"), ("auto", "uvloop"), ("asyncio", "asyncio")])
def test_loop_thread_uses_uvloop_unless_asked_not_to(monkeypatch, setting, expected):
    pytest.importorskip("uvloop")
    from flink_llm_udf._batch import EVENT_LOOP_ENV, new_event_loop

    if setting is None:
        monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(EVENT_LOOP_ENV, setting)
    loop = new_event_loop()
    try:
        assert type(loop).__module__.split(".")[0] == expected
    finally:
        loop.close()

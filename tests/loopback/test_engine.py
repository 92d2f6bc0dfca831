"""The engine against the package's simulator on a loopback port: every per-row rule of the spec.

Backoff never sleeps for real: ``LLMEngine`` takes ``sleep`` (recorded here) and ``clock``.
Attempt counts are the server's (``stats()["attempts"]`` per directive text, ``requests_total``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import pytest
from aiohttp import web

from flink_llm_udf import (
    CountingObserver,
    EngineSettings,
    InvalidOptionError,
    LLMEngine,
    OpenAICompatProvider,
    RowFailedError,
    RowResult,
    Usage,
    arun_batch,
    run_batch,
)
from flink_llm_udf._batch import BlockingEngine
from flink_llm_udf._results import FAILED, IGNORED, NULL_INPUT, OK, SKIPPED
from flink_llm_udf.simulator import (
    SimulatorThread,
    count_words,
    expected_chat_reply,
    expected_embedding,
    expected_prompt_tokens,
)

#: Every test here runs once per HTTP client the package ships (tests/loopback/conftest.py).
pytestmark = pytest.mark.usefixtures("each_http_client")

KEY = "sk-proj-0123456789SECRETabcdefghijklmnopqrstuvwxyzWXYZ"
SYSTEM = "You are a helpful assistant."
BOUND_S = 20.0  # no single test may run longer than this


@pytest.fixture
def sim():
    with SimulatorThread(record_requests=True) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def chat(sim, **kwargs) -> OpenAICompatProvider:
    kwargs.setdefault("model", "sim-model")
    return OpenAICompatProvider(endpoint=sim.base_url, **kwargs)


def embed(sim, **kwargs) -> OpenAICompatProvider:
    kwargs.setdefault("model", "sim-embed")
    return OpenAICompatProvider(endpoint=sim.base_url, task="embeddings", **kwargs)


def messages(text: str, system: str = SYSTEM, user_prompt: str | None = None) -> list[dict]:
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": text})
    if user_prompt:
        out.append({"role": "user", "content": user_prompt})
    return out


def answer(text: str, **kwargs) -> str:
    return expected_chat_reply(messages(text), **kwargs)


class Recorder:
    """A fake ``sleep`` that records delays and advances a fake clock (never sleeps for real)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 1000.0

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def run_engine(
    provider,
    inputs,
    *,
    settings=None,
    recorder=None,
    observer=None,
    environ=None,
    models=None,
    raise_on_failover=True,
    fake_clock=False,
):
    """Run one batch on a fresh engine in a fresh loop; returns (results, recorder).

    The recorder's delays are the floors of the retry delays (no jitter); jitter has its own test.
    """
    recorder = recorder or Recorder()

    async def main():
        engine = LLMEngine(
            provider,
            settings,
            observer=observer,
            environ=environ or {},
            sleep=recorder.sleep,
            clock=recorder.clock if fake_clock else _clock_that_follows(recorder),
            uniform=lambda: 0.0,
        )
        try:
            return await asyncio.wait_for(
                engine.run_batch(inputs, models, raise_on_failover=raise_on_failover), BOUND_S
            )
        finally:
            await engine.aclose()

    return asyncio.run(main()), recorder


def attempts_seen(sim, text: str) -> int:
    return sim.stats()["attempts"].get(text, 0)


def recorded(sim) -> list[dict]:
    return sim.stats(include_requests=True)["requests"]


# --- happy path ---------------------------------------------------------------------------------


def test_chat_rows_answer_in_order_with_usage(sim):
    inputs = ["hello", "two words", "ünïcode 中文 ✓", "x" * 500]
    results, recorder = run_engine(chat(sim), inputs)
    assert [r.value for r in results] == [answer(t) for t in inputs]
    for text, result in zip(inputs, results, strict=True):
        assert result.outcome == OK and result.ok
        assert result.status == 200 and result.attempts == 1 and result.error is None
        prompt = expected_prompt_tokens(messages(text))
        completion = count_words(answer(text))
        assert result.usage == Usage(prompt, completion, prompt + completion)
    assert sim.stats()["requests_total"] == len(inputs)
    assert recorder.delays == []


def test_request_body_reaches_the_server(sim):
    provider = chat(
        sim,
        system_prompt="Be terse.",
        user_prompt="Answer in French.",
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        presence_penalty=0.5,
        seed=7,
        stop='END,"x,y"',
        response_format="text",
        extra_body='{"user": "u-1", "metadata": {"k": "v"}}',
    )
    results, _ = run_engine(provider, ["question"])
    body = recorded(sim)[0]["body"]
    assert body == {
        "model": "sim-model",
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "presence_penalty": 0.5,
        "seed": 7,
        "stop": ["END", "x,y"],
        "response_format": {"type": "text"},
        "user": "u-1",
        "metadata": {"k": "v"},
        "messages": messages("question", "Be terse.", "Answer in French."),
    }
    assert results[0].value == expected_chat_reply(body["messages"], max_tokens=50, stop=["END", "x,y"])


def test_stop_and_max_tokens_shape_the_answer(sim):
    results, _ = run_engine(chat(sim, stop="cut,zzz"), ["keep this cut that"])
    assert results[0].value == "ANSWER[keep this "
    results, _ = run_engine(chat(sim, max_tokens=1), ["one two three"])
    assert results[0].value == "ANSWER[one"


def test_system_prompt_disabled(sim):
    run_engine(chat(sim, system_prompt=""), ["q"])
    assert recorded(sim)[0]["body"]["messages"] == [{"role": "user", "content": "q"}]


def test_image_url_content_part(sim):
    url = "https://example.com/cat.png"
    results, _ = run_engine(chat(sim, content_type="IMAGE_URL", user_prompt="Describe it."), [url])
    sent = recorded(sim)[0]["body"]["messages"]
    assert sent[1] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    assert sent[2] == {"role": "user", "content": "Describe it."}
    assert results[0].value == f"ANSWER[{url}] PROMPT[Describe it.]"


def test_extra_headers_and_list_header_repeated(sim):
    provider = chat(sim, extra_header='{"X-Tenant": "t1", "X-Multi": ["a", "b", 3], "X-Flag": true}')
    run_engine(provider, ["q"])
    headers = recorded(sim)[0]["headers"]
    assert headers["x-tenant"] == ["t1"]
    assert headers["x-multi"] == ["a", "b", "3"]
    assert headers["x-flag"] == ["true"]
    assert "authorization" not in headers  # no key configured: no Authorization header


def test_per_row_model_override(sim):
    results, _ = run_engine(chat(sim), ["a", "b", "c"], models=["m1", None, "m3"])
    by_input = {r["body"]["messages"][1]["content"]: r["body"]["model"] for r in recorded(sim)}
    assert by_input == {"a": "m1", "b": "sim-model", "c": "m3"}
    assert all(r.ok for r in results)


def test_models_length_mismatch_is_an_error(sim):
    with pytest.raises(ValueError, match="models"):
        run_engine(chat(sim), ["a", "b"], models=["m1"])


def test_n_choices(sim):
    results, _ = run_engine(chat(sim, n=3), ["pick"])
    expected = tuple(answer("pick", choice_index=i) for i in range(3))
    assert results[0].choices == expected
    assert results[0].value == expected[0]
    assert recorded(sim)[0]["body"]["n"] == 3


def test_json_object_response_format(sim):
    results, _ = run_engine(chat(sim, response_format="JSON_OBJECT"), ["data"])
    assert recorded(sim)[0]["body"]["response_format"] == {"type": "json_object"}
    assert results[0].value == answer("data", response_format={"type": "json_object"})


# --- NULL inputs and context size ------------------------------------------------------------------


def test_null_rows_yield_none_and_send_nothing(sim):
    results, _ = run_engine(chat(sim), [None, "a", None, None])
    assert [r.value for r in results] == [None, answer("a"), None, None]
    assert [r.outcome for r in results] == [NULL_INPUT, OK, NULL_INPUT, NULL_INPUT]
    assert all(r.attempts == 0 for r in results if r.outcome == NULL_INPUT)
    assert sim.stats()["requests_total"] == 1


def test_all_null_batch_sends_nothing(sim):
    results, _ = run_engine(embed(sim), [None, None])
    assert [r.outcome for r in results] == [NULL_INPUT, NULL_INPUT]
    assert sim.stats()["requests_total"] == 0


def test_empty_batch(sim):
    results, _ = run_engine(chat(sim), [])
    assert results == []


@pytest.mark.parametrize(
    "action,sent",
    [
        ("truncated-tail", "apple banana"),
        ("truncated-head", " banana cherry"),
        ("truncated-tail-log", "apple banana"),
    ],
)
def test_context_truncation_reaches_the_server(sim, action, sent):
    provider = chat(sim, max_context_size=2, context_overflow_action=action)
    results, _ = run_engine(provider, ["apple banana cherry", "ok"])
    assert results[0].value == answer(sent)
    assert results[1].value == answer("ok")


@pytest.mark.parametrize("action", ["skipped", "skipped-log"])
def test_context_skip_sends_nothing(sim, action):
    observer = CountingObserver()
    provider = chat(sim, max_context_size=2, context_overflow_action=action)
    results, _ = run_engine(provider, ["apple banana cherry", "ok"], observer=observer)
    assert results[0] == RowResult(None, SKIPPED)
    assert results[1].value == answer("ok")
    assert sim.stats()["requests_total"] == 1
    assert observer.counts["rowsSkipped"] == 1


# --- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_status_is_retried_until_success(sim, status):
    text = f"[sim:fail=2,status={status}] row"
    results, recorder = run_engine(chat(sim, retry_num=5), [text])
    assert results[0].value == answer(text)
    assert results[0].attempts == 3 == attempts_seen(sim, text)
    assert recorder.delays == [1.0, 1.0]


@pytest.mark.parametrize("retry_num", [0, 1, 3, 7])
def test_total_attempts_is_retry_num_plus_one(sim, retry_num):
    text = "[sim:status=503] always failing"
    results, recorder = run_engine(chat(sim, retry_num=retry_num, retry_fallback_strategy="IGNORE"), [text])
    assert results[0].outcome == IGNORED
    assert results[0].attempts == retry_num + 1 == attempts_seen(sim, text)
    assert len(recorder.delays) == retry_num


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_non_retryable_status_goes_straight_to_fallback(sim, status):
    text = f"[sim:status={status}] row"
    results, recorder = run_engine(chat(sim, retry_fallback_strategy="IGNORE"), [text])
    assert results[0].outcome == IGNORED
    assert results[0].attempts == 1 == attempts_seen(sim, text)
    assert results[0].status == status
    assert f"HTTP {status}" in results[0].error
    assert recorder.delays == []


def test_non_retryable_status_under_failover_raises_after_one_attempt(sim):
    text = "[sim:status=404] row"
    with pytest.raises(RowFailedError) as info:
        run_engine(chat(sim), ["fine", text])
    assert info.value.row_index == 1 and info.value.attempts == 1 and info.value.status == 404
    assert attempts_seen(sim, text) == 1


@pytest.mark.parametrize(
    "backoff,base,retry_num,delays",
    [
        ("FIXED", "1s", 4, [1.0, 1.0, 1.0, 1.0]),
        ("FIXED", "250 ms", 3, [0.25, 0.25, 0.25]),
        ("FIXED", "2 min", 2, [120.0, 120.0]),
        ("EXPONENTIAL", "1s", 8, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),
        ("EXPONENTIAL", "500 ms", 3, [0.5, 1.0, 2.0]),
        ("EXPONENTIAL", "1 min", 2, [60.0, 60.0]),
    ],
)
def test_backoff_delays(sim, backoff, base, retry_num, delays):
    provider = chat(
        sim,
        retry_num=retry_num,
        retry_backoff_strategy=backoff,
        retry_backoff_base_interval=base,
        retry_fallback_strategy="IGNORE",
    )
    settings = EngineSettings(row_deadline_s=None)
    results, recorder = run_engine(provider, ["[sim:status=500] r"], settings=settings)
    assert recorder.delays == pytest.approx(delays)
    assert results[0].attempts == retry_num + 1


@pytest.mark.parametrize(
    "directive,base,delays",
    [
        ("retry_after=2", "1 ms", [2.0]),  # longer than backoff: honoured
        ("retry_after=0", "1s", [1.0]),  # shorter: the backoff stands
        ("retry_after=0.5", "1s", [1.0]),
        ("retry_after_ms=1500", "1s", [1.5]),
        ("retry_after_ms=10", "1s", [1.0]),
        ("retry_after=3,retry_after_ms=250", "1 ms", [0.25]),
    ],
)
def test_retry_after_is_honoured_when_longer(sim, directive, base, delays):
    text = f"[sim:fail=1,status=503,{directive}] r"
    results, recorder = run_engine(chat(sim, retry_backoff_base_interval=base), [text])
    assert results[0].ok and results[0].attempts == 2
    assert recorder.delays == pytest.approx(delays)


def test_retry_after_on_429(sim):
    text = "[sim:fail=2,status=429,retry_after=7] r"
    results, recorder = run_engine(chat(sim, retry_backoff_base_interval="100 ms"), [text])
    assert results[0].ok and results[0].attempts == 3
    assert recorder.delays == [7.0, 7.0]


class SlowRecorder(Recorder):
    """Records the asked-for delay but waits only long enough for the other row to finish."""

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds
        await asyncio.sleep(0.15)


def test_capacity_429_from_server_is_retried_with_its_retry_after():
    with SimulatorThread(max_in_flight=1, latency_ms=50, retry_after_s=3) as sim:
        results, recorder = run_engine(
            chat(sim), ["a", "b"], settings=EngineSettings(max_concurrency=2), recorder=SlowRecorder()
        )
    assert [r.value for r in results] == [answer("a"), answer("b")]
    assert sorted(r.attempts for r in results) == [1, 2]
    assert recorder.delays == [3.0]


def test_should_retry_false_stops_retries(sim):
    text = "[sim:status=503,should_retry=false] r"
    results, recorder = run_engine(chat(sim, retry_fallback_strategy="IGNORE"), [text])
    assert results[0].outcome == IGNORED and results[0].attempts == 1 == attempts_seen(sim, text)
    assert recorder.delays == []


def test_should_retry_true_retries_a_4xx(sim):
    text = "[sim:fail=2,status=400,should_retry=true] r"
    results, _ = run_engine(chat(sim), [text])
    assert results[0].ok and results[0].attempts == 3 == attempts_seen(sim, text)


@pytest.mark.parametrize("variant", ["malformed", "malformed=shape"])
def test_malformed_2xx_is_retried(sim, variant):
    text = f"[sim:fail=2,{variant}] r"
    results, _ = run_engine(chat(sim), [text])
    assert results[0].ok and results[0].value == answer(text)
    assert results[0].attempts == 3 == attempts_seen(sim, text)


def test_malformed_2xx_exhausting_retries(sim):
    text = "[sim:malformed] r"
    results, _ = run_engine(chat(sim, retry_num=2, retry_fallback_strategy="IGNORE"), [text])
    assert results[0].outcome == IGNORED and results[0].attempts == 3
    assert "malformed" in results[0].error


def test_malformed_embeddings_are_retried(sim):
    text = "[sim:fail=1,malformed=shape] e"
    results, _ = run_engine(embed(sim), [text])
    assert results[0].value == pytest.approx(expected_embedding(text))
    assert results[0].attempts == 2


def test_connection_reset_is_retried(sim):
    text = "[sim:fail=2,reset] r"
    results, recorder = run_engine(chat(sim), [text])
    assert results[0].ok and results[0].attempts == 3 == attempts_seen(sim, text)
    assert recorder.delays == [1.0, 1.0]


def test_connection_reset_exhausting_retries(sim):
    results, _ = run_engine(chat(sim, retry_num=1, retry_fallback_strategy="IGNORE"), ["[sim:reset] r"])
    assert results[0].outcome == IGNORED and results[0].attempts == 2
    assert "connection" in results[0].error.lower()
    assert results[0].status is None


def test_connection_refused_is_retried():
    with SimulatorThread() as gone:
        endpoint = gone.base_url
    provider = OpenAICompatProvider(
        endpoint=endpoint, model="m", retry_num=2, retry_fallback_strategy="IGNORE"
    )
    results, recorder = run_engine(provider, ["r"])
    assert results[0].outcome == IGNORED and results[0].attempts == 3
    assert "connection" in results[0].error.lower()
    assert recorder.delays == [1.0, 1.0]


def test_request_timeout_is_retried(sim):
    text = "[sim:fail=1,hang=10] r"
    started = time.monotonic()
    results, recorder = run_engine(chat(sim), [text], settings=EngineSettings(request_timeout_s=0.3))
    assert time.monotonic() - started < 5
    assert results[0].ok and results[0].attempts == 2 == attempts_seen(sim, text)
    assert recorder.delays == [1.0]


def test_request_timeout_exhausting_retries(sim):
    started = time.monotonic()
    results, _ = run_engine(
        chat(sim, retry_num=1, retry_fallback_strategy="IGNORE"),
        ["[sim:hang=10] r"],
        settings=EngineSettings(request_timeout_s=0.2),
    )
    assert time.monotonic() - started < 5
    assert results[0].outcome == IGNORED and results[0].attempts == 2
    assert "0.2 s" in results[0].error


def test_row_deadline_bounds_retries_in_fake_time(sim):
    text = "[sim:status=503] r"
    recorder = Recorder()
    results, _ = run_engine(
        chat(sim, retry_fallback_strategy="IGNORE"),
        [text],
        recorder=recorder,
        settings=EngineSettings(row_deadline_s=5.0),
        fake_clock=True,
    )
    # attempts at t=0,1,2,3,4; a retry at t=5 would reach the deadline
    assert results[0].attempts == 5 == attempts_seen(sim, text)
    assert recorder.delays == [1.0] * 4
    assert "deadline" in results[0].error


def test_row_deadline_bounds_a_hanging_request_in_real_time(sim):
    started = time.monotonic()
    results, _ = run_engine(
        chat(sim, retry_fallback_strategy="IGNORE"),
        ["[sim:hang=10] r"],
        settings=EngineSettings(request_timeout_s=30, row_deadline_s=0.5),
    )
    assert time.monotonic() - started < 3
    assert results[0].outcome == IGNORED and results[0].attempts == 1


def test_retry_after_beyond_deadline_gives_up(sim):
    text = "[sim:status=503,retry_after=100] r"
    results, recorder = run_engine(
        chat(sim, retry_fallback_strategy="IGNORE"),
        [text],
        settings=EngineSettings(row_deadline_s=10),
        fake_clock=True,
    )
    assert results[0].attempts == 1 and recorder.delays == []
    assert "deadline" in results[0].error


# --- strategies and fallbacks -------------------------------------------------------------------


def test_retry_then_failover_raises_naming_row_and_cause(sim):
    bad = "[sim:status=503] bad row"
    with pytest.raises(RowFailedError) as info:
        run_engine(chat(sim, retry_num=2), ["good", "fine", bad, "also fine"])
    error = info.value
    assert error.row_index == 2 and error.attempts == 3 and error.status == 503
    assert "row 2" in str(error) and "HTTP 503" in str(error) and "HTTP 503" in error.cause
    assert attempts_seen(sim, bad) == 3


def test_retry_then_failover_without_raise_returns_failed(sim):
    results, _ = run_engine(chat(sim, retry_num=1), ["ok", "[sim:status=500] bad"], raise_on_failover=False)
    assert results[0].ok
    assert results[1].outcome == FAILED and results[1].value is None and results[1].attempts == 2
    assert "HTTP 500" in results[1].error


def test_retry_then_ignore_yields_none_with_error_and_attempts(sim):
    bad = "[sim:status=502] bad row"
    results, _ = run_engine(chat(sim, retry_num=3, retry_fallback_strategy="IGNORE"), ["a", bad, "b"])
    assert [r.value for r in results] == [answer("a"), None, answer("b")]
    assert results[1].outcome == IGNORED and results[1].attempts == 4 and results[1].status == 502
    assert "HTTP 502" in results[1].error and sim.base_url in results[1].error


def test_ignore_strategy_makes_one_attempt(sim):
    text = "[sim:fail=1,status=503] would succeed on retry"
    results, recorder = run_engine(
        chat(sim, error_handling_strategy="IGNORE", retry_num=5, retry_fallback_strategy="FAILOVER"),
        [text, "ok"],
    )
    assert results[0].outcome == IGNORED and results[0].value is None and results[0].attempts == 1
    assert "HTTP 503" in results[0].error
    assert results[1].value == answer("ok")
    assert attempts_seen(sim, text) == 1 and recorder.delays == []


def test_failover_strategy_makes_one_attempt_and_raises(sim):
    text = "[sim:fail=1,status=503] would succeed on retry"
    with pytest.raises(RowFailedError) as info:
        run_engine(
            chat(sim, error_handling_strategy="FAILOVER", retry_num=5, retry_fallback_strategy="IGNORE"),
            ["ok", text],
        )
    assert info.value.row_index == 1 and info.value.attempts == 1
    assert attempts_seen(sim, text) == 1


def test_failover_cancels_the_rest_of_the_batch():
    with SimulatorThread(latency_ms=0) as sim:
        slow = [f"[sim:slow=3000] slow {i}" for i in range(4)]
        started = time.monotonic()
        with pytest.raises(RowFailedError) as info:
            run_engine(chat(sim, error_handling_strategy="FAILOVER"), [*slow, "[sim:status=400] bad"])
        assert time.monotonic() - started < 2.5
    assert info.value.row_index == 4


def test_row_failed_error_pickles():
    import pickle

    error = RowFailedError(3, "HTTP 503: x", attempts=4, status=503)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.row_index, clone.cause, clone.attempts, clone.status) == (3, "HTTP 503: x", 4, 503)
    assert str(clone) == str(error)


# --- embeddings ---------------------------------------------------------------------------------


def test_embeddings_single_rows(sim):
    inputs = ["alpha", None, "beta gamma"]
    results, _ = run_engine(embed(sim), inputs)
    assert results[0].value == pytest.approx(expected_embedding("alpha"))
    assert results[1].value is None and results[1].outcome == NULL_INPUT
    assert results[2].value == pytest.approx(expected_embedding("beta gamma"))
    assert all(isinstance(x, float) for x in results[0].value)
    assert results[2].usage == Usage(2, 0, 2)
    bodies = sorted((r["body"] for r in recorded(sim)), key=lambda b: b["input"])
    assert bodies == [
        {"model": "sim-embed", "input": "alpha", "encoding_format": "float"},
        {"model": "sim-embed", "input": "beta gamma", "encoding_format": "float"},
    ]


def test_embeddings_dimension(sim):
    results, _ = run_engine(embed(sim, dimension=8), ["x"])
    assert results[0].value == pytest.approx(expected_embedding("x", 8))
    assert recorded(sim)[0]["body"]["dimensions"] == 8


def test_embeddings_full_endpoint_infers_task(sim):
    provider = OpenAICompatProvider(endpoint=sim.base_url + "/embeddings", model="e")
    results, _ = run_engine(provider, ["x"])
    assert results[0].value == pytest.approx(expected_embedding("x"))


def test_grouped_embeddings_keep_order_and_values(sim):
    inputs = [f"text number {i}" for i in range(10)]
    inputs.insert(3, None)
    observer = CountingObserver()
    results, _ = run_engine(
        embed(sim), inputs, observer=observer, settings=EngineSettings(embedding_rows_per_request=4)
    )
    for text, result in zip(inputs, results, strict=True):
        if text is None:
            assert result.outcome == NULL_INPUT
        else:
            assert result.ok and result.value == pytest.approx(expected_embedding(text))
    sent = [r["body"]["input"] for r in recorded(sim)]
    assert sorted(len(batch) for batch in sent) == [2, 4, 4]
    assert sim.stats()["requests_total"] == 3
    assert observer.counts["promptTokens"] == 3 * 10
    assert observer.counts["rowsSucceeded"] == 10 and observer.counts["rowsNull"] == 1


def test_grouped_embeddings_skip_over_long_rows(sim):
    inputs = ["apple banana cherry", "short", None, "tiny"]
    provider = embed(sim, max_context_size=2, context_overflow_action="skipped")
    results, _ = run_engine(provider, inputs, settings=EngineSettings(embedding_rows_per_request=4))
    assert [r.outcome for r in results] == [SKIPPED, OK, NULL_INPUT, OK]
    assert [r["body"]["input"] for r in recorded(sim)] == [["short", "tiny"]]


def test_context_log_variant_logs_counts_not_text(sim, caplog):
    provider = chat(sim, max_context_size=2, context_overflow_action="skipped-log")
    with caplog.at_level(logging.DEBUG, logger="flink_llm_udf"):
        results, _ = run_engine(provider, ["confidential salary figures"])
    assert results[0].outcome == SKIPPED
    assert "max-context-size 2" in caplog.text
    assert "confidential" not in caplog.text and "salary" not in caplog.text


def test_grouped_embeddings_by_model(sim):
    inputs = ["a", "b", "c", "d"]
    results, _ = run_engine(
        embed(sim),
        inputs,
        models=["m1", "m2", "m1", "m2"],
        settings=EngineSettings(embedding_rows_per_request=8),
    )
    assert [r.value for r in results] == [pytest.approx(expected_embedding(t)) for t in inputs]
    groups = {r["body"]["model"]: r["body"]["input"] for r in recorded(sim)}
    assert groups == {"m1": ["a", "c"], "m2": ["b", "d"]}


def test_grouped_embeddings_fall_back_to_single_rows(sim):
    bad = "[sim:status=422] bad"
    inputs = ["r0", "r1", bad, "r3", "r4"]
    results, _ = run_engine(
        embed(sim, retry_fallback_strategy="IGNORE"),
        inputs,
        settings=EngineSettings(embedding_rows_per_request=5),
    )
    assert [r.outcome for r in results] == [OK, OK, IGNORED, OK, OK]
    for text, result in zip(inputs, results, strict=True):
        if text != bad:
            assert result.value == pytest.approx(expected_embedding(text))
    assert "HTTP 422" in results[2].error
    assert sim.stats()["requests_total"] == 1 + 5


def test_grouped_embeddings_retryable_group_failure_is_retried_as_a_group(sim):
    flaky = "[sim:fail=1,status=503] flaky"
    inputs = ["r0", flaky, "r2"]
    results, recorder = run_engine(embed(sim), inputs, settings=EngineSettings(embedding_rows_per_request=3))
    assert [r.value for r in results] == [pytest.approx(expected_embedding(t)) for t in inputs]
    assert sim.stats()["requests_total"] == 2 and recorder.delays == [1.0]


def test_grouped_embeddings_failover_names_the_row(sim):
    inputs = ["r0", "r1", "r2", "[sim:status=404] bad"]
    with pytest.raises(RowFailedError) as info:
        run_engine(embed(sim), inputs, settings=EngineSettings(embedding_rows_per_request=2))
    assert info.value.row_index == 3 and info.value.status == 404


# --- concurrency and order ----------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 8])
def test_concurrency_is_bounded_and_reached(concurrency):
    rows = 200 if concurrency > 1 else 20
    with SimulatorThread(latency_ms=20) as sim:
        results = run_batch(chat(sim), [f"row {i}" for i in range(rows)], max_concurrency=concurrency)
        stats = sim.stats()
    assert all(r.ok for r in results)
    assert stats["requests_total"] == rows
    assert stats["max_in_flight"] == concurrency


def test_backing_off_row_does_not_hold_a_slot():
    gate = asyncio.Event

    with SimulatorThread(latency_ms=20) as sim:

        async def main():
            release = gate()

            async def sleep(seconds):
                await release.wait()  # the retrying row waits until the other rows finished

            engine = LLMEngine(chat(sim), EngineSettings(max_concurrency=1), environ={}, sleep=sleep)
            try:
                flaky = asyncio.ensure_future(engine.call_row("[sim:fail=1,status=503] f"))
                await asyncio.sleep(0.1)  # the flaky row fails and starts backing off
                others = await asyncio.wait_for(
                    asyncio.gather(*(engine.call_row(f"other {i}") for i in range(3))), BOUND_S
                )
                release.set()
                return others, await asyncio.wait_for(flaky, BOUND_S)
            finally:
                await engine.aclose()

        others, flaky = asyncio.run(main())
    assert all(r.ok for r in others) and flaky.ok and flaky.attempts == 2


def test_order_is_preserved_with_varied_latencies(sim):
    inputs = [f"[sim:slow={(37 * i) % 11 * 10}] row {i}" for i in range(40)]
    results = run_batch(chat(sim), inputs, max_concurrency=16)
    assert [r.value for r in results] == [answer(t) for t in inputs]


# --- secrets ------------------------------------------------------------------------------------


def _assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        _assert_no_piece_of(KEY, text)  # not even a cut piece: "sk-…WXYZ" at most


def _assert_no_piece_of(secret: str, text: str, piece: int = 8) -> None:
    leaked = [secret[i : i + piece] for i in range(len(secret) - piece + 1) if secret[i : i + piece] in text]
    assert not leaked, f"pieces of a secret in {text!r}: {leaked}"


def test_wrong_key_401_is_not_retried_and_does_not_leak(caplog):
    with SimulatorThread(api_key="sk-the-right-key-0000000000") as sim:
        provider = chat(sim, api_key=KEY)
        with caplog.at_level(logging.DEBUG, logger="flink_llm_udf"):
            results, _ = run_engine(provider.replace(retry_fallback_strategy="IGNORE"), ["x"])
            with pytest.raises(RowFailedError) as info:
                run_engine(provider, ["x"])
    assert results[0].status == 401 and results[0].attempts == 1
    error = info.value
    _assert_no_key(results[0].error, str(error), repr(error), error.cause, caplog.text)


@pytest.fixture
def echo_server():
    """An endpoint that echoes the Authorization header back in its error (as some servers do)."""

    async def json_echo(request):
        auth = request.headers.get("Authorization", "")
        return web.json_response(
            {"error": {"message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}"}}, status=401
        )

    async def text_echo(request):
        # a long non-JSON body whose echo of the key straddles the error message's length limit
        return web.Response(status=401, text="denied " + "." * 270 + request.headers.get("Authorization", ""))

    async def header_echo_500(request):
        return web.Response(status=500, text=f"upstream said: {request.headers.get('Authorization')}")

    async def cut_echo(request):
        # a server that quotes a cut piece of the key (its first 30 characters after "Bearer ")
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response({"error": {"message": f"key {auth[:30]}... is not valid"}}, status=401)

    async def middle_echo(request):
        auth = request.headers.get("Authorization", "")
        return web.Response(status=401, text=f"bad credential ...{auth[25:60]}...")

    app = web.Application()
    app.router.add_post("/json/chat/completions", json_echo)
    app.router.add_post("/text/chat/completions", text_echo)
    app.router.add_post("/flaky/chat/completions", header_echo_500)
    app.router.add_post("/cut/chat/completions", cut_echo)
    app.router.add_post("/middle/chat/completions", middle_echo)
    return app


@pytest.mark.parametrize("path", ["json", "text", "flaky", "cut", "middle"])
def test_key_never_appears_even_when_the_server_echoes_it(echo_server, path, caplog):
    async def main():
        runner = web.AppRunner(echo_server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        provider = OpenAICompatProvider(endpoint=f"http://127.0.0.1:{port}/{path}", api_key=KEY, retry_num=1)
        recorder = Recorder()
        engine = LLMEngine(provider, environ={}, sleep=recorder.sleep, uniform=lambda: 0.0)
        try:
            ignored = await engine.run_batch(["x"], raise_on_failover=False)
            with pytest.raises(RowFailedError) as info:
                await engine.run_batch(["y"])
            return ignored, info.value, repr(engine)
        finally:
            await engine.aclose()
            await runner.cleanup()

    with caplog.at_level(logging.DEBUG):
        result, error, engine_repr = asyncio.run(asyncio.wait_for(main(), BOUND_S))
    assert result[0].status == 401 if path != "flaky" else result[0].status == 500
    _assert_no_key(result[0].error, str(error), repr(error), error.cause, engine_repr, caplog.text)
    if path in ("json", "text", "flaky"):
        assert "sk-…WXYZ" in result[0].error


def test_url_credentials_go_as_basic_auth_and_never_show(echo_server, caplog):
    """``http://user:pw@host/v1``: Basic credentials are sent; the password and token never show."""
    password = "pa55-w0rd-that-must-not-leak"

    async def main():
        runner = web.AppRunner(echo_server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        endpoint = f"http://svc-user:{password}@127.0.0.1:{port}/flaky"
        provider = OpenAICompatProvider(endpoint=endpoint, retry_num=0, retry_fallback_strategy="IGNORE")
        engine = LLMEngine(provider, environ={})
        try:
            return await engine.run_batch(["x"]), repr(engine), repr(provider)
        finally:
            await engine.aclose()
            await runner.cleanup()

    with caplog.at_level(logging.DEBUG):
        results, engine_repr, provider_repr = asyncio.run(asyncio.wait_for(main(), BOUND_S))
    token = base64.b64encode(f"svc-user:{password}".encode()).decode()
    assert results[0].status == 500 and "upstream said: Basic ***" in results[0].error
    for text in (results[0].error, engine_repr, provider_repr, caplog.text):
        assert password not in text and token not in text
        _assert_no_piece_of(password, text)
    assert "svc-user:***@" in provider_repr


def test_api_key_from_key_file_reaches_the_server(tmp_path):
    key_file = tmp_path / "openai.key"
    key_file.write_text(KEY + "\n")
    with SimulatorThread(api_key=KEY, record_requests=True) as sim:
        provider = chat(sim, retry_fallback_strategy="IGNORE")
        results, _ = run_engine(provider, ["x"], environ={"OPENAI_API_KEY_FILE": str(key_file)})
        headers = recorded(sim)[0]["headers"]
        without, _ = run_engine(provider, ["x"], environ={})
    assert results[0].ok and results[0].value == answer("x")
    assert headers["authorization"] == ["***"]  # the simulator masks what it saw: one header sent
    assert without[0].status == 401 and without[0].outcome == IGNORED


def test_run_batch_reads_the_key_file_from_the_environment(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    with SimulatorThread(api_key=KEY) as sim:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        monkeypatch.setenv("OPENAI_API_KEY_FILE", str(key_file))
        results = run_batch(OpenAICompatProvider(model="sim-model"), ["from env"])
    assert results[0].value == answer("from env")


# --- entry points -------------------------------------------------------------------------------


def test_run_batch_inside_a_running_event_loop(sim):
    async def notebook_cell():
        asyncio.get_running_loop()  # we are inside a loop, like Jupyter
        return run_batch(chat(sim), ["a", None, "b"])

    results = asyncio.run(asyncio.wait_for(notebook_cell(), BOUND_S))
    assert [r.value for r in results] == [answer("a"), None, answer("b")]


def test_arun_batch(sim):
    observer = CountingObserver()
    results = asyncio.run(
        asyncio.wait_for(arun_batch(chat(sim), ["a", "b"], max_concurrency=2, observer=observer), BOUND_S)
    )
    assert [r.value for r in results] == [answer("a"), answer("b")]
    assert observer.counts["rowsSucceeded"] == 2


def test_run_batch_failover_raises(sim):
    with pytest.raises(RowFailedError) as info:
        run_batch(chat(sim, retry_num=0), ["a", "[sim:status=500] b"])
    assert info.value.row_index == 1


def test_blocking_engine_serves_several_batches(sim):
    with BlockingEngine(chat(sim), EngineSettings(max_concurrency=4)) as engine:
        first = engine.run_batch(["a", "b"], timeout=BOUND_S)
        second = engine.run_batch(["c"], timeout=BOUND_S)
    assert [r.value for r in first + second] == [answer("a"), answer("b"), answer("c")]


def test_call_row(sim):
    async def main():
        engine = LLMEngine(chat(sim), environ={})
        try:
            return await engine.call_row("single"), await engine.call_row(None)
        finally:
            await engine.aclose()

    one, null = asyncio.run(asyncio.wait_for(main(), BOUND_S))
    assert one.value == answer("single") and null.outcome == NULL_INPUT


def test_endpoint_from_environment(sim):
    provider = OpenAICompatProvider(model="sim-model")
    results, _ = run_engine(provider, ["x"], environ={"OPENAI_BASE_URL": sim.base_url})
    assert results[0].value == answer("x")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrency": 0},
        {"max_concurrency": True},
        {"max_concurrency": 1.5},
        {"embedding_rows_per_request": 0},
        {"request_timeout_s": 0},
        {"request_timeout_s": -1},
        {"request_timeout_s": None},
        {"row_deadline_s": 0},
        {"row_deadline_s": "5"},
    ],
)
def test_engine_settings_validation(kwargs):
    with pytest.raises(InvalidOptionError, match=next(iter(kwargs))):
        EngineSettings(**kwargs)


# --- metrics ------------------------------------------------------------------------------------


def test_counting_observer(sim):
    observer = CountingObserver()
    inputs = ["ok one", None, "[sim:fail=2,status=503] flaky", "[sim:status=404] bad", "ok two"]
    results, _ = run_engine(
        chat(sim, retry_num=3, retry_fallback_strategy="IGNORE"), inputs, observer=observer
    )
    counts = observer.counts
    assert counts["requests"] == 1 + 3 + 1 + 1 == sim.stats()["requests_total"]
    assert counts["requestErrors"] == 2 + 1
    assert counts["retries"] == 2
    assert counts["rowsSucceeded"] == 3
    assert counts["rowsIgnored"] == 1 and counts["rowsNull"] == 1
    assert counts["rowsFailed"] == 0 and counts["rowsSkipped"] == 0
    assert counts["promptTokens"] == sum(r.usage.prompt_tokens for r in results if r.usage)
    assert counts["completionTokens"] == sum(r.usage.completion_tokens for r in results if r.usage)
    assert counts["promptTokens"] > 0 and counts["completionTokens"] > 0
    assert len(observer.latencies_s) == 6
    assert observer.latency_percentile_ms(0.5) is not None


def test_counting_observer_counts_failed_rows(sim):
    observer = CountingObserver()
    with pytest.raises(RowFailedError):
        run_engine(chat(sim, retry_num=0), ["[sim:status=400] bad"], observer=observer)
    assert observer.counts["rowsFailed"] == 1 and observer.counts["requestErrors"] == 1


# --- batch deadline ------------------------------------------------------------------------------


@pytest.mark.parametrize("fallback", ["IGNORE", "FAILOVER"])
def test_batch_deadline_ends_unfinished_rows_like_exhausted_rows(fallback):
    """Rows still running at the batch deadline end as failures; finished rows keep their answers."""
    from flink_llm_udf import RowFailedError, run_batch
    from flink_llm_udf.simulator import SimulatorThread

    with SimulatorThread(latency_ms=1) as sim:
        provider = OpenAICompatProvider(
            endpoint=sim.base_url,
            model="m",
            system_prompt="",
            error_handling_strategy="RETRY",
            retry_num=0,
            retry_fallback_strategy=fallback,
        )
        inputs = ["fast", "[sim:slow=3000] slow", "also fast"]
        if fallback == "FAILOVER":
            with pytest.raises(RowFailedError, match=r"row 1 .*batch deadline of 0\.5 s"):
                run_batch(provider, inputs, batch_deadline=0.5)
            return
        results = run_batch(provider, inputs, batch_deadline=0.5)
    assert [r.value for r in results] == ["ANSWER[fast]", None, "ANSWER[also fast]"]
    assert results[1].outcome == "ignored" and "batch deadline of 0.5 s" in results[1].error


def test_batch_deadline_comes_from_job_parameters():
    from flink_llm_udf.job_parameters import settings_from_lookup

    assert settings_from_lookup({"ai.batch-deadline": "2 min"}.get).batch_deadline_s == 120.0
    assert settings_from_lookup({"ai.batch-deadline": "none"}.get).batch_deadline_s is None


def test_rows_hit_by_one_429_come_back_spread_out_never_sooner_than_asked(sim):
    """Jitter: each row waits its own delay in [Retry-After, 1.25 x Retry-After]."""
    recorder = Recorder()
    inputs = [f"[sim:fail=1,status=429,retry_after=1] jitter {i}" for i in range(40)]

    async def main():
        engine = LLMEngine(
            chat(sim),
            EngineSettings(max_concurrency=40),
            environ={},
            sleep=recorder.sleep,
            clock=_clock_that_follows(recorder),
        )
        try:
            return await asyncio.wait_for(engine.run_batch(inputs), BOUND_S)
        finally:
            await engine.aclose()

    results = asyncio.run(main())
    assert all(r.outcome == OK and r.attempts == 2 for r in results)
    assert len(recorder.delays) == 40
    assert all(1.0 <= d <= 1.25 for d in recorder.delays)
    assert len({round(d, 6) for d in recorder.delays}) > 30


def _clock_that_follows(recorder: Recorder):
    """Real time plus what the recorder's fake sleeps skipped: waits the engine did not really
    sleep (the recorder records them instead) still count as passed, e.g. for the quota gate."""
    start = recorder.now

    def clock() -> float:
        return time.monotonic() + (recorder.now - start)

    return clock

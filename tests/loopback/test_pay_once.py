"""Paying once, at the engine level: dedup, the result cache, cost, budgets and packed embeddings.

Every count is the simulator's (``requests_total``, recorded bodies), never the engine's own.
Tokens billed are what the simulator's replies said: recomputed from each recorded request that
was answered 200 with the simulator's public reply functions (its usage is a word count).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from helpers.redis_server import RedisServer

from flink_llm_udf import (
    BlockingEngine,
    CountingObserver,
    EngineSettings,
    LLMEngine,
    OpenAICompatProvider,
    RowFailedError,
    RowResult,
    run_batch,
)
from flink_llm_udf._batch import LoopThread
from flink_llm_udf._call_options import parse_call_options
from flink_llm_udf._result_cache import KEY_PREFIX
from flink_llm_udf._results import IGNORED, OK
from flink_llm_udf.simulator import (
    SimulatorThread,
    count_words,
    expected_chat_reply,
    expected_embedding,
    expected_prompt_tokens,
)

T = TypeVar("T")
BOUND_S = 15.0  # no scenario may run longer than this
SYSTEM = "You are a helpful assistant."
CACHE_LOGGER = "flink_llm_udf._result_cache"
PASSWORD = "redis-pass-Zq8yW3kT0pSECRET"


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(record_requests=True) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def run(coroutine: Awaitable[T]) -> T:
    """Run one scenario on a fresh loop, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, BOUND_S)

    return asyncio.run(bounded())


def chat(sim: SimulatorThread, **kwargs: Any) -> OpenAICompatProvider:
    kwargs.setdefault("model", "m")
    return OpenAICompatProvider(endpoint=sim.base_url, **kwargs)


def embed(sim: SimulatorThread, **kwargs: Any) -> OpenAICompatProvider:
    kwargs.setdefault("model", "e")
    return OpenAICompatProvider(endpoint=sim.base_url + "/embeddings", **kwargs)


def answer(text: str, max_tokens: int | None = None) -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return expected_chat_reply(messages, max_tokens=max_tokens)


def requests_at(sim: SimulatorThread) -> int:
    return int(sim.stats()["requests_total"])


def recorded(sim: SimulatorThread) -> list[dict[str, Any]]:
    return list(sim.stats(include_requests=True)["requests"])


def billed(sim: SimulatorThread) -> tuple[int, int]:
    """Prompt and completion tokens of every reply the simulator answered 200 (its usage)."""
    prompt = completion = 0
    for request in recorded(sim):
        if request["status"] != 200:
            continue
        body = request["body"]
        if "messages" in body:
            max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
            prompt += expected_prompt_tokens(body["messages"])
            completion += count_words(expected_chat_reply(body["messages"], max_tokens=max_tokens))
        else:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            prompt += sum(count_words(text) for text in inputs)
    return prompt, completion


def pack_sizes(sim: SimulatorThread) -> list[int]:
    """How many inputs each embeddings request carried, smallest first."""
    sizes = []
    for request in recorded(sim):
        given = request["body"]["input"]
        sizes.append(len(given) if isinstance(given, list) else 1)
    return sorted(sizes)


# --- dedup -----------------------------------------------------------------------------------------
def test_identical_rows_of_a_batch_are_sent_once_and_share_the_answer(sim: SimulatorThread) -> None:
    results = run_batch(chat(sim), ["a", "a", "b", "a", "b"])

    assert requests_at(sim) == 2
    assert [r.value for r in results] == [answer(t) for t in ["a", "a", "b", "a", "b"]]
    assert all(r.ok for r in results)
    assert [r.cached for r in results] == [False, True, False, True, True]
    assert [r.attempts for r in results] == [1, 0, 1, 0, 0]


def test_without_dedup_every_row_is_sent(sim: SimulatorThread) -> None:
    results = run_batch(chat(sim), ["a", "a", "b", "a", "b"], dedup=False)

    assert requests_at(sim) == 5
    assert not any(r.cached for r in results)
    assert [r.value for r in results] == [answer(t) for t in ["a", "a", "b", "a", "b"]]


def test_identical_call_rows_in_flight_together_send_one_request(sim: SimulatorThread) -> None:
    observer = CountingObserver()

    async def scenario() -> list[RowResult]:
        engine = LLMEngine(chat(sim), EngineSettings(), observer=observer)
        try:
            return list(await asyncio.gather(*(engine.call_row("same row") for _ in range(10))))
        finally:
            await engine.aclose()

    results = run(scenario())
    assert requests_at(sim) == 1
    assert {r.value for r in results} == {answer("same row")}
    assert sorted(r.cached for r in results) == [False] + [True] * 9
    assert observer.value("rowsCached") == 9
    assert observer.value("requests") == 1


def test_a_leaders_failure_under_ignore_is_shared_without_more_requests(sim: SimulatorThread) -> None:
    bad = "[sim:status=500] x"
    results = run_batch(chat(sim, error_handling_strategy="IGNORE"), [bad, bad, "fine", bad, bad])

    assert requests_at(sim) == 2  # one for the four identical bad rows, one for "fine"
    failed = [results[i] for i in (0, 1, 3, 4)]
    assert all(r.outcome == IGNORED and r.value is None and r.status == 500 for r in failed)
    assert len({r.error for r in failed}) == 1
    assert results[2].ok and results[2].value == answer("fine")


# --- the memory cache -----------------------------------------------------------------------------
def test_a_memory_cache_answers_the_second_run_of_the_same_engine(sim: SimulatorThread) -> None:
    rows = [f"row {i}" for i in range(6)]
    observer = CountingObserver()
    with BlockingEngine(chat(sim), EngineSettings(cache="memory"), observer=observer) as engine:
        first = engine.run_batch(rows, timeout=BOUND_S)
        sent = requests_at(sim)
        second = engine.run_batch(rows, timeout=BOUND_S)

    assert sent == 6
    assert requests_at(sim) == sent  # nothing more
    assert [r.value for r in second] == [r.value for r in first] == [answer(t) for t in rows]
    assert not any(r.cached for r in first)
    assert all(r.cached and r.ok and r.attempts == 0 for r in second)
    assert (observer.value("cacheHits"), observer.value("cacheMisses")) == (6, 6)
    assert observer.value("rowsCached") == 6


def test_other_options_or_another_model_miss_the_memory_cache(sim: SimulatorThread) -> None:
    rows = ["x", "y", "z"]
    warmer = parse_call_options({"temperature": 0.5})
    with BlockingEngine(chat(sim), EngineSettings(cache="memory")) as engine:
        engine.run_batch(rows, timeout=BOUND_S)
        assert requests_at(sim) == 3

        other_options = engine.run_batch(rows, options=warmer, timeout=BOUND_S)
        assert requests_at(sim) == 6
        assert not any(r.cached for r in other_options)

        other_model = engine.run_batch(rows, models=["m2"] * 3, timeout=BOUND_S)
        assert requests_at(sim) == 9
        assert not any(r.cached for r in other_model)

        again = engine.run_batch(rows, options=warmer, timeout=BOUND_S)  # now each is cached
        assert requests_at(sim) == 9
        assert all(r.cached for r in again)

    bodies = [r["body"] for r in recorded(sim)]
    assert {b["model"] for b in bodies} == {"m", "m2"}
    assert sum(1 for b in bodies if b.get("temperature") == 0.5) == 3


def test_failures_are_not_cached(sim: SimulatorThread) -> None:
    flaky = "[sim:fail=1,status=500] flaky row"  # the first attempt of this text fails, then not
    provider = chat(sim, error_handling_strategy="IGNORE")
    with BlockingEngine(provider, EngineSettings(cache="memory")) as engine:
        first = engine.run_batch([flaky], timeout=BOUND_S)
        second = engine.run_batch([flaky], timeout=BOUND_S)
        third = engine.run_batch([flaky], timeout=BOUND_S)

    assert first[0].outcome == IGNORED and first[0].status == 500
    assert second[0].ok and not second[0].cached  # asked again: the failure was not kept
    assert second[0].value == answer(flaky)
    assert third[0].ok and third[0].cached and third[0].value == second[0].value
    assert requests_at(sim) == 2


# --- the Redis cache ------------------------------------------------------------------------------
def test_a_redis_cache_answers_a_second_engine(sim: SimulatorThread, redis_server: RedisServer) -> None:
    rows = [f"row {i}" for i in range(8)]
    first = run_batch(chat(sim), rows, cache=redis_server.url)
    assert requests_at(sim) == 8
    observer = CountingObserver()
    second = run_batch(chat(sim), rows, cache=redis_server.url, observer=observer)

    assert requests_at(sim) == 8
    assert all(r.cached and r.ok for r in second)
    assert [r.value for r in second] == [r.value for r in first] == [answer(t) for t in rows]
    assert observer.value("cacheHits") == 8 and observer.value("cacheErrors") == 0
    assert len(redis.Redis.from_url(redis_server.url).keys(KEY_PREFIX + "*")) == 8


def test_a_redis_password_from_a_file_is_used_and_never_shown(
    sim: SimulatorThread, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret, wrong = tmp_path / "redis-password", tmp_path / "wrong-password"
    secret.write_text(PASSWORD + "\n")
    wrong.write_text("not-" + PASSWORD)
    rows = ["p", "q", "r"]
    with RedisServer(password=PASSWORD) as server, caplog.at_level(logging.DEBUG):
        # a wrong password: the cache fails, rows still go to the endpoint, nothing shows a password
        observer = CountingObserver()
        refused = run_batch(
            chat(sim), rows, cache=server.url, cache_password_file=str(wrong), observer=observer
        )
        assert all(r.ok and not r.cached for r in refused)
        assert observer.value("cacheErrors") > 0
        assert any(r.name == CACHE_LOGGER and r.levelno == logging.WARNING for r in caplog.records)

        run_batch(chat(sim), rows, cache=server.url, cache_password_file=str(secret))
        assert requests_at(sim) == 6
        settings = EngineSettings(cache=server.url, cache_password_file=str(secret))
        with BlockingEngine(chat(sim), settings) as engine:
            again = engine.run_batch(rows, timeout=BOUND_S)
            shown = repr(engine.engine) + repr(engine.engine.cache)
        assert requests_at(sim) == 6
        assert all(r.cached for r in again)

    everything = caplog.text + shown + "".join(str(r.error) for r in refused + again)
    assert PASSWORD not in everything
    assert server.url in shown  # the cache is named, without its password


def test_a_password_in_the_cache_url_is_used_and_never_logged(
    sim: SimulatorThread, caplog: pytest.LogCaptureFixture
) -> None:
    rows = ["u", "v"]
    with RedisServer(password=PASSWORD) as server, caplog.at_level(logging.DEBUG):
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        first = run_batch(chat(sim), rows, cache=url)
        observer = CountingObserver()
        second = run_batch(chat(sim), rows, cache=url, observer=observer)
    assert requests_at(sim) == 2
    assert all(r.cached for r in second) and observer.value("cacheErrors") == 0
    assert PASSWORD not in caplog.text + "".join(str(r.error) for r in first + second)


def test_a_password_in_the_cache_url_never_shows_in_repr() -> None:
    settings = EngineSettings(cache=f"redis://:{PASSWORD}@127.0.0.1:6379/0")
    engine = LLMEngine(OpenAICompatProvider(endpoint="http://127.0.0.1:9/v1", model="m"), settings)
    assert PASSWORD not in repr(engine.cache)  # the cache's own repr is masked
    assert PASSWORD not in repr(settings) + repr(engine)


def test_closing_from_outside_closes_redis_when_every_row_was_a_cache_hit(
    sim: SimulatorThread, redis_server: RedisServer
) -> None:
    rows = ["a", "b"]
    run_batch(chat(sim), rows, cache=redis_server.url)  # fills the cache
    store = redis.Redis.from_url(redis_server.url)
    assert len(store.client_list()) == 1  # this probe alone
    loop = LoopThread(name="pay-once-test-loop")
    engine = LLMEngine(chat(sim), EngineSettings(cache=redis_server.url))
    try:
        for text in rows:  # as the async row path calls it, from Flink's thread
            result = asyncio.run_coroutine_threadsafe(engine.call_row(text), loop.loop).result(BOUND_S)
            assert result.cached
        assert requests_at(sim) == 2
        assert len(store.client_list()) == 2  # the engine's connection
        engine.close_from_outside()  # what the AsyncFunction's close() does
        deadline = time.monotonic() + 2.0
        while len(store.client_list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(store.client_list()) == 1, "the engine's Redis connection is still open"
    finally:
        loop.run(engine.aclose(), timeout=BOUND_S)
        loop.stop()


def test_redis_entries_expire_after_the_ttl(sim: SimulatorThread, redis_server: RedisServer) -> None:
    rows = ["ttl a", "ttl b"]
    store = redis.Redis.from_url(redis_server.url)
    run_batch(chat(sim), rows, cache=redis_server.url, cache_ttl_s=1)
    keys = store.keys(KEY_PREFIX + "*")
    assert len(keys) == 2 and all(0 < store.pttl(k) <= 1000 for k in keys)
    assert all(r.cached for r in run_batch(chat(sim), rows, cache=redis_server.url, cache_ttl_s=1))
    assert requests_at(sim) == 2

    deadline = time.monotonic() + 3.0
    while store.keys(KEY_PREFIX + "*"):
        assert time.monotonic() < deadline, "the entries did not expire"
        time.sleep(0.05)
    later = run_batch(chat(sim), rows, cache=redis_server.url, cache_ttl_s=1)
    assert not any(r.cached for r in later)
    assert requests_at(sim) == 4


def test_rows_are_answered_when_redis_is_gone_between_runs(
    sim: SimulatorThread, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"row {i}" for i in range(5)]
    run_batch(chat(sim), rows, cache=redis_server.url)
    redis_server.stop()
    observer = CountingObserver()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        results = run_batch(chat(sim), rows, cache=redis_server.url, observer=observer)

    assert all(r.ok and not r.cached for r in results)
    assert [r.value for r in results] == [answer(t) for t in rows]
    assert requests_at(sim) == 10  # every row paid again: the cache could not answer
    assert observer.value("cacheErrors") > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rows go to the endpoint" in warnings[0]


def test_rows_are_answered_when_redis_stops_while_they_are_in_flight(
    sim: SimulatorThread, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"[sim:slow=400] row {i}" for i in range(6)]
    observer = CountingObserver()

    async def scenario() -> list[RowResult]:
        engine = LLMEngine(chat(sim), EngineSettings(cache=redis_server.url), observer=observer)
        try:
            batch = asyncio.ensure_future(engine.run_batch(rows))
            for _ in range(200):  # every row looked up (a miss) and at the simulator
                if sim.stats()["in_flight"] == len(rows):
                    break
                await asyncio.sleep(0.01)
            assert sim.stats()["in_flight"] == len(rows)
            await asyncio.to_thread(redis_server.stop)  # the stores after the replies fail
            return await batch
        finally:
            await engine.aclose()

    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        results = run(scenario())
    assert all(r.ok for r in results)
    assert [r.value for r in results] == [answer(t) for t in rows]
    assert requests_at(sim) == 6
    assert observer.value("cacheMisses") == 6
    assert observer.value("cacheErrors") > 0
    assert any("result cache" in r.getMessage() for r in caplog.records)


# --- cost -----------------------------------------------------------------------------------------
def test_each_row_carries_its_cost_and_the_sum_is_what_the_simulator_billed(sim: SimulatorThread) -> None:
    rows = ["alpha", "beta gamma", "alpha", "delta epsilon zeta", "[sim:slow=1] one two three four"]
    observer = CountingObserver()
    with BlockingEngine(
        chat(sim), EngineSettings(prices="m=1/2", cache="memory"), observer=observer
    ) as engine:
        first = engine.run_batch(rows, timeout=BOUND_S)
        second = engine.run_batch(rows, timeout=BOUND_S)

    for row in first:
        assert row.usage is not None and row.cost is not None
        if row.cached:
            assert row.cost == 0.0
        else:
            expected = (row.usage.prompt_tokens * 1 + row.usage.completion_tokens * 2) / 1e6
            assert row.cost == pytest.approx(expected, rel=1e-12)
            assert row.cost > 0
    assert [r.cached for r in first] == [False, False, True, False, False]
    assert all(r.cached and r.cost == 0.0 for r in second)

    prompt, completion = billed(sim)
    total = sum(r.cost or 0.0 for r in first + second)
    assert requests_at(sim) == 4
    assert total == pytest.approx((prompt * 1 + completion * 2) / 1e6, rel=1e-12)
    assert abs(observer.value("costMicros") - round(total * 1e6)) <= 1
    assert (observer.value("promptTokens"), observer.value("completionTokens")) == (prompt, completion)


# --- budgets --------------------------------------------------------------------------------------
def test_a_token_budget_ends_the_rest_null_and_is_never_passed(sim: SimulatorThread) -> None:
    budget = 100
    provider = chat(sim, max_tokens=5, error_handling_strategy="IGNORE")
    observer = CountingObserver()
    results = run_batch(provider, [f"row {i}" for i in range(20)], token_budget=budget, observer=observer)

    answered = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert answered and refused
    assert all(r.value == answer(f"row {i}", 5) for i, r in enumerate(results) if r.ok)
    for row in refused:
        assert row.outcome == IGNORED and row.value is None and row.attempts == 0
        assert row.error is not None and "budget" in row.error and "spent" in row.error
    assert requests_at(sim) == len(answered)  # a refused row sent nothing
    assert sum(billed(sim)) <= budget
    assert observer.value("budgetRefused") == len(refused) > 0


@pytest.mark.parametrize("strategy", ["FAILOVER", "RETRY"])
def test_a_spent_token_budget_fails_the_batch_under_failover(sim: SimulatorThread, strategy: str) -> None:
    provider = chat(sim, max_tokens=5, error_handling_strategy=strategy)
    with pytest.raises(RowFailedError, match="budget spent") as failed:
        run_batch(provider, [f"row {i}" for i in range(20)], token_budget=60)
    assert failed.value.attempts == 0
    assert "token budget spent" in failed.value.cause
    assert sum(billed(sim)) <= 60


def test_a_cost_budget_stops_requests_within_it(sim: SimulatorThread) -> None:
    cost_budget = 0.0001  # 50 tokens at the higher price
    provider = chat(sim, max_tokens=5, error_handling_strategy="IGNORE")
    observer = CountingObserver()
    results = run_batch(
        provider, [f"row {i}" for i in range(20)], prices="m=1/2", cost_budget=cost_budget, observer=observer
    )

    answered = [r for r in results if r.ok]
    assert answered and len(answered) < len(results)
    assert all("cost budget spent" in (r.error or "") for r in results if not r.ok)
    prompt, completion = billed(sim)
    assert (prompt * 1 + completion * 2) / 1e6 <= cost_budget
    assert sum(r.cost or 0.0 for r in results) == pytest.approx((prompt + 2 * completion) / 1e6, rel=1e-12)
    assert observer.value("budgetRefused") > 0


def test_the_token_budget_is_split_across_subtasks(sim: SimulatorThread) -> None:
    budget = 100
    provider = chat(sim, max_tokens=5, error_handling_strategy="IGNORE")
    rows = [f"row {i}" for i in range(20)]
    settings = EngineSettings(token_budget=budget, max_concurrency=1)  # one at a time: counts are exact

    def answered_with(subtasks: int) -> tuple[int, int, list[RowResult]]:
        sim.reset()

        async def scenario() -> list[RowResult]:
            engine = LLMEngine(provider, settings, subtasks=subtasks)
            assert engine.spend.share_tokens == budget // subtasks
            try:
                return await engine.run_batch(rows, raise_on_failover=False)
            finally:
                await engine.aclose()

        results = run(scenario())
        return sum(r.ok for r in results), sum(billed(sim)), results

    alone, spent_alone, _ = answered_with(1)
    halved, spent_halved, results = answered_with(2)
    assert 0 < halved < alone
    assert spent_alone <= budget and spent_halved <= budget // 2
    refusal = next(r.error for r in results if not r.ok)
    assert refusal is not None
    assert "of this subtask's 50 tokens (job budget 100 over 2 subtasks)" in refusal


# --- packed embeddings ----------------------------------------------------------------------------
def embed_rows(provider: OpenAICompatProvider, settings: EngineSettings, texts: list[str]) -> list[RowResult]:
    """Every text through ``call_row`` at once, as the async row path hands them over."""

    async def scenario() -> list[RowResult]:
        engine = LLMEngine(provider, settings)
        try:
            return list(await asyncio.gather(*(engine.call_row(text) for text in texts)))
        finally:
            await engine.aclose()

    return run(scenario())


def test_call_rows_of_embeddings_travel_in_packs(sim: SimulatorThread) -> None:
    texts = [f"text number {i}" for i in range(50)]
    packed_settings = EngineSettings(embedding_rows_per_request=16, embedding_pack_wait_s=0.01, prices="e=1")
    packed = embed_rows(embed(sim), packed_settings, texts)
    assert requests_at(sim) == math.ceil(50 / 16) == 4
    assert pack_sizes(sim) == [2, 16, 16, 16]
    prompt, _ = billed(sim)
    assert sum(r.cost or 0.0 for r in packed) == pytest.approx(prompt / 1e6, rel=1e-12)

    sim.reset()
    single = embed_rows(embed(sim), EngineSettings(embedding_rows_per_request=1), texts)
    assert requests_at(sim) == 50
    assert all(r.ok for r in packed + single)
    assert [r.value for r in packed] == [r.value for r in single]
    assert all(r.value == pytest.approx(expected_embedding(t)) for r, t in zip(packed, texts, strict=True))


def test_a_bad_row_fails_its_pack_and_alone_when_retried_row_by_row(sim: SimulatorThread) -> None:
    texts = [f"text {i}" for i in range(16)]
    texts[5] = "[sim:status=400] bad text"
    settings = EngineSettings(embedding_rows_per_request=16, embedding_pack_wait_s=0.01)
    results = embed_rows(embed(sim, error_handling_strategy="IGNORE"), settings, texts)

    assert requests_at(sim) == 1 + 16  # the pack, then each row alone
    assert pack_sizes(sim) == [1] * 16 + [16]
    bad = results[5]
    assert bad.outcome == IGNORED and bad.value is None and bad.status == 400
    for index, row in enumerate(results):
        if index != 5:
            assert row.outcome == OK
            assert row.value == pytest.approx(expected_embedding(texts[index]))


def test_run_batch_packs_embeddings_and_sends_identical_texts_once(sim: SimulatorThread) -> None:
    texts = [f"t{i % 20}" for i in range(40)]
    results = run_batch(embed(sim), texts, embedding_rows_per_request=16)

    assert requests_at(sim) == math.ceil(20 / 16) == 2
    assert pack_sizes(sim) == [4, 16]
    sent = [t for r in recorded(sim) for t in r["body"]["input"]]
    assert sorted(sent) == sorted(set(texts))
    assert all(
        r.ok and r.value == pytest.approx(expected_embedding(t)) for r, t in zip(results, texts, strict=True)
    )
    assert sum(r.cached for r in results) == 20


def test_the_memory_cache_serves_every_engine_of_the_process(sim: SimulatorThread) -> None:
    """``cache="memory"`` is one LRU per process (a Python worker, a notebook): a second
    ``run_batch`` - a rerun - finds the first one's answers; each engine counts its own hits."""
    rows = ["mem-1", "mem-2", "mem-3"]
    first = run_batch(chat(sim), rows, cache="memory")
    assert requests_at(sim) == 3 and not any(r.cached for r in first)
    observer = CountingObserver()
    again = run_batch(chat(sim), rows, cache="memory", observer=observer)
    assert requests_at(sim) == 3, "the rerun sent requests"
    assert [r.value for r in again] == [r.value for r in first] and all(r.cached for r in again)
    assert observer.value("cacheHits") == 3 and observer.value("cacheMisses") == 0
    other_ttl = run_batch(chat(sim), rows, cache="memory", cache_ttl_s=5.0)  # another size/TTL: its own
    assert requests_at(sim) == 6 and not any(r.cached for r in other_ttl)

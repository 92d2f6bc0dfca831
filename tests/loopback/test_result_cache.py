"""The result cache against a real ``redis-server`` on 127.0.0.1 (and the in-memory LRU)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import trustme
from helpers.redis_server import RedisServer, free_port

from flink_llm_udf._errors import ConfigurationError, InvalidOptionError
from flink_llm_udf._result_cache import (
    KEY_PREFIX,
    MemoryCache,
    RedisCache,
    cache_key,
    open_cache,
    validate_cache_spec,
)

BOUND_S = 15.0
T = TypeVar("T")
LOGGER = "flink_llm_udf._result_cache"


def run(coroutine: Awaitable[T]) -> T:
    """Run one scenario on a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(coroutine, BOUND_S))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def all_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


# --- keys --------------------------------------------------------------------------------------------
def test_the_key_is_the_namespace_and_a_digest_of_url_and_body() -> None:
    key = cache_key("http://h/v1/chat/completions", b'{"model":"m","messages":[]}')
    assert key.startswith(KEY_PREFIX)
    assert len(key) == len(KEY_PREFIX) + 64
    assert key == cache_key("http://h/v1/chat/completions", b'{"model":"m","messages":[]}')
    assert key != cache_key("http://h/v1/chat/completions", b'{"model":"m","messages":[1]}')
    assert key != cache_key("http://other/v1/chat/completions", b'{"model":"m","messages":[]}')


# --- memory ------------------------------------------------------------------------------------------
def test_memory_evicts_the_least_recently_used_entry() -> None:
    async def scenario() -> None:
        cache = MemoryCache(max_entries=2, ttl_s=None)
        await cache.put("a", b"1")
        await cache.put("b", b"2")
        assert await cache.get("a") == b"1"  # a is now the most recently used
        await cache.put("c", b"3")  # evicts b
        assert await cache.get("b") is None
        assert await cache.get("a") == b"1"
        assert await cache.get("c") == b"3"
        await cache.put("a", b"1'")  # replacing keeps the size
        assert len(cache) == 2
        await cache.put("d", b"4")  # evicts c: a was used after it
        assert await cache.get("c") is None
        assert await cache.get("a") == b"1'"
        assert (cache.hits, cache.misses, cache.stores, cache.errors) == (4, 2, 5, 0)

    run(scenario())


def test_memory_entries_expire_after_the_ttl_on_read() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        cache = MemoryCache(max_entries=10, ttl_s=10.0, clock=clock)
        await cache.put("k", b"v")
        clock.now = 9.99
        assert await cache.get("k") == b"v"
        clock.now = 10.0
        assert await cache.get("k") is None
        assert len(cache) == 0  # dropped on read
        await cache.put("k", b"w")  # a new entry counts from its own store
        clock.now = 19.0
        assert await cache.get("k") == b"w"

    run(scenario())


@pytest.mark.parametrize("max_entries", [0, -1, True, 1.5])
def test_memory_refuses_a_size_below_one(max_entries: object) -> None:
    with pytest.raises(InvalidOptionError, match="cache_max_entries"):
        MemoryCache(max_entries, ttl_s=None)  # type: ignore[arg-type]


# --- redis -------------------------------------------------------------------------------------------
def test_redis_stores_and_answers_bytes(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, ttl_s=60)
    value = bytes(range(256)) * 10
    key = cache_key("http://h/v1/chat/completions", b"{}")

    async def scenario() -> tuple[bytes | None, bytes | None]:
        miss = await cache.get(key)
        await cache.put(key, value)
        hit = await cache.get(key)
        await cache.aclose()
        return miss, hit

    assert run(scenario()) == (None, value)
    assert (cache.hits, cache.misses, cache.stores, cache.errors) == (1, 1, 1, 0)
    with redis.Redis.from_url(redis_server.url) as direct:
        assert direct.get(key) == value
        assert 0 < direct.ttl(key) <= 60


def test_a_closed_redis_cache_works_again_on_the_next_loop(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, ttl_s=None)

    async def put_then_close() -> None:
        await cache.put("k", b"v")
        await cache.aclose()

    async def get_then_close() -> bytes | None:
        value = await cache.get("k")
        await cache.aclose()
        return value

    run(put_then_close())  # its loop is gone after this
    assert run(get_then_close()) == b"v"
    with redis.Redis.from_url(redis_server.url) as direct:
        assert direct.ttl("k") == -1  # no ttl: no expiry


def test_redis_entries_expire_after_a_sub_second_ttl(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, ttl_s=0.25)

    async def scenario() -> float:
        await cache.put("k", b"v")
        assert await cache.get("k") == b"v"
        stored_at = time.monotonic()
        while await cache.get("k") is not None:
            assert time.monotonic() - stored_at < 3.0, "the entry did not expire"
            await asyncio.sleep(0.02)
        await cache.aclose()
        return time.monotonic() - stored_at

    gone_after = run(scenario())
    assert gone_after < 1.0
    assert cache.errors == 0


def test_redis_ttl_in_whole_seconds_is_set_with_ex(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, ttl_s=1)

    async def scenario() -> None:
        await cache.put("k", b"v")
        await cache.aclose()

    run(scenario())
    with redis.Redis.from_url(redis_server.url) as direct:
        assert direct.ttl("k") == 1
        deadline = time.monotonic() + 3.0
        while direct.exists("k"):
            assert time.monotonic() < deadline, "the entry did not expire after 1 s"
            time.sleep(0.05)


def test_redis_over_a_unix_socket(redis_server: RedisServer) -> None:
    cache = open_cache(redis_server.unix_url, ttl_s=5, max_entries=1)
    assert isinstance(cache, RedisCache)

    async def scenario() -> bytes | None:
        await cache.put("k", b"v")
        value = await cache.get("k")
        await cache.aclose()
        return value

    assert run(scenario()) == b"v"


# --- passwords ---------------------------------------------------------------------------------------
PASSWORD = "Rt7kQ2mZx9vLp4Wn-3Hc"
WRONG = "Wq8jN5bYc1sKe6Tz-7Fd"


@pytest.fixture
def locked_redis() -> object:
    with RedisServer(password=PASSWORD) as server:
        yield server


def _roundtrip(cache: RedisCache) -> bytes | None:
    async def scenario() -> bytes | None:
        await cache.put("k", b"v")
        value = await cache.get("k")
        await cache.aclose()
        return value

    return run(scenario())


def test_the_password_from_a_file_opens_a_locked_redis(locked_redis: RedisServer, tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")  # a trailing newline, as editors leave it
    cache = open_cache(locked_redis.url, ttl_s=60, max_entries=1, password_file=str(secret))
    assert isinstance(cache, RedisCache)
    assert _roundtrip(cache) == b"v"
    assert cache.errors == 0


def test_a_wrong_password_is_counted_and_logged_never_raised_nor_shown(
    locked_redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(WRONG)
    cache = RedisCache(locked_redis.url, ttl_s=60, password_file=str(secret))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _roundtrip(cache) is None
    assert cache.errors == 1  # the put failed; the get then met the open breaker
    assert cache.misses == 1 and cache.hits == 0 and cache.stores == 0
    (warning,) = warnings_of(caplog)
    assert "AuthenticationError" in warning or "invalid" in warning.lower()
    for piece in (WRONG, WRONG[:10], WRONG[-10:]):
        assert piece not in all_text(caplog)
        assert piece not in repr(cache) and piece not in cache.describe()


def test_a_password_in_the_url_is_used_and_never_shown(
    locked_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{locked_redis.port}/0"
    cache = open_cache(url, ttl_s=60, max_entries=1)
    assert isinstance(cache, RedisCache)
    assert _roundtrip(cache) == b"v"
    shown = f"{cache.describe()} {cache!r}"
    assert PASSWORD not in shown
    assert f"redis://:***@127.0.0.1:{locked_redis.port}/0" in shown

    wrong = RedisCache(f"redis://default:{WRONG}@127.0.0.1:{locked_redis.port}/0", ttl_s=60)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _roundtrip(wrong) is None
    assert wrong.errors == 1
    assert len(warnings_of(caplog)) == 1
    text = f"{all_text(caplog)} {wrong.describe()} {wrong!r}"
    assert WRONG[:10] not in text and WRONG[-10:] not in text
    assert "default:***@" in wrong.describe()


def test_a_password_in_the_query_is_used_and_never_shown(locked_redis: RedisServer) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{locked_redis.port}/0?password={PASSWORD}", ttl_s=60)
    assert _roundtrip(cache) == b"v"
    assert PASSWORD not in f"{cache.describe()} {cache!r}"
    assert ":***@" in cache.describe()


def test_what_a_server_echoes_of_the_password_is_redacted(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD)
    cache = RedisCache(redis_server.url, ttl_s=60, password_file=str(secret))

    async def echo_the_password(*args: object, **kwargs: object) -> object:
        raise redis.exceptions.ResponseError(f"ERR cannot use {PASSWORD} (cut: {PASSWORD[:12]})")

    async def scenario() -> bytes | None:
        cache._redis().get = echo_the_password  # type: ignore[method-assign]
        return await cache.get("k")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert run(scenario()) is None
    (warning,) = warnings_of(caplog)
    assert "ResponseError" in warning and "***" in warning
    assert PASSWORD[:8] not in warning and PASSWORD[-8:] not in warning


def test_password_file_problems_name_the_option_and_path_not_the_content(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigurationError, match=r"cache-password-file='.*nope' cannot be read"):
        RedisCache("redis://127.0.0.1:1/0", ttl_s=None, password_file=str(missing))
    with pytest.raises(ConfigurationError, match=r"cache-password-file=.* cannot be read"):
        RedisCache("redis://127.0.0.1:1/0", ttl_s=None, password_file=str(tmp_path))  # a directory
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    with pytest.raises(ConfigurationError, match="is empty"):
        open_cache("redis://127.0.0.1:1/0", ttl_s=None, max_entries=1, password_file=str(empty))
    secret = tmp_path / "secret"
    secret.write_text("file-content-secret-123")
    with pytest.raises(ConfigurationError, match="give one of them") as both:
        RedisCache(f"redis://:{PASSWORD}@127.0.0.1:1/0", ttl_s=None, password_file=str(secret))
    assert PASSWORD not in str(both.value) and "file-content" not in str(both.value)
    assert str(secret) in str(both.value)


# --- outage ------------------------------------------------------------------------------------------
def test_an_outage_is_a_quick_miss_with_one_warning_then_redis_is_used_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    breaker_s = 0.5
    cache = RedisCache(redis_server.url, ttl_s=60, breaker_s=breaker_s)

    async def scenario() -> dict[str, float]:
        await cache.put("k", b"v")
        assert await cache.get("k") == b"v"
        redis_server.stop()

        started = time.perf_counter()
        assert await cache.get("k") is None  # the failure itself: refused, well within timeout_s
        first = time.perf_counter() - started
        durations = []
        for _ in range(50):  # inside the breaker interval: Redis is not asked
            started = time.perf_counter()
            assert await cache.get("k") is None
            await cache.put("k", b"v")
            durations.append(time.perf_counter() - started)
        errors_during_breaker = cache.errors

        await asyncio.sleep(breaker_s + 0.1)
        assert await cache.get("k") is None  # the probe: still down
        assert cache.errors == errors_during_breaker + 1

        redis_server.start()  # same port, empty
        back_at = time.monotonic()
        while True:
            await cache.put("k", b"again")
            if await cache.get("k") == b"again":
                break
            assert time.monotonic() - back_at < breaker_s + 3.0, "the cache did not recover"
            await asyncio.sleep(0.05)
        recovered_after = time.monotonic() - back_at
        await cache.aclose()
        return {
            "first": first,
            "breaker_max": max(durations),
            "errors_during_breaker": errors_during_breaker,
            "recovered_after": recovered_after,
        }

    with caplog.at_level(logging.INFO, logger=LOGGER):
        measured = run(scenario())
    assert measured["first"] < 1.5
    assert measured["breaker_max"] < 0.02, measured  # µs in practice; no timeout paid
    assert measured["errors_during_breaker"] == 1
    assert cache.skipped >= 100
    assert measured["recovered_after"] <= breaker_s + 3.0
    assert len(warnings_of(caplog)) == 1  # two failures within a minute: one warning
    (recovered,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "answers again (1 failure(s) since the last warning)" in recovered  # the probe's
    assert cache.hits == 2


def test_warnings_during_a_long_outage_come_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=None, breaker_s=5.0, clock=clock)

    async def get_at(now: float) -> bytes | None:
        clock.now = now
        return await cache.get("k")

    async def scenario() -> None:
        for now in (0.0, 1.0, 6.0, 30.0, 61.0):
            assert await get_at(now) is None
        await cache.aclose()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(scenario())
    # 0: fails, 1: skipped, 6: probe fails, 30: probe fails, 61: probe fails
    assert cache.errors == 4 and cache.skipped == 1 and cache.misses == 5
    first, second = warnings_of(caplog)
    assert "failed" in first and "ConnectionError" in first
    assert "3 failure(s) in the last 61 s" in second


def test_only_one_probe_goes_out_when_the_breaker_closes(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=None, breaker_s=5.0, clock=clock)

    async def scenario() -> None:
        assert await cache.get("k") is None  # opens the breaker
        clock.now = 5.0
        assert await asyncio.gather(*(cache.get("k") for _ in range(20))) == [None] * 20
        await cache.aclose()

    run(scenario())
    assert cache.errors == 2 and cache.skipped == 19


def test_a_redis_that_never_answers_costs_the_timeout_once() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        cache = RedisCache(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", ttl_s=None, timeout_s=0.2)

        async def scenario() -> tuple[float, float]:
            started = time.perf_counter()
            assert await cache.get("k") is None
            first = time.perf_counter() - started
            started = time.perf_counter()
            assert await cache.get("k") is None
            await cache.aclose()
            return first, time.perf_counter() - started

        first, second = run(scenario())
    assert 0.15 < first < 1.0
    assert second < 0.01
    assert cache.errors == 1


def test_building_a_redis_cache_does_no_io() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=None)
    assert cache.errors == 0 and cache._client is None


# --- TLS -------------------------------------------------------------------------------------------
@contextmanager
def tls_front(ca: trustme.CA, name: str, target_port: int) -> Iterator[int]:
    """A TLS terminator on 127.0.0.1 (certificate for ``name``) in front of ``target_port``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(context)
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, name="tls-front", daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:

        async def shutdown() -> None:
            server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.parametrize(
    ("cert_name", "trust_ca", "works"),
    [("localhost", True, True), ("localhost", False, False), ("other.example", True, False)],
    ids=["trusted", "unknown-ca", "other-host-name"],
)
def test_rediss_checks_the_certificate_against_the_ca_file_and_the_host_name(
    redis_server: RedisServer, tmp_path: Path, cert_name: str, trust_ca: bool, works: bool
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with tls_front(ca, cert_name, redis_server.port) as port:
        cache = open_cache(
            f"rediss://localhost:{port}/0",
            ttl_s=60,
            max_entries=1,
            tls_ca_file=str(ca_file) if trust_ca else None,
        )
        assert isinstance(cache, RedisCache)
        value = _roundtrip(cache)
    assert (value == b"v") is works
    assert (cache.errors == 0) is works


# --- specs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [None, "", "none", "OFF", " off "])
def test_no_cache(spec: str | None) -> None:
    assert open_cache(spec, ttl_s=1, max_entries=1) is None


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("memory", MemoryCache),
        (" Memory ", MemoryCache),
        ("redis://cache.internal:6379/0", RedisCache),
        ("rediss://cache.internal", RedisCache),
        ("unix:///run/redis.sock?db=2", RedisCache),
    ],
)
def test_open_cache_picks_the_store(spec: str, kind: type) -> None:
    assert isinstance(open_cache(spec, ttl_s=60, max_entries=10), kind)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("memcached://h:11211", "must be"),
        ("redis", "must be"),
        ("mem", "must be"),
        ("http://h:6379", "must be"),
        (42, "must be"),
        ("redis://h:notaport/0", "not a Redis URL"),
        ("unix://", "socket's path"),
    ],
)
def test_a_bad_spec_names_the_option_and_the_allowed_values(spec: object, reason: str) -> None:
    with pytest.raises(InvalidOptionError, match=r"^cache=") as raised:
        validate_cache_spec(spec)
    assert reason in str(raised.value)
    if reason == "must be":
        assert '"memory"' in str(raised.value) and "redis://" in str(raised.value)


def test_a_bad_spec_never_shows_its_password() -> None:
    for spec in (
        "rediz://:hunter2-secret@h",
        "redis://:hunter2-secret@h:99999",
        "redis://u:hunter2-secret@h:x",
    ):
        with pytest.raises(InvalidOptionError) as raised:
            open_cache(spec, ttl_s=None, max_entries=1)
        assert "hunter2" not in str(raised.value), str(raised.value)
        assert ":***@" in str(raised.value)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), True, "60"])
def test_a_ttl_must_be_positive_seconds(ttl: object) -> None:
    with pytest.raises(InvalidOptionError, match="cache_ttl_s"):
        open_cache("memory", ttl_s=ttl, max_entries=1)  # type: ignore[arg-type]

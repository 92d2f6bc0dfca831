"""The simulator's per-key quotas over real HTTP: headers, 429 bodies, no-consumption, keys, concurrency.

Limits are small (a few requests or a hundred tokens per minute), so the allowance refilled
while a test runs is a small fraction of one request and the expected numbers are exact up to
a rounding the assertions allow for.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest

from flink_llm_udf.simulator import (
    SimulatorProcess,
    SimulatorThread,
    chat_quota_tokens,
    embeddings_quota_tokens,
    quota_key_label,
)

Response = tuple[int, dict[str, str], Any]

RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)


def post(url: str, payload: Any, key: str | None = None) -> Response:
    """One blocking POST (bounded by a 10 s timeout); header names lower-cased."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, head, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, head, body = exc.code, exc.headers, exc.read()
    return status, {k.lower(): v for k, v in head.items()}, json.loads(body)


def chat_payload(text: str = "two words", **extra: Any) -> dict[str, Any]:
    return {"model": "sim-model", "messages": [{"role": "user", "content": text}], **extra}


def chat(sim: Any, text: str = "two words", key: str | None = None, **extra: Any) -> Response:
    return post(sim.base_url + "/chat/completions", chat_payload(text, **extra), key)


def cost(text: str = "two words", max_tokens: int | None = None, n: int = 1) -> int:
    return chat_quota_tokens([{"role": "user", "content": text}], max_tokens, n)


def seconds(duration: str) -> float:
    """A Go-style duration header (``1m2.5s``, ``120ms``, ``0s``) in seconds."""
    assert re.fullmatch(r"(\d+h)?(\d+m)?(\d+(\.\d+)?s)?|\d+ms", duration), duration
    if duration.endswith("ms"):
        return int(duration[:-2]) / 1000
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


async def _post_many(url: str, payloads: Sequence[tuple[Any, str | None]]) -> list[Response]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:

        async def one(payload: Any, key: str | None) -> Response:
            headers = {} if key is None else {"Authorization": f"Bearer {key}"}
            async with session.post(url, json=payload, headers=headers) as resp:
                head = {k.lower(): v for k, v in resp.headers.items()}
                return resp.status, head, json.loads(await resp.read())

        return await asyncio.gather(*(one(p, k) for p, k in payloads))


def post_many(url: str, payloads: Sequence[tuple[Any, str | None]]) -> list[Response]:
    """POST every (payload, key) at once; bounded by a 20 s total timeout."""
    return asyncio.run(_post_many(url, payloads))


# ------------------------------------------------------------------------------ headers


def test_no_quota_means_no_rate_limit_headers() -> None:
    with SimulatorThread() as sim:
        status, headers, _ = chat(sim)
        stats = sim.stats()
    assert status == 200
    assert not [h for h in headers if h.startswith("x-ratelimit")]
    assert stats["rate_limited_requests"] == stats["rate_limited_tokens"] == 0
    assert stats["quota_keys"] == {}


def test_headers_on_every_reply_with_remaining_decreasing() -> None:
    with SimulatorThread(quota_rpm=5, quota_tpm=1000) as sim:
        replies = [chat(sim, max_tokens=100) for _ in range(3)]
    each = cost(max_tokens=100)
    for i, (status, headers, _) in enumerate(replies, start=1):
        assert status == 200
        assert all(h in headers for h in RATE_HEADERS)
        assert headers["x-ratelimit-limit-requests"] == "5"
        assert headers["x-ratelimit-limit-tokens"] == "1000"
        assert headers["x-ratelimit-remaining-requests"] == str(5 - i)
        # What refilled meanwhile: 1000 TPM is a token every 60 ms.
        assert 0 <= int(headers["x-ratelimit-remaining-tokens"]) - (1000 - i * each) <= 10
        # Full again after i requests' refill: 12 s each at 5 RPM, 6 ms per token at 1000 TPM.
        assert i * 12 - 1 <= seconds(headers["x-ratelimit-reset-requests"]) <= i * 12
        assert i * each * 0.06 - 1 <= seconds(headers["x-ratelimit-reset-tokens"]) <= i * each * 0.06


def test_only_configured_dimensions_get_headers_and_quota_headers_off_sends_none() -> None:
    with SimulatorThread(quota_tpm=1000) as sim:
        _, headers, _ = chat(sim)
        sim.update(quota_headers=False, quota_rpm=1)
        _, quiet, _ = chat(sim)
        status, refused, body = chat(sim)
    assert "x-ratelimit-limit-tokens" in headers and "x-ratelimit-limit-requests" not in headers
    assert not [h for h in quiet if h.startswith("x-ratelimit")]
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" in refused and not [h for h in refused if h.startswith("x-ratelimit")]


# ------------------------------------------------------------------------ requests (RPM)


def test_burst_past_rpm_gets_openai_429_and_refusals_use_nothing() -> None:
    with SimulatorThread(quota_rpm=5, record_requests=True) as sim:
        results = post_many(
            sim.base_url + "/chat/completions", [(chat_payload(f"row {i}"), None) for i in range(8)]
        )
        after = chat(sim)
        stats = sim.stats(include_requests=True)
    assert sorted(r[0] for r in results) == [200] * 5 + [429] * 3
    for status, headers, body in results:
        if status != 429:
            continue
        error = body["error"]
        assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
        assert re.match(
            r"Rate limit reached for sim-model in organization org-simulator on requests per min \(RPM\): "
            r"Limit 5, Used 5, Requested 1\. Please try again in \d+(\.\d+)?s\.",
            error["message"],
        ), error["message"]
        # One request refills in 12 s at 5 RPM.
        assert 11_000 <= int(headers["retry-after-ms"]) <= 12_000
        assert headers["retry-after"] == "12"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert seconds(headers["x-ratelimit-reset-requests"]) <= 60
    assert after[0] == 429
    # Four refusals in all and five admissions: the refused ones left the quota as it was.
    assert stats["rate_limited_requests"] == 4 and stats["rejected"] == {"quota_rpm": 4}
    assert stats["quota_keys"]["anonymous"]["requests"] == 5
    assert stats["by_status"] == {"200": 5, "429": 4}
    assert sorted(str(r["limit"]) for r in stats["requests"]) == ["None"] * 5 + ["quota_rpm"] * 4
    assert all(r["fault"] is None for r in stats["requests"])


def test_rpm_refills_continuously() -> None:
    with SimulatorThread(quota_rpm=600) as sim:  # one request refills every 100 ms
        replies = post_many(sim.base_url + "/chat/completions", [(chat_payload(), None)] * 600)
        assert all(r[0] == 200 for r in replies)
        # Take whatever refilled during the burst (a few requests' worth) until the first 429.
        for _ in range(200):
            status, headers, _ = chat(sim)
            if status == 429:
                break
        assert status == 429
        wait_ms = int(headers["retry-after-ms"])
        assert 1 <= wait_ms <= 100 and headers["retry-after"] == "1"
        time.sleep(wait_ms / 1000 + 0.02)
        assert chat(sim)[0] == 200


# -------------------------------------------------------------------------- tokens (TPM)


def test_large_max_tokens_hit_tpm_and_a_refused_request_uses_no_tokens() -> None:
    big, small = cost(max_tokens=58), cost(max_tokens=28)
    assert (big, small) == (60, 30)
    with SimulatorThread(quota_tpm=100, quota_rpm=100, record_requests=True) as sim:
        first = chat(sim, max_tokens=58)
        refused = chat(sim, max_tokens=58)
        fits = chat(sim, max_tokens=28)  # 60 + 30 <= 100: only if the refusal took nothing
        stats = sim.stats(include_requests=True)
    assert first[0] == 200 and fits[0] == 200
    status, headers, body = refused
    assert status == 429
    error = body["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert (
        "on tokens per min (TPM): Limit 100, Used 60, Requested 60. Please try again in" in error["message"]
    )
    # 20 tokens missing at 100 per minute: 12 s.
    assert 11_000 <= int(headers["retry-after-ms"]) <= 12_000 and headers["retry-after"] == "12"
    assert 39 <= int(headers["x-ratelimit-remaining-tokens"]) <= 41
    assert headers["x-ratelimit-remaining-requests"] == "99"  # nor a request
    assert 0 <= int(fits[1]["x-ratelimit-remaining-tokens"]) <= 11
    assert stats["rate_limited_tokens"] == 1 and stats["rate_limited_requests"] == 0
    assert stats["quota_keys"]["anonymous"]["tokens"] == 90
    assert [r["limit"] for r in stats["requests"]] == [None, "quota_tpm", None]


def test_n_choices_multiply_max_tokens_and_embeddings_cost_their_words() -> None:
    with SimulatorThread(quota_tpm=1000) as sim:
        chat(sim, max_tokens=10, n=3)
        embed = post(sim.base_url + "/embeddings", {"model": "e", "input": ["a b c", "d e"]})
        stats = sim.stats()
    assert embed[0] == 200 and embed[2]["usage"]["prompt_tokens"] == 5
    expected = cost(max_tokens=10, n=3) + embeddings_quota_tokens(["a b c", "d e"])
    assert stats["quota_keys"]["anonymous"]["tokens"] == expected == 2 + 30 + 5


def test_request_larger_than_tpm_is_too_large_with_no_retry_after() -> None:
    with SimulatorThread(quota_tpm=100) as sim:
        status, headers, body = chat(sim, max_tokens=500)
    assert status == 429 and "retry-after" not in headers and "retry-after-ms" not in headers
    assert body["error"]["message"].startswith("Request too large for sim-model")
    assert headers["x-ratelimit-remaining-tokens"] == "100"


# ------------------------------------------------------------------------------- keys


def test_keys_have_separate_buckets_and_no_key_shares_the_anonymous_one() -> None:
    with SimulatorThread(quota_rpm=2) as sim:
        a = [chat(sim, key="key-a")[0] for _ in range(3)]
        b = [chat(sim, key="key-b")[0] for _ in range(2)]
        anonymous = [chat(sim)[0] for _ in range(3)]
        stats = sim.stats()
    assert a == [200, 200, 429] and b == [200, 200] and anonymous == [200, 200, 429]
    keys = stats["quota_keys"]
    assert set(keys) == {quota_key_label("Bearer key-a"), quota_key_label("Bearer key-b"), "anonymous"}
    assert keys[quota_key_label("Bearer key-a")]["requests"] == 2
    assert keys[quota_key_label("Bearer key-b")]["requests"] == 2
    assert "key-a" not in json.dumps(stats)
    assert stats["rate_limited_requests"] == 2


def test_a_wrong_api_key_is_401_before_any_quota() -> None:
    with SimulatorThread(api_key="secret", quota_rpm=1) as sim:
        assert chat(sim, key="wrong")[0] == 401
        assert chat(sim, key="secret")[0] == 200
        assert chat(sim, key="secret")[0] == 429
        assert set(sim.stats()["quota_keys"]) == {quota_key_label("Bearer secret")}


# ------------------------------------------------------------------------- concurrency


def test_concurrent_request_cap_per_key() -> None:
    with SimulatorThread(
        quota_max_concurrent=2, latency_ms=1000, retry_after_s=2, record_requests=True
    ) as sim:
        payloads = [(chat_payload(f"a {i}"), "key-a") for i in range(6)]
        payloads += [(chat_payload(f"b {i}"), "key-b") for i in range(2)]
        results = post_many(sim.base_url + "/chat/completions", payloads)
        stats = sim.stats(include_requests=True)
    a, b = results[:6], results[6:]
    assert sorted(r[0] for r in a) == [200] * 2 + [429] * 4
    assert [r[0] for r in b] == [200, 200]
    for status, headers, body in a:
        if status == 429:
            assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
            assert body["error"]["code"] == "rate_limit_exceeded"
            assert "concurrent requests: Limit 2, Used 2, Requested 1" in body["error"]["message"]
            assert not [h for h in headers if h.startswith("x-ratelimit")]  # no RPM/TPM set
    assert stats["rate_limited_concurrency"] == 4 and stats["rejected"] == {"quota_concurrency": 4}
    assert stats["quota_keys"][quota_key_label("Bearer key-a")] == {
        "requests": 2,
        "tokens": 2 * cost("a 0"),
        "in_flight": 0,
    }
    assert sum(r["limit"] == "quota_concurrency" for r in stats["requests"]) == 4


# ------------------------------------------------------------ other replies, reset, runtime


def test_bad_requests_and_injected_faults_carry_headers() -> None:
    with SimulatorThread(quota_rpm=5) as sim:
        status, headers, _ = post(sim.base_url + "/chat/completions", {"model": "m"})
        assert status == 400 and headers["x-ratelimit-remaining-requests"] == "5"  # a 400 uses nothing
        status, headers, _ = chat(sim, "[sim:status=503] row")
        assert status == 503 and headers["x-ratelimit-remaining-requests"] == "4"  # an admitted 503 does


def test_reset_refills_every_key_and_zeroes_the_counters() -> None:
    with SimulatorThread(quota_rpm=1, quota_tpm=1000) as sim:
        assert [chat(sim)[0], chat(sim)[0]] == [200, 429]
        sim.reset()
        stats = sim.stats()
        status, headers, _ = chat(sim)
    assert stats["rate_limited_requests"] == 0 and stats["quota_keys"] == {} and stats["rejected"] == {}
    assert status == 200 and headers["x-ratelimit-remaining-requests"] == "0"
    assert 1000 - cost() <= int(headers["x-ratelimit-remaining-tokens"]) <= 1000 - cost() + 1


def test_quotas_can_be_set_and_cleared_at_runtime() -> None:
    with SimulatorThread() as sim:
        assert chat(sim)[0] == 200
        sim.update(quota_rpm=1)
        assert [chat(sim)[0], chat(sim)[0]] == [200, 429]
        sim.update(quota_rpm=None)
        status, headers, _ = chat(sim)
    assert status == 200 and not [h for h in headers if h.startswith("x-ratelimit")]


@pytest.mark.parametrize("runner", [SimulatorProcess])
def test_quota_flags_reach_a_simulator_process(runner: type[SimulatorProcess]) -> None:
    with runner(quota_rpm=1, quota_tpm=500) as sim:
        first, second = chat(sim), chat(sim)
        stats = sim.stats()
    assert first[0] == 200 and first[1]["x-ratelimit-limit-tokens"] == "500"
    assert second[0] == 429 and second[1]["retry-after"] == "60"
    assert stats["rate_limited_requests"] == 1

"""A 429 storm is contained: one 429 pauses the whole subtask until the server's reset.

The server answers 429 with ``Retry-After: 2`` for its first 3 s, then answers every request.
Without a pause every row would retry on its own schedule and keep the storm going; with it,
no request is sent while the subtask is paused, and every row then succeeds.
"""

from __future__ import annotations

import threading
import time

from aiohttp import web
from helpers.servers import serve_app

from flink_llm_udf import EngineSettings, OpenAICompatProvider, run_batch

STORM_S = 3.0
RETRY_AFTER_S = 2


class StormServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: float | None = None
        self.arrivals: list[tuple[float, int]] = []  # (time, status answered)
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)

    async def chat(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        with self.lock:
            if self.started is None:
                self.started = now
            storming = now - self.started < STORM_S
            self.arrivals.append((now, 429 if storming else 200))
        if storming:
            error = {"message": "Rate limit reached", "code": "rate_limit_exceeded"}
            return web.json_response(
                {"error": error}, status=429, headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        return web.json_response({"choices": [{"index": 0, "message": {"content": "ok"}}]})


def test_a_429_storm_pauses_the_subtask_and_every_row_then_succeeds():
    server = StormServer()
    rows = [f"row {i}" for i in range(40)]
    with serve_app(server.app) as base_url:
        provider = OpenAICompatProvider(
            endpoint=f"{base_url}/v1", model="m", retry_backoff_base_interval="100ms"
        )
        results = run_batch(provider, rows, settings=EngineSettings(max_concurrency=16, row_deadline_s=30))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    first_wave = [t for t, status in server.arrivals if status == 429 and t - server.arrivals[0][0] < 0.5]
    assert 1 <= len(first_wave) <= 16  # what was already in flight when the first 429 came back
    first_reply = server.arrivals[0][0]
    during_pause = [
        t for t, _ in server.arrivals if first_reply + 0.5 < t < first_reply + RETRY_AFTER_S - 0.1
    ]
    assert during_pause == []  # nothing new while the subtask waits for the server's reset
    storm_429s = sum(1 for _, status in server.arrivals if status == 429)
    assert storm_429s <= 16 + 8 + 2  # the first wave, then at most one halved wave
    assert any(r.throttled_s >= RETRY_AFTER_S - 0.5 for r in results)

"""Two subtasks against a simulator enforcing a hosted API's quota: within it, and busy.

The scaled-down ``quota`` case of issue 12. The simulator's "minute" is 3 s
(``quota_window_s``) holding 300 requests and 15,000 tokens: the rates of a 6,000 RPM and
300,000 TPM quota, which the engines are given, so 800 rows exhaust it within seconds. Two
engines share it as two subtasks of one job would (each given the job-wide limits and
``subtasks=2``), 64 requests in flight each. Under RETRY: no failed row, at most 2 % of requests
answered 429, and at least 0.9 of the quota's throughput. The same run with the limits and the
headers' calibration turned off is the control: it must do worse on 429s, or the gate proves
nothing. (Calibration from the headers has its own tests, on a fake clock, in tests/pure.)
"""

from __future__ import annotations

import threading
import time

import pytest

from flink_llm_udf import EngineSettings, OpenAICompatProvider
from flink_llm_udf._batch import BlockingEngine
from flink_llm_udf.simulator import SimulatorConfig, SimulatorProcess

QUOTA_RPM = 6_000
QUOTA_TPM = 300_000
WINDOW_S = 3.0  # the simulator's minute, scaled down
ROWS_PER_SUBTASK = 400
SUBTASKS = 2


def run_job(sim: SimulatorProcess, settings: EngineSettings) -> tuple[list, float]:
    """Both subtasks' results and the wall time, the two engines running at once."""
    provider = OpenAICompatProvider(
        endpoint=sim.base_url, model="m", max_tokens=16, retry_backoff_base_interval="50ms"
    )
    results: list[list] = [[] for _ in range(SUBTASKS)]

    def subtask(index: int) -> None:
        with BlockingEngine(provider, settings, subtasks=SUBTASKS) as engine:
            rows = [f"quota row {index}-{i}" for i in range(ROWS_PER_SUBTASK)]
            results[index] = engine.run_batch(rows)

    threads = [threading.Thread(target=subtask, args=(i,)) for i in range(SUBTASKS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return [r for part in results for r in part], time.monotonic() - started


@pytest.fixture
def quota_sim():
    scale = WINDOW_S / 60.0
    config = SimulatorConfig(
        latency_ms=20,
        quota_rpm=int(QUOTA_RPM * scale),
        quota_tpm=int(QUOTA_TPM * scale),
        quota_window_s=WINDOW_S,
        quota_default_max_tokens=16,
    )
    with SimulatorProcess(config) as sim:
        yield sim


def _rate_limited(stats: dict) -> int:
    return int(stats.get("rate_limited_requests", 0)) + int(stats.get("rate_limited_tokens", 0))


def test_two_subtasks_stay_within_the_quota_and_keep_it_busy(quota_sim):
    settings = EngineSettings(max_concurrency=64, requests_per_minute=QUOTA_RPM, tokens_per_minute=QUOTA_TPM)
    results, wall_s = run_job(quota_sim, settings)
    stats = quota_sim.stats()
    assert len(results) == SUBTASKS * ROWS_PER_SUBTASK and all(r.ok for r in results)
    requests = int(stats["requests_total"])
    assert _rate_limited(stats) <= 0.02 * requests, stats
    # The engines' buckets start with a second's worth saved; after that the quota's rate rules.
    rows_per_s = len(results) / wall_s
    assert rows_per_s >= 0.9 * QUOTA_RPM / 60, (rows_per_s, wall_s)


def test_without_limits_and_calibration_the_quota_is_hit_again_and_again(quota_sim):
    """The control: the same job with the limits and the headers' calibration turned off."""
    control = EngineSettings(max_concurrency=64, rate_limit_headers=False)
    results, _ = run_job(quota_sim, control)
    stats = quota_sim.stats()
    assert all(r.ok for r in results)  # the pause on each 429 still saves every row
    assert _rate_limited(stats) > 0.05 * int(stats["requests_total"]), stats

"""Flink settings that suit LLM calls, applied by ``register_functions`` and the sample jobs.

Pandas UDFs see rows in Arrow batches, and a batch waits for its slowest row: a batch of
``100 x max_concurrency`` rows keeps the endpoint busy and dilutes that wait (measured with
``flink-llm bench``'s tail cases; ``docs/performance.md``). The bundle size caps the batch size,
so both move together; the bundle time (1 s) still flushes partial batches, so a slow stream is
not delayed. The price is latency under saturation: a full batch takes about 100 x L to answer.
Async paths: no per-record operator timer (our engine enforces per-request and per-row
deadlines), and enough operations in flight.
"""

from __future__ import annotations

from pyflink.table import TableEnvironment

ROWS_PER_SLOT = 100
# The worker holds the next Arrow batch while one finishes (bundle ends are 0.3-0.6 s gaps);
# a checkpoint waits for the bundle, so no more than two batches.
BATCHES_PER_BUNDLE = 2
# Rows in Flink's async queue per request slot: ordered output keeps flowing behind a slow row,
# while the engine's request slots still bound requests at max_concurrency.
ASYNC_SLOTS_PER_REQUEST = 16
MIN_BATCH = 1_000
MAX_BATCH = 30_000


def pandas_batch_size(max_concurrency: int) -> int:
    """Arrow batch size that keeps ``max_concurrency`` requests busy through a batch."""
    return max(MIN_BATCH, min(MAX_BATCH, ROWS_PER_SLOT * max_concurrency))


def recommended_settings(max_concurrency: int = 64) -> dict[str, str]:
    """Flink configuration for LLM UDFs with ``max_concurrency`` requests per subtask."""
    batch = pandas_batch_size(max_concurrency)
    return {
        "python.fn-execution.arrow.batch.size": str(batch),
        "python.fn-execution.bundle.size": str(BATCHES_PER_BUNDLE * batch),
        "python.fn-execution.bundle.time": "1000",
        # async SQL: Flink's default of 10 operations in flight caps throughput at 10/latency
        "table.exec.async-scalar.max-concurrent-operations": str(ASYNC_SLOTS_PER_REQUEST * max_concurrency),
        "table.exec.async-scalar.buffer-capacity": str(ASYNC_SLOTS_PER_REQUEST * max_concurrency),
        # timeout 0 = no threading.Timer per record; Flink requires NO_RETRY with it
        "table.exec.async-scalar.timeout": "0 ms",
        "table.exec.async-scalar.retry-strategy": "NO_RETRY",
    }


def apply_recommended_settings(
    table_env: TableEnvironment, max_concurrency: int = 64, *, override: bool = False
) -> dict[str, str]:
    """Set ``recommended_settings`` on a TableEnvironment where the user has not set them.

    Returns what was applied. With ``override`` the user's values are replaced too.
    """
    config = table_env.get_config()
    applied = {}
    for key, value in recommended_settings(max_concurrency).items():
        if override or config.get(key, None) is None:
            config.set(key, value)
            applied[key] = value
    return applied

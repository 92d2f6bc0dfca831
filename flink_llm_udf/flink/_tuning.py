"""Flink settings that suit LLM calls: what they are, where they are applied, what stalls.

Every Python operator in Flink works in bundles, and a bundle's end is a barrier on both sides:
the JVM blocks until the Python worker has answered every row of the bundle, and only then hands
the bundle's results downstream (``docs/operations.md``, "Why bundles matter"). So:

- a bundle must hold many more rows than the requests in flight, or the endpoint idles while
  each bundle drains: ``bundle.size`` is ``2 x 100 x max_concurrency`` (Flink's default, 1,000
  rows, drains every 1.6 s at C = 64 and L = 100 ms);
- a quiet stream's rows wait for the bundle timer: ``bundle.time`` of 50 ms instead of Flink's
  1 s (whose timer fires a bundle only every other second) puts a row's answer about L + 0.2 s
  after it arrived;
- a Pandas UDF's Arrow batch (``100 x max_concurrency`` rows) keeps the slots busy and dilutes
  the wait for a batch's slowest row;
- async SQL needs more operations in flight than Flink's 10, no per-record timer (timeout 0,
  which Flink allows only with NO_RETRY; our engine bounds every request and row).

The settings are fixed when the job graph is built; a function object cannot change them, so
``register_functions``, ``apply_llm`` and ``flink-llm sql`` apply them where the user has not,
and :func:`stall_warnings` says what a given configuration will cost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import TableEnvironment

from .._durations import parse_duration

logger = logging.getLogger(__name__)

ROWS_PER_SLOT = 100
# The worker holds the next Arrow batch while one finishes; a checkpoint waits for the bundle,
# so no more than two batches.
BATCHES_PER_BUNDLE = 2
# Rows in Flink's async queue per request slot: ordered output keeps flowing behind a slow row,
# while the engine's request slots still bound requests at max_concurrency.
ASYNC_SLOTS_PER_REQUEST = 16
MIN_BATCH = 1_000
MAX_BATCH = 30_000
BUNDLE_TIME_MS = 50

BUNDLE_SIZE = "python.fn-execution.bundle.size"
BUNDLE_TIME = "python.fn-execution.bundle.time"
ARROW_BATCH_SIZE = "python.fn-execution.arrow.batch.size"
ASYNC_OPERATIONS = "table.exec.async-scalar.max-concurrent-operations"
ASYNC_TIMEOUT = "table.exec.async-scalar.timeout"
ASYNC_RETRY = "table.exec.async-scalar.retry-strategy"
#: The keys every Python operator reads (the DataStream path too); the others are Table API/SQL.
BUNDLE_KEYS = (BUNDLE_SIZE, BUNDLE_TIME)

#: Flink 2.3's defaults for the keys above, when a job does not set them.
FLINK_DEFAULTS = {
    BUNDLE_SIZE: "1000",
    BUNDLE_TIME: "1000",
    ARROW_BATCH_SIZE: "1000",
    ASYNC_OPERATIONS: "10",
    ASYNC_TIMEOUT: "3 min",
    ASYNC_RETRY: "FIXED_DELAY",
}


def pandas_batch_size(max_concurrency: int) -> int:
    """Arrow batch size that keeps ``max_concurrency`` requests busy through a batch."""
    return max(MIN_BATCH, min(MAX_BATCH, ROWS_PER_SLOT * max_concurrency))


def recommended_settings(max_concurrency: int = 64) -> dict[str, str]:
    """Flink configuration for LLM UDFs with ``max_concurrency`` requests per subtask."""
    batch = pandas_batch_size(max_concurrency)
    return {
        ARROW_BATCH_SIZE: str(batch),
        BUNDLE_SIZE: str(BATCHES_PER_BUNDLE * batch),
        BUNDLE_TIME: str(BUNDLE_TIME_MS),
        ASYNC_OPERATIONS: str(ASYNC_SLOTS_PER_REQUEST * max_concurrency),
        ASYNC_TIMEOUT: "0 ms",
        ASYNC_RETRY: "NO_RETRY",
    }


def sql_set_statements(max_concurrency: int = 64) -> str:
    """The ``SET`` block a pure-SQL job needs (the SQL client, or any ``.sql`` file)."""
    return "\n".join(
        f"SET '{key}' = '{value}';" for key, value in recommended_settings(max_concurrency).items()
    )


def apply_recommended_settings(
    table_env: TableEnvironment, max_concurrency: int = 64, *, override: bool = False
) -> dict[str, str]:
    """Set ``recommended_settings`` on a TableEnvironment where the user has not set them.

    Returns what was applied. With ``override`` the user's values are replaced too. Logs one
    warning when what the user set is known to stall (:func:`stall_warnings`).
    """
    config = table_env.get_config()
    return _apply(
        lambda key: config.get(key, None), config.set, max_concurrency, override, "the table config"
    )


def apply_to_stream_environment(
    env: StreamExecutionEnvironment, max_concurrency: int = 64, *, override: bool = False
) -> dict[str, str]:
    """Set the bundle settings on a StreamExecutionEnvironment where the user has not set them.

    Every Python DataStream operator of the environment shares its configuration, and Flink
    reads it when the job is executed, so this may run any time before ``execute()``.
    """
    from pyflink.util.java_utils import get_j_env_configuration

    config = get_j_env_configuration(env._j_stream_execution_environment)

    def current(key: str) -> str | None:
        return config.getString(key, None)

    return _apply(current, config.setString, max_concurrency, override, "the environment", keys=BUNDLE_KEYS)


def _apply(
    current: Callable[[str], str | None],
    write: Callable[[str, str], object],
    max_concurrency: int,
    override: bool,
    where: str,
    keys: tuple[str, ...] | None = None,
) -> dict[str, str]:
    wanted = recommended_settings(max_concurrency)
    applied: dict[str, str] = {}
    mine: dict[str, str] = {}
    for key in keys or tuple(wanted):
        value = current(key)
        if override or value is None:
            write(key, wanted[key])
            applied[key] = wanted[key]
        else:
            mine[key] = value
    for warning in stall_warnings(mine, max_concurrency):
        logger.warning("%s (set in %s)", warning, where)
    return applied


def stall_warnings(
    settings: Mapping[str, str | None], max_concurrency: int, *, only_given: bool = False
) -> list[str]:
    """What the given Flink settings will cost an LLM function with ``max_concurrency`` slots.

    A key that is missing or None counts as Flink's default (with ``only_given``: is not
    judged). One message per problem, each naming the key, its value, what it costs and what
    to set.
    """
    if only_given:
        value: dict[str, str | None] = {key: settings.get(key) for key in FLINK_DEFAULTS}
    else:
        value = {key: settings.get(key) or FLINK_DEFAULTS[key] for key in FLINK_DEFAULTS}
    wanted = recommended_settings(max_concurrency)
    found: list[str] = []
    bundle_size, bundle_ms = _int(value[BUNDLE_SIZE]), _millis(value[BUNDLE_TIME])
    if bundle_size is not None and bundle_size < ASYNC_SLOTS_PER_REQUEST * max_concurrency:
        found.append(
            f"{BUNDLE_SIZE}={bundle_size} drains the {max_concurrency} request slots at every bundle "
            f"end (each bundle waits for its last row); set it to {wanted[BUNDLE_SIZE]}"
        )
    if bundle_ms is not None and bundle_ms >= 500:
        found.append(
            f"{BUNDLE_TIME}={value[BUNDLE_TIME]} makes a quiet stream's rows wait up to about "
            f"{2 * bundle_ms / 1000:g} s for their bundle; set it to {wanted[BUNDLE_TIME]}"
        )
    batch = _int(value[ARROW_BATCH_SIZE])
    if batch is not None and bundle_size is not None and min(batch, bundle_size) < 16 * max_concurrency:
        found.append(
            f"Pandas UDFs get Arrow batches of {min(batch, bundle_size)} rows ({ARROW_BATCH_SIZE}, "
            f"capped by {BUNDLE_SIZE}), and each batch waits for its slowest row; set "
            f"{ARROW_BATCH_SIZE} to {wanted[ARROW_BATCH_SIZE]}"
        )
    operations = _int(value[ASYNC_OPERATIONS])
    if operations is not None and operations < max_concurrency:
        found.append(
            f"{ASYNC_OPERATIONS}={operations} caps async SQL functions below their {max_concurrency} "
            f"request slots; set it to {wanted[ASYNC_OPERATIONS]}"
        )
    timeout_ms = _millis(value[ASYNC_TIMEOUT])
    if timeout_ms:
        found.append(
            f"{ASYNC_TIMEOUT}={value[ASYNC_TIMEOUT]} starts a timer thread per async SQL row and fails "
            f"the job when it fires; set it to '0 ms' with {ASYNC_RETRY}=NO_RETRY (the engine bounds "
            "every request and row)"
        )
    return found


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        return None


def _millis(text: str | None) -> float | None:
    """Flink durations: a bare number is milliseconds; ``1 s``, ``500 ms`` and the like too."""
    if text is None:
        return None
    raw = str(text).strip()
    if raw.isdigit():
        return float(raw)
    try:
        return parse_duration(raw) * 1000
    except ValueError:
        return None

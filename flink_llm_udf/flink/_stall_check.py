"""One warning, where a function runs, when Flink's settings will starve it of rows.

The settings that decide how many rows reach an async function (the async SQL operation's
``max-concurrent-operations`` and timeout, the DataStream operator's queue capacity) are fixed
in the job graph and invisible to the function itself; PyFlink's operation object holds them.
After PyFlink's ``open`` of an async operation, this check compares them with the engine's
``max_concurrency`` and logs what to set (``_tuning.stall_warnings``). Installed idempotently
from the functions' ``open``, like the other worker patches here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ._tuning import ASYNC_OPERATIONS, ASYNC_SLOTS_PER_REQUEST, ASYNC_TIMEOUT, stall_warnings

logger = logging.getLogger(__name__)

_MARKER = "_flink_llm_stall_check"


def concurrency_of(functions: Iterable[Any]) -> int | None:
    """The largest ``max_concurrency`` among our functions that are open (None: none of ours)."""
    found = [
        engine.settings.max_concurrency
        for function in functions
        if (engine := getattr(function, "_engine", None)) is not None and hasattr(engine, "settings")
    ]
    return max(found) if found else None


def warn_if_starved(where: str, concurrency: int | None, operations: int, timeout_s: float) -> list[str]:
    """Log (and return) the warnings for an async operation with these limits."""
    if concurrency is None:
        return []
    settings = {ASYNC_OPERATIONS: str(operations), ASYNC_TIMEOUT: f"{int(timeout_s * 1000)} ms"}
    warnings = stall_warnings(settings, concurrency, only_given=True)
    for warning in warnings:
        logger.warning("%s: %s", where, warning)
    return warnings


def install_stall_check() -> bool:
    """Wrap the async operations' ``open`` with the check; True when installed. Idempotent."""
    try:
        from pyflink.fn_execution.datastream.process.async_function import operation as datastream
        from pyflink.fn_execution.table.async_function import operations as table
    except ImportError:  # another PyFlink layout: no check, nothing breaks
        return False
    _wrap_open(table.AsyncScalarFunctionOperation, _check_sql_operation)
    _wrap_open(datastream.AsyncOperation, _check_datastream_operation)
    return True


def _wrap_open(operation: Any, check: Callable[[Any], object]) -> None:
    if getattr(operation.open, _MARKER, False):
        return
    original = operation.open

    @functools.wraps(original)
    def open(self: Any) -> None:
        original(self)
        try:
            check(self)
        except Exception as exc:  # a diagnostic must never fail the job
            logger.debug("stall check skipped: %s", exc)

    setattr(open, _MARKER, True)
    operation.open = open


def _check_sql_operation(operation: Any) -> None:
    warn_if_starved(
        "async SQL function",
        concurrency_of(operation.user_defined_funcs),
        operation._capacity,
        operation._timeout,
    )


def _check_datastream_operation(operation: Any) -> None:
    function = getattr(operation.async_invoke_func, "__self__", None)  # a bound async_invoke
    concurrency = concurrency_of([function]) if function is not None else None
    capacity = operation._queue._capacity
    if concurrency is not None and capacity < concurrency:
        logger.warning(
            "LLMAsyncFunction: the async operator's capacity %d is below the engine's %d request slots; "
            "use apply_llm (capacity %d x max_concurrency) or pass a larger capacity",
            capacity,
            concurrency,
            ASYNC_SLOTS_PER_REQUEST,
        )

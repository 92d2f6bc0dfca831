"""Workaround for FLINK-39532: Python async scalar functions read other rows' inputs in 2.3.0.

``AsyncScalarFunctionOperation.process_element`` hands its coroutine the coder's *reused* row
object; by the time the coroutine reads it, it may hold a later row (500 distinct inputs gave
222 distinct prompts at the server). The upstream fix copies the row before scheduling; this
patch does the same in the worker, only on affected versions.

``FLINK_LLM_ASYNC_ROW_COPY`` = ``auto`` (default: patch affected versions), ``on`` or ``off``.
"""

from __future__ import annotations

import functools
import logging
import os

logger = logging.getLogger(__name__)

AFFECTED_VERSIONS = frozenset({"2.3.0"})
_MARKER = "_flink_llm_row_copy"


def needs_row_copy(version: str, mode: str = "auto") -> bool:
    """Whether the worker must copy input rows for this PyFlink ``version``."""
    mode = mode.strip().lower()
    if mode in ("on", "true", "1"):
        return True
    if mode in ("off", "false", "0"):
        return False
    return version in AFFECTED_VERSIONS


def _snapshot(value):
    if isinstance(value, list):
        return list(value)
    copier = getattr(value, "copy", None)
    return copier() if callable(copier) else value


def install_row_copy_workaround() -> bool:
    """Patch the async scalar operation to copy each input row; True when active. Idempotent."""
    from pyflink.version import __version__

    if not needs_row_copy(__version__, os.environ.get("FLINK_LLM_ASYNC_ROW_COPY", "auto")):
        return False
    from pyflink.fn_execution.table.async_function import operations

    operation = operations.AsyncScalarFunctionOperation
    if getattr(operation.process_element, _MARKER, False):
        return True
    original = operation.process_element

    @functools.wraps(original)  # keeps the unpatched method reachable as __wrapped__
    def process_element(self, value):
        return original(self, _snapshot(value))

    setattr(process_element, _MARKER, True)
    operation.process_element = process_element
    logger.info("FLINK-39532 workaround active for PyFlink %s: async scalar inputs are copied", __version__)
    return True

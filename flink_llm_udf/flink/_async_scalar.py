"""``ai_complete_async``: an AsyncScalarFunction, so streaming SQL has no batch barrier.

Rows are in flight independently (up to ``table.exec.async-scalar.max-concurrent-operations``);
the engine's request slots bound requests at ``max_concurrency``. Installs the FLINK-39532
workaround on affected PyFlink versions before the first row.
"""

from __future__ import annotations

from typing import Any

from pyflink.table import DataTypes
from pyflink.table.udf import AsyncScalarFunction, FunctionContext, UserDefinedScalarFunctionWrapper, udf

from .._engine import LLMEngine
from .._engine_settings import EngineSettings
from .._errors import RowFailedError
from .._provider import TASK_EMBEDDINGS, OpenAICompatProvider
from .._results import FAILED
from ..job_parameters import DEFAULT_PREFIX
from ._async_row_copy import install_row_copy_workaround
from ._batched_submit import install_batched_submit
from ._function_setup import PicklesWithoutEngine, Prefixes, resolve_configuration, subtasks_of
from ._gauges import FlinkMetrics


class LLMAsyncScalarFunction(PicklesWithoutEngine, AsyncScalarFunction):
    """Async scalar function STRING [, model STRING] -> STRING (or ARRAY<FLOAT> for embeddings).

    Under IGNORE a failed row yields NULL; under FAILOVER it raises ``RowFailedError`` and the job
    fails over. Never raises for a row otherwise (Flink fails the job on any exception).
    """

    def __init__(
        self,
        provider: OpenAICompatProvider | None = None,
        settings: EngineSettings | None = None,
        *,
        prefix: Prefixes = DEFAULT_PREFIX,
        task: str | None = None,
    ) -> None:
        self._provider = provider
        self._settings = settings
        self._prefix = prefix
        self._task = task
        self._engine: LLMEngine | None = None
        self.metrics: FlinkMetrics | None = None
        self._rows = 0

    def open(self, function_context: FunctionContext) -> None:
        install_row_copy_workaround()
        install_batched_submit()
        provider, settings = resolve_configuration(
            function_context, self._provider, self._settings, self._prefix, self._task
        )
        self.metrics = FlinkMetrics(function_context.get_metric_group())
        self._engine = LLMEngine(
            provider, settings, observer=self.metrics, subtasks=subtasks_of(function_context)
        )

    async def eval(self, text: str | None, model: str | None = None) -> Any:
        """One row's answer (or embedding); NULL for NULL input or an ignored failure."""
        if self._engine is None:
            raise RuntimeError("the function is not open: Flink calls open() before eval()")
        self._rows += 1
        result = await self._engine.call_row(text, model=model)
        if result.outcome == FAILED:
            raise RowFailedError(
                self._rows - 1,
                result.error or "unknown error",
                attempts=result.attempts,
                status=result.status,
            )
        return result.value

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close_from_outside()
            self._engine = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        install_row_copy_workaround()  # as early as the worker can: before any operation runs


def ai_complete_async_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """An async scalar UDF STRING [, model STRING] -> STRING (chat)."""
    return udf(
        LLMAsyncScalarFunction(provider, settings, prefix=prefix), result_type=DataTypes.STRING(), name=name
    )


def ai_embed_async_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """An async scalar UDF STRING [, model STRING] -> ARRAY<FLOAT> (embeddings)."""
    return udf(
        LLMAsyncScalarFunction(provider, settings, prefix=prefix, task=TASK_EMBEDDINGS),
        result_type=DataTypes.ARRAY(DataTypes.FLOAT()),
        name=name,
    )

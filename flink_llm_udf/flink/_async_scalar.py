"""``ai_complete_async``: an AsyncScalarFunction, so streaming SQL has no batch barrier.

Rows are in flight independently (up to ``table.exec.async-scalar.max-concurrent-operations``);
the engine's request slots bound requests at ``max_concurrency``. Installs the FLINK-39532
workaround on affected PyFlink versions before the first row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pyflink.table import DataTypes
from pyflink.table.types import DataType
from pyflink.table.udf import AsyncScalarFunction, FunctionContext, UserDefinedScalarFunctionWrapper, udf

from .._call_plan import OutputSpec, output_spec
from .._engine import LLMEngine
from .._engine_settings import EngineSettings
from .._errors import InvalidOptionError, RowFailedError
from .._provider import TASK_EMBEDDINGS, OpenAICompatProvider
from .._results import FAILED, NULL_INPUT, RowResult
from ..job_parameters import DEFAULT_PREFIX
from ._async_row_copy import install_row_copy_workaround
from ._batched_submit import install_batched_submit
from ._call_arguments import CallArguments, SecondArgument
from ._function_setup import PicklesWithoutEngine, Prefixes, resolve_configuration, subtasks_of
from ._gauges import FlinkMetrics
from ._structured_types import ResultType


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
        second: SecondArgument = "model",
        labels: str | Sequence[str] | None = None,
        result_type: ResultType | None = None,
        output: str = "value",
    ) -> None:
        self._provider = provider
        self._settings = settings
        self._prefix = prefix
        self._task = task
        self._result_type = result_type
        self._output = output
        default: OutputSpec | None = None
        if result_type is not None:  # a reply that cannot become that ROW is asked again
            default = OutputSpec.of(result_type.schema, check=result_type.value)
        else:
            default = None if labels is None else output_spec(labels=labels)
        self._arguments = CallArguments(second, default)
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

    async def eval(self, text: str | None, second: Any = None, options: Any = None) -> Any:
        """One row's answer (or embedding, JSON, label or typed ROW); NULL for NULL input or an
        ignored failure. ``second`` is the model (or schema, or labels), ``options`` the
        per-call options."""
        engine = self._engine
        if engine is None:
            raise RuntimeError("the function is not open: Flink calls open() before eval()")
        self._rows += 1
        call = self._arguments.row(second, options)
        if text is None:
            result = RowResult(None, NULL_INPUT)
            engine.observer.row_done(result)
        elif call.problem is not None:
            result = engine.unsent(call.problem)
            engine.observer.row_done(result)
        else:
            result = await engine.call_row(text, model=call.model, options=call.options, output=call.output)
        if result.outcome == FAILED:
            raise RowFailedError(
                self._rows - 1,
                result.error or "unknown error",
                attempts=result.attempts,
                status=result.status,
            )
        if result.value is None:
            return None
        if self._result_type is not None:
            try:
                return self._result_type.value(result.value)
            except (ValueError, TypeError, ArithmeticError, KeyError) as exc:  # e.g. a stale cache entry
                if engine.spec.retry.final_action == "FAILOVER":
                    error = f"the answer does not fit the result type: {exc}"
                    raise RowFailedError(
                        self._rows - 1, error, attempts=result.attempts, status=result.status
                    ) from None
                return None
        if self._output == "json":
            return json.dumps(result.value, ensure_ascii=False, separators=(",", ":"))
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


def ai_extract_udf(
    provider: OpenAICompatProvider | None = None,
    result_type: DataType | str | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """An async scalar UDF ``(text [, model [, options]]) -> result_type``: typed structured output.

    ``result_type`` is a ROW (``DataTypes.ROW([...])`` or ``'ROW<sentiment STRING, score
    DOUBLE>'``; nested rows, arrays, numbers, booleans, strings). Its JSON schema is sent as
    ``response_format`` (``json_schema``, strict; ``json_object`` with the schema in the prompt
    where the server has no ``json_schema``); each reply is validated and returned as a ROW. A
    reply that does not validate, or does not fit the ROW (a date that is no date, 300 in a
    TINYINT), is asked again (``invalid-output-retries``), then fails like any row: NULL under
    IGNORE (``LLMAsyncFunction(result_type=…)`` in a DataStream carries the error), a
    ``RowFailedError`` under FAILOVER.
    """
    if result_type is None:
        raise InvalidOptionError("ai_extract_udf needs result_type: a ROW DataType or 'ROW<…>' type string")
    typed = ResultType(result_type)
    return udf(
        LLMAsyncScalarFunction(provider, settings, prefix=prefix, result_type=typed),
        result_type=typed.data_type,
        name=name,
    )


def ai_extract_async_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """An async scalar UDF ``(text, schema [, options]) -> STRING``: validated JSON (SQL ``ai_extract``)."""
    return udf(
        LLMAsyncScalarFunction(provider, settings, prefix=prefix, second="schema", output="json"),
        result_type=DataTypes.STRING(),
        name=name,
    )


def ai_classify_async_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    labels: str | Sequence[str] | None = None,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """An async scalar UDF ``(text [, labels [, options]]) -> STRING``: exactly one of the labels."""
    return udf(
        LLMAsyncScalarFunction(provider, settings, prefix=prefix, second="labels", labels=labels),
        result_type=DataTypes.STRING(),
        name=name,
    )

"""Vectorized (Pandas) scalar UDFs: each Arrow batch fans out through the engine.

``ai_complete_udf(provider)`` is STRING -> STRING, ``ai_embed_udf(provider)`` is
STRING -> ARRAY<FLOAT>, ``ai_complete_result_udf(provider)`` returns a ROW with the value and
the row's outcome for dead-letter routing. An optional second argument overrides the model per
call (``ai_complete(review, 'gpt-4o-mini')``); a literal arrives as a scalar and is broadcast.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pyflink.table import DataTypes
from pyflink.table.types import DataType
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedScalarFunctionWrapper, udf

from .._batch import BlockingEngine
from .._call_plan import output_spec
from .._engine_settings import EngineSettings
from .._provider import TASK_EMBEDDINGS, OpenAICompatProvider
from .._results import RowResult
from ..job_parameters import DEFAULT_PREFIX
from ._call_arguments import CallArguments, SecondArgument, run_calls
from ._function_setup import PicklesWithoutEngine, Prefixes, resolve_configuration, subtasks_of
from ._gauges import FlinkMetrics
from ._tuning import ARROW_BATCH_SIZE, BUNDLE_SIZE, FLINK_DEFAULTS, pandas_batch_size

logger = logging.getLogger(__name__)

RESULT_FIELDS = (
    "value",
    "error",
    "status",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cached",
    "cost",
)


def result_row_type() -> DataType:
    """``ai_complete_result``'s type: ROW<value STRING, error STRING, status INT, attempts INT,
    prompt_tokens BIGINT, completion_tokens BIGINT, cached BOOLEAN, cost DOUBLE>."""
    return DataTypes.ROW(
        [
            DataTypes.FIELD("value", DataTypes.STRING()),
            DataTypes.FIELD("error", DataTypes.STRING()),
            DataTypes.FIELD("status", DataTypes.INT()),
            DataTypes.FIELD("attempts", DataTypes.INT()),
            DataTypes.FIELD("prompt_tokens", DataTypes.BIGINT()),
            DataTypes.FIELD("completion_tokens", DataTypes.BIGINT()),
            DataTypes.FIELD("cached", DataTypes.BOOLEAN()),
            DataTypes.FIELD("cost", DataTypes.DOUBLE()),
        ]
    )


def _as_list(column: Any, length: int) -> list[Any]:
    """A Pandas column (or a broadcast literal) as a list with None for NULL."""
    if column is None:
        return [None] * length
    if not hasattr(column, "tolist"):
        return [column] * length  # a literal argument arrives as a scalar
    return [None if v is None or (isinstance(v, float) and v != v) else v for v in column.tolist()]  # NaN


class LLMPandasFunction(PicklesWithoutEngine, ScalarFunction):
    """The Pandas scalar function behind ``ai_complete_udf`` / ``ai_embed_udf`` / ``..._result_udf``.

    ``output`` is ``"value"`` (the answer, NULL on an ignored failure) or ``"result"`` (a ROW
    with the outcome). The engine (its HTTP session and loop thread) is created at ``open`` and
    reused for every batch of the subtask.
    """

    def __init__(
        self,
        provider: OpenAICompatProvider | None = None,
        settings: EngineSettings | None = None,
        *,
        output: str = "value",
        prefix: Prefixes = DEFAULT_PREFIX,
        task: str | None = None,
        second: SecondArgument = "model",
        labels: str | Sequence[str] | None = None,
    ) -> None:
        self._provider = provider
        self._settings = settings
        self._output = output
        self._prefix = prefix
        self._task = task
        self._arguments = CallArguments(second, None if labels is None else output_spec(labels=labels))
        self._engine: BlockingEngine | None = None
        self.metrics: FlinkMetrics | None = None
        self._small_batches = 0

    def open(self, function_context: FunctionContext) -> None:
        provider, settings = resolve_configuration(
            function_context, self._provider, self._settings, self._prefix, self._task
        )
        self.metrics = FlinkMetrics(function_context.get_metric_group())
        self._engine = BlockingEngine(
            provider, settings, observer=self.metrics, subtasks=subtasks_of(function_context)
        )

    def eval(self, texts: Any, second: Any = None, options: Any = None) -> Any:
        """One Arrow batch: a Series of texts, then per row (a Series, or a literal) the model
        (or schema, or labels) and the per-call options -> a Series/DataFrame."""
        import pandas as pd

        if self._engine is None:
            raise RuntimeError("the function is not open: Flink calls open() before eval()")
        inputs = _as_list(texts, len(texts))
        self._watch_batch_size(len(inputs))
        if second is None and options is None and self._arguments.plain:
            results = self._engine.run_batch(inputs, output=self._arguments.default_output)
        else:
            seconds, option_list = _as_list(second, len(inputs)), _as_list(options, len(inputs))
            calls = [self._arguments.row(s, o) for s, o in zip(seconds, option_list, strict=True)]
            results = run_calls(self._engine, inputs, calls)
        if self._output == "result":
            return pd.DataFrame([_result_tuple(r) for r in results], columns=list(RESULT_FIELDS))
        if self._output == "json":
            return pd.Series(
                [None if r.value is None else _json_text(r.value) for r in results], dtype=object
            )
        return pd.Series([r.value for r in results], dtype=object)

    def _watch_batch_size(self, rows: int) -> None:
        """Warn once when batches keep coming at Flink's default size, too few for the slots."""
        if self._engine is None or self._small_batches < 0:
            return
        concurrency = self._engine.engine.settings.max_concurrency
        if rows != int(FLINK_DEFAULTS[ARROW_BATCH_SIZE]) or rows >= 16 * concurrency:
            return
        self._small_batches += 1
        if self._small_batches == 3:
            self._small_batches = -1
            logger.warning(
                "Pandas UDF: Arrow batches of %d rows (Flink's default %s) keep fewer rows than %d "
                "request slots can use well, and each batch waits for its slowest row; set %s to %s "
                "and %s to %s (register_functions and flink-llm sql do)",
                rows,
                ARROW_BATCH_SIZE,
                concurrency,
                ARROW_BATCH_SIZE,
                pandas_batch_size(concurrency),
                BUNDLE_SIZE,
                2 * pandas_batch_size(concurrency),
            )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def _result_tuple(result: RowResult) -> tuple[Any, ...]:
    usage = result.usage
    return (
        result.value,
        result.error,
        result.status,
        result.attempts,
        None if usage is None else usage.prompt_tokens,
        None if usage is None else usage.completion_tokens,
        result.cached,
        result.cost,
    )


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def ai_complete_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """A Pandas UDF STRING [, model STRING] -> STRING answering each row with the chat model.

    ``provider=None`` reads options from the job parameters under ``prefix`` at open.
    """
    return udf(
        LLMPandasFunction(provider, settings, prefix=prefix),
        result_type=DataTypes.STRING(),
        func_type="pandas",
        name=name,
    )


def ai_complete_result_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """Like ``ai_complete_udf`` but returns ``result_row_type()``: value plus the row's outcome.

    A failed row under IGNORE has a NULL value and its error, HTTP status and attempts filled in,
    ready to route to a dead-letter table.
    """
    return udf(
        LLMPandasFunction(provider, settings, output="result", prefix=prefix),
        result_type=result_row_type(),
        func_type="pandas",
        name=name,
    )


def ai_embed_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """A Pandas UDF STRING [, model STRING] -> ARRAY<FLOAT> with the row's embedding."""
    return udf(
        LLMPandasFunction(provider, settings, prefix=prefix, task=TASK_EMBEDDINGS),
        result_type=DataTypes.ARRAY(DataTypes.FLOAT()),
        func_type="pandas",
        name=name,
    )


def ai_extract_json_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """A Pandas UDF ``(text, schema [, options]) -> STRING``: the reply as JSON validated against
    ``schema`` (a Flink ``ROW<…>`` type string or a JSON schema), for ``JSON_VALUE`` / ``JSON_QUERY``."""
    return udf(
        LLMPandasFunction(provider, settings, output="json", prefix=prefix, second="schema"),
        result_type=DataTypes.STRING(),
        func_type="pandas",
        name=name,
    )


def ai_classify_udf(
    provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    *,
    labels: str | Sequence[str] | None = None,
    prefix: Prefixes = DEFAULT_PREFIX,
    name: str | None = None,
) -> UserDefinedScalarFunctionWrapper:
    """A Pandas UDF ``(text [, labels [, options]]) -> STRING``: exactly one of the labels.

    Labels are a comma-separated string (one CSV record) or an array, given here or per call;
    the request asks for them as an enum, and any other answer is an invalid reply.
    """
    return udf(
        LLMPandasFunction(provider, settings, prefix=prefix, second="labels", labels=labels),
        result_type=DataTypes.STRING(),
        func_type="pandas",
        name=name,
    )

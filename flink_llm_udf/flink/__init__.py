"""The Flink entry points (the only package that imports PyFlink).

- Table API / SQL, vectorized: ``ai_complete_udf``, ``ai_complete_result_udf``, ``ai_embed_udf``,
  ``ai_extract_json_udf`` (validated JSON), ``ai_classify_udf`` (one of the labels)
- SQL, async (no batch barrier): ``ai_complete_async_udf``, ``ai_embed_async_udf``,
  ``ai_extract_udf`` (typed ROW output), ``ai_extract_async_udf``, ``ai_classify_async_udf``
- DataStream: ``LLMAsyncFunction`` with ``apply_llm`` (or ``AsyncDataStream.*_wait``)
- ``register_functions(table_env, provider)`` and ``recommended_settings()``; the same settings
  for a StreamExecutionEnvironment (``apply_to_stream_environment``, which ``apply_llm`` calls) and
  as a SQL ``SET`` block (``sql_set_statements``); ``stall_warnings`` says what a configuration
  will cost
"""

from ._async_function import OUTPUT_FIELDS, LLMAsyncFunction, apply_llm, output_type
from ._async_scalar import (
    LLMAsyncScalarFunction,
    ai_classify_async_udf,
    ai_complete_async_udf,
    ai_embed_async_udf,
    ai_extract_async_udf,
    ai_extract_udf,
)
from ._gauges import METRIC_GROUP, FlinkMetrics
from ._pandas_udf import (
    RESULT_FIELDS,
    LLMPandasFunction,
    ai_classify_udf,
    ai_complete_result_udf,
    ai_complete_udf,
    ai_embed_udf,
    ai_extract_json_udf,
    result_row_type,
)
from ._register import register_functions
from ._structured_types import ResultType
from ._tuning import (
    apply_recommended_settings,
    apply_to_stream_environment,
    recommended_settings,
    sql_set_statements,
    stall_warnings,
)

__all__ = [
    "METRIC_GROUP",
    "OUTPUT_FIELDS",
    "RESULT_FIELDS",
    "FlinkMetrics",
    "LLMAsyncFunction",
    "LLMAsyncScalarFunction",
    "LLMPandasFunction",
    "ResultType",
    "ai_classify_async_udf",
    "ai_classify_udf",
    "ai_complete_async_udf",
    "ai_complete_result_udf",
    "ai_complete_udf",
    "ai_embed_async_udf",
    "ai_embed_udf",
    "ai_extract_async_udf",
    "ai_extract_json_udf",
    "ai_extract_udf",
    "apply_llm",
    "apply_recommended_settings",
    "apply_to_stream_environment",
    "output_type",
    "recommended_settings",
    "register_functions",
    "result_row_type",
    "sql_set_statements",
    "stall_warnings",
]

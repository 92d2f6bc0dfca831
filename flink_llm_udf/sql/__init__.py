"""Functions for pure SQL, configured by job parameters under ``ai.`` (embeddings: ``ai.embed.``).

    CREATE TEMPORARY FUNCTION ai_complete AS 'flink_llm_udf.sql.ai_complete' LANGUAGE PYTHON;
    SET 'pipeline.global-job-parameters' = 'ai.endpoint:"http://127.0.0.1:8000/v1",ai.model:m';
    SELECT ai_complete(review) FROM reviews;

Every function takes optional trailing arguments: ``ai_complete(text [, model [, options]])``,
where ``options`` is a JSON object (``JSON_OBJECT('temperature' VALUE 0)``) of per-call options.
``ai_extract(text, schema [, options])`` answers with JSON validated against ``schema`` (a Flink
``ROW<…>`` type string or a JSON schema) and ``ai_classify(text, labels [, options])`` with
exactly one of the labels (a comma-separated string or an ARRAY).

Several differently configured functions in one job: the modules ``complete``, ``extract``,
``classify``, ``embed`` (and their ``_async`` forms, and ``complete_result``) make a function
for any name, configured by the job parameters under ``ai.<name>.`` and then ``ai.``:

    CREATE TEMPORARY FUNCTION classify AS 'flink_llm_udf.sql.classify.classify' LANGUAGE PYTHON;
    CREATE TEMPORARY FUNCTION summarize AS 'flink_llm_udf.sql.complete.summarize' LANGUAGE PYTHON;
    SET 'pipeline.global-job-parameters' = 'ai.classify.temperature:0,ai.summarize.model:big';

A typed ROW from pure SQL: ``'flink_llm_udf.sql.typed.ROW<sentiment STRING, score DOUBLE>'`` is
an ``ai_extract`` whose result is that ROW (``flink_llm_udf.sql.typed``).

Flink splits that value at ``,`` and then at ``:``, so a value holding either (every URL, a
``stop`` list, ``extra-body`` JSON) must be quoted: ``"..."`` as above, or see
``flink_llm_udf.job_parameters.job_parameters_value``, which renders a dict correctly.

``flink-llm sql`` also accepts ``SET 'ai.model' = 'm';`` and turns such keys into job parameters.
Endpoint and key fall back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``OPENAI_API_KEY_FILE``.
"""

from __future__ import annotations

from ..flink import _async_scalar, _pandas_udf
from ..flink._register import EMBED_PREFIXES as _EMBED_PREFIXES

ai_complete = _pandas_udf.ai_complete_udf(name="ai_complete")
ai_complete_result = _pandas_udf.ai_complete_result_udf(name="ai_complete_result")
ai_complete_async = _async_scalar.ai_complete_async_udf(name="ai_complete_async")
ai_embed = _pandas_udf.ai_embed_udf(prefix=_EMBED_PREFIXES, name="ai_embed")
ai_embed_async = _async_scalar.ai_embed_async_udf(prefix=_EMBED_PREFIXES, name="ai_embed_async")
ai_extract = _pandas_udf.ai_extract_json_udf(name="ai_extract")
ai_extract_async = _async_scalar.ai_extract_async_udf(name="ai_extract_async")
ai_classify = _pandas_udf.ai_classify_udf(name="ai_classify")
ai_classify_async = _async_scalar.ai_classify_async_udf(name="ai_classify_async")

__all__ = [
    "ai_classify",
    "ai_classify_async",
    "ai_complete",
    "ai_complete_async",
    "ai_complete_result",
    "ai_embed",
    "ai_embed_async",
    "ai_extract",
    "ai_extract_async",
]

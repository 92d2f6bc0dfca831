"""``'flink_llm_udf.sql.embed_async.<name>'``: an async embeddings function.

Configured by the job parameters under ``ai.<name>.`` (then ``ai.embed.`` and ``ai.``).

    CREATE TEMPORARY FUNCTION my_fn AS 'flink_llm_udf.sql.embed_async.my_fn' LANGUAGE PYTHON;
"""

from ..flink._async_scalar import ai_embed_async_udf
from ._named import named_functions

__getattr__ = named_functions(ai_embed_async_udf, ("ai.embed.",))

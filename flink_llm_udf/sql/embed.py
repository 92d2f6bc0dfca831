"""``'flink_llm_udf.sql.embed.<name>'``: an embeddings function, like ``ai_embed``.

Configured by the job parameters under ``ai.<name>.`` (then ``ai.embed.`` and ``ai.``).

    CREATE TEMPORARY FUNCTION my_fn AS 'flink_llm_udf.sql.embed.my_fn' LANGUAGE PYTHON;
"""

from ..flink._pandas_udf import ai_embed_udf
from ._named import named_functions

__getattr__ = named_functions(ai_embed_udf, ("ai.embed.",))

"""``'flink_llm_udf.sql.complete_async.<name>'``: an async chat function, like ``ai_complete_async``.

Configured by the job parameters under ``ai.<name>.`` (then ``ai.``).

    CREATE TEMPORARY FUNCTION my_fn AS 'flink_llm_udf.sql.complete_async.my_fn' LANGUAGE PYTHON;
"""

from ..flink._async_scalar import ai_complete_async_udf
from ._named import named_functions

__getattr__ = named_functions(ai_complete_async_udf)

"""``'flink_llm_udf.sql.complete.<name>'``: a chat function, like ``ai_complete(text [, model [, options]])``.

Configured by the job parameters under ``ai.<name>.`` (then ``ai.``).

    CREATE TEMPORARY FUNCTION my_fn AS 'flink_llm_udf.sql.complete.my_fn' LANGUAGE PYTHON;
"""

from ..flink._pandas_udf import ai_complete_udf
from ._named import named_functions

__getattr__ = named_functions(ai_complete_udf)

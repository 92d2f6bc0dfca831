"""``'flink_llm_udf.sql.complete_result.<name>'``: ``ai_complete_result`` (answer and outcome as a ROW).

Configured by the job parameters under ``ai.<name>.`` (then ``ai.``).

    CREATE TEMPORARY FUNCTION my_fn AS 'flink_llm_udf.sql.complete_result.my_fn' LANGUAGE PYTHON;
"""

from ..flink._pandas_udf import ai_complete_result_udf
from ._named import named_functions

__getattr__ = named_functions(ai_complete_result_udf)

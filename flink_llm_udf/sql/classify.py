"""``'flink_llm_udf.sql.classify.<name>'``: ``ai_classify(text, labels [, options])``: one of the labels.

Configured by the job parameters under ``ai.<name>.`` (then ``ai.``).

    CREATE TEMPORARY FUNCTION my_fn AS 'flink_llm_udf.sql.classify.my_fn' LANGUAGE PYTHON;
"""

from ..flink._pandas_udf import ai_classify_udf
from ._named import named_functions

__getattr__ = named_functions(ai_classify_udf)

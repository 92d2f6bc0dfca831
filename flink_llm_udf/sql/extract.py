"""``'flink_llm_udf.sql.extract.<name>'``: ``ai_extract(text, schema [, options])``: validated JSON.

Configured by the job parameters under ``ai.<name>.`` (then ``ai.``).

    CREATE TEMPORARY FUNCTION my_fn AS 'flink_llm_udf.sql.extract.my_fn' LANGUAGE PYTHON;
"""

from ..flink._pandas_udf import ai_extract_json_udf
from ._named import named_functions

__getattr__ = named_functions(ai_extract_json_udf)

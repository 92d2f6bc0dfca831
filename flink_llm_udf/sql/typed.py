"""``'flink_llm_udf.sql.typed.<ROW type>'``: ``ai_extract`` returning a typed ROW, from pure SQL.

Flink loads a Python function by importing the module before the last dot and taking the
attribute after it, and passes that attribute name through as written, so the name can be the
result type itself::

    CREATE TEMPORARY FUNCTION extract_review
        AS 'flink_llm_udf.sql.typed.ROW<sentiment STRING, score DOUBLE, tags ARRAY<STRING>>'
        LANGUAGE PYTHON;
    SELECT extract_review(review).sentiment FROM reviews;

It reads the job parameters under ``ai.extract.`` and then ``ai.``; write ``<name>:ROW<…>``
(``'flink_llm_udf.sql.typed.review_fields:ROW<…>'``) to read ``ai.review_fields.`` first. The
type may not contain a ``.`` (Flink would split the name there). Flink's planner reads one level
of a Python function's ROW (``f(x).shop``), not two (``f(x).shop.city`` fails to plan): select
the nested ROW, then its field in an outer query.
"""

from __future__ import annotations

import re
from typing import Any

from ..flink._async_scalar import ai_extract_udf
from ._named import prefixes_for

_NAMED = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(ROW\b.*)", re.IGNORECASE | re.DOTALL)
_made: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    if name not in _made:  # Flink's client asks for the attribute many times while planning
        named = _NAMED.fullmatch(name)
        function, type_text = ("extract", name) if named is None else named.groups()
        _made[name] = ai_extract_udf(None, type_text, prefix=prefixes_for(function), name=function)
    return _made[name]

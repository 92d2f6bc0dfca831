"""Functions configured by name from SQL: ``'flink_llm_udf.sql.complete.classify'`` is a function
that reads the job parameters under ``ai.classify.`` and then ``ai.``.

Flink loads a Python function by importing the module before the last dot and taking the
attribute after it, so a module's ``__getattr__`` can make one for any name (PEP 562). The SQL
name you give the function must still parse: a reserved word such as ``extract`` needs
backquotes (``CREATE TEMPORARY FUNCTION `extract` …``), or pick another name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..job_parameters import DEFAULT_PREFIX

#: A function name usable as a job-parameter prefix: ``ai.<name>.``.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

Factory = Callable[..., Any]


def prefixes_for(name: str, shared: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Where a function named ``name`` reads its options, first match wins: its own prefix, then
    ``shared`` ones (``ai.embed.``), then ``ai.``."""
    return (f"{DEFAULT_PREFIX}{name}.", *shared, DEFAULT_PREFIX)


def named_functions(factory: Factory, shared: tuple[str, ...] = ()) -> Callable[[str], Any]:
    """A module ``__getattr__`` making ``factory(prefix=prefixes_for(name), name=name)`` once per name."""
    made: dict[str, Any] = {}

    def __getattr__(name: str) -> Any:
        if name.startswith("_") or not _NAME.fullmatch(name):
            raise AttributeError(name)
        if name not in made:
            made[name] = factory(prefix=prefixes_for(name, shared), name=name)
        return made[name]

    return __getattr__

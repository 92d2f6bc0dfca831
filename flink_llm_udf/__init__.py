"""flink-llm-udf: call OpenAI-compatible LLM endpoints row by row from Apache Flink.

The client core (this package's top level) has no PyFlink import: a provider, the async engine
and ``run_batch`` work in a notebook. ``flink_llm_udf.flink`` holds the Flink entry points,
``flink_llm_udf.sql`` the functions for pure SQL, ``flink_llm_udf.simulator`` the test server
and ``flink_llm_udf.tools`` the ``flink-llm`` command's tools. Modules whose names start with
``_`` are internal; everything public is exported here or from those subpackages.
"""

import importlib.metadata as _metadata

from . import _moved_modules
from ._batch import BlockingEngine, arun_batch, run_batch
from ._engine import LLMEngine
from ._engine_settings import EngineSettings
from ._errors import (
    ConfigurationError,
    EndpointConnectionError,
    EndpointError,
    EndpointStatusError,
    EndpointTimeoutError,
    FlinkLLMError,
    InvalidOptionError,
    InvalidOptionTypeError,
    MalformedResponseError,
    RowFailedError,
    TokenizerUnavailableError,
)
from ._observers import METRIC_NAMES, CountingObserver, EngineObserver
from ._provider import OpenAICompatProvider, Provider
from ._results import RowResult, Usage

_moved_modules.install()

try:
    __version__ = _metadata.version("flink-llm-udf")
except _metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = [
    "METRIC_NAMES",
    "BlockingEngine",
    "ConfigurationError",
    "CountingObserver",
    "EndpointConnectionError",
    "EndpointError",
    "EndpointStatusError",
    "EndpointTimeoutError",
    "EngineObserver",
    "EngineSettings",
    "FlinkLLMError",
    "InvalidOptionError",
    "InvalidOptionTypeError",
    "LLMEngine",
    "MalformedResponseError",
    "OpenAICompatProvider",
    "Provider",
    "RowFailedError",
    "RowResult",
    "TokenizerUnavailableError",
    "Usage",
    "arun_batch",
    "run_batch",
]

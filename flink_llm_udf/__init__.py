"""flink-llm-udf: call OpenAI-compatible LLM endpoints row by row from Apache Flink.

The core (this package's top level) has no PyFlink import: a provider, the async engine and
``run_batch`` work in a notebook. ``flink_llm_udf.flink`` holds the Flink entry points and
``flink_llm_udf.sql`` the functions for pure SQL.
"""
from .engine import EngineSettings, LLMEngine
from .errors import (ConfigurationError, EndpointConnectionError, EndpointError, EndpointStatusError,
                     EndpointTimeoutError, FlinkLLMError, InvalidOptionError, InvalidOptionTypeError,
                     MalformedResponseError, RowFailedError, TokenizerUnavailableError)
from .metrics import METRIC_NAMES, CountingObserver, EngineObserver
from .providers import OpenAICompatProvider, Provider
from .results import RowResult, Usage
from .runner import BlockingEngine, arun_batch, run_batch

__version__ = "0.1.0"

__all__ = [
    "BlockingEngine", "ConfigurationError", "CountingObserver", "EndpointConnectionError",
    "EndpointError", "EndpointStatusError", "EndpointTimeoutError", "EngineObserver",
    "EngineSettings", "FlinkLLMError", "InvalidOptionError", "InvalidOptionTypeError",
    "LLMEngine", "METRIC_NAMES", "MalformedResponseError", "OpenAICompatProvider", "Provider",
    "RowFailedError", "RowResult", "TokenizerUnavailableError", "Usage", "arun_batch", "run_batch",
]

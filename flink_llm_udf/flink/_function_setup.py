"""What every Flink adapter does at open: find the provider and settings, build the engine."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from .._engine_settings import EngineSettings
from .._errors import InvalidOptionError
from .._provider import OpenAICompatProvider
from ..job_parameters import DEFAULT_PREFIX, provider_from_lookup, settings_from_lookup

logger = logging.getLogger(__name__)


#: Job-parameter prefixes a function reads its options under, first match wins
#: (``("ai.embed.", "ai.")`` for embeddings).
Prefixes: TypeAlias = "str | tuple[str, ...]"


def job_parameter_lookup(context: Any, prefixes: Prefixes = DEFAULT_PREFIX) -> Callable[[str], str | None]:
    """A lookup of option keys in a FunctionContext's / RuntimeContext's job parameters.

    With several prefixes the first that has the key wins (``ai.embed.model`` before ``ai.model``).
    """
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes

    def lookup(key: str) -> str | None:
        for prefix in prefixes:
            value = context.get_job_parameter(prefix + key, None)
            if value is not None and value != "":
                return value
        return None

    return lookup


def resolve_configuration(
    context: Any,
    provider: OpenAICompatProvider | None,
    settings: EngineSettings | None,
    prefix: Prefixes = DEFAULT_PREFIX,
    task: str | None = None,
) -> tuple[OpenAICompatProvider, EngineSettings]:
    """The provider and settings a function runs with.

    Explicit objects win; what is missing comes from the job parameters under ``prefix``
    (``SET 'pipeline.global-job-parameters' = 'ai.model:...'`` in SQL, or ``flink-llm sql``'s
    ``SET 'ai.model' = '...'``); endpoint and key then fall back to the environment at open.
    ``task`` forces the provider's task (an embeddings function reading shared ``ai.*`` keys).
    """
    lookup = job_parameter_lookup(context, prefix)
    shown = prefix if isinstance(prefix, str) else "/".join(prefix)
    if provider is None:
        provider = provider_from_lookup(lookup, "", shown)
    if settings is None:
        settings = settings_from_lookup(lookup, "", source=shown)
    if task is not None and provider.task != task:  # e.g. ai_embed reading the shared ai.* keys
        provider = provider.replace(task=task)
    return provider, settings


def subtasks_of(context: Any) -> int:
    """The operator's parallelism from a FunctionContext / RuntimeContext (1 when unknown).

    Job-wide quotas are split by it: each subtask's engine takes its share.
    """
    try:
        count = context.get_number_of_parallel_subtasks()
    except Exception:
        return 1
    return count if isinstance(count, int) and count > 0 else 1


class _Parameters:
    """Job parameters known while the job is built, shaped like a FunctionContext for lookups."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def get_job_parameter(self, key: str, default_value: str | None) -> str | None:
        return self._values.get(key, default_value)


def declared_settings(
    job_parameters: Mapping[str, str],
    settings: EngineSettings | None,
    prefix: Prefixes = DEFAULT_PREFIX,
) -> EngineSettings:
    """The settings a function will open with, as far as known while the job is built.

    Flink-side sizes (async capacity, operations in flight, Arrow batch) are fixed when the job
    graph is built, but a function configured by job parameters reads ``ai.max-concurrency``
    only at open; sizing from the defaults would cap a larger value there. A bad value is left
    to the function, which reports it at open.
    """
    if settings is not None:
        return settings
    try:
        return settings_from_lookup(job_parameter_lookup(_Parameters(job_parameters), prefix), "")
    except (InvalidOptionError, ValueError):
        return EngineSettings()


def global_job_parameters(java_config: Any) -> dict[str, str]:
    """``pipeline.global-job-parameters`` of a Java ``ReadableConfig`` ({} when unreadable)."""
    try:
        from pyflink.java_gateway import get_gateway

        option = get_gateway().jvm.org.apache.flink.configuration.PipelineOptions.GLOBAL_JOB_PARAMETERS
        values = java_config.get(option)
        return {} if values is None else dict(values)
    except Exception as exc:
        logger.debug("cannot read pipeline.global-job-parameters: %s", exc)
        return {}


class PicklesWithoutEngine:
    """Mixin for the Flink functions: pickling (the job graph) leaves out the engine and metrics,
    which hold sockets, threads and a metric group and are rebuilt at ``open``."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_engine"] = None
        state["metrics"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # Unpickled in the worker before PyFlink opens the operation: check what it opens with.
        from ._stall_check import install_stall_check

        install_stall_check()

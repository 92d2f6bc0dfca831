"""What every Flink adapter does at open: find the provider and settings, build the engine."""
from __future__ import annotations

from typing import Any

from ..config import DEFAULT_PREFIX, provider_from_lookup, settings_from_lookup
from ..engine import EngineSettings
from ..providers import OpenAICompatProvider


Prefixes = "str | tuple[str, ...]"


def job_parameter_lookup(context: Any, prefixes: str | tuple[str, ...] = DEFAULT_PREFIX):
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


def resolve_configuration(context: Any, provider: OpenAICompatProvider | None,
                          settings: EngineSettings | None,
                          prefix: str | tuple[str, ...] = DEFAULT_PREFIX,
                          ) -> tuple[OpenAICompatProvider, EngineSettings]:
    """The provider and settings a function runs with.

    Explicit objects win; what is missing comes from the job parameters under ``prefix``
    (``SET 'pipeline.global-job-parameters' = 'ai.model:...'`` in SQL, or ``flink-llm sql``'s
    ``SET 'ai.model' = '...'``); endpoint and key then fall back to the environment at open.
    """
    lookup = job_parameter_lookup(context, prefix)
    shown = prefix if isinstance(prefix, str) else "/".join(prefix)
    if provider is None:
        provider = provider_from_lookup(lookup, "", shown)
    if settings is None:
        settings = settings_from_lookup(lookup, "")
    return provider, settings

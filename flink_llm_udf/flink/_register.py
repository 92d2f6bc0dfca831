"""One call that registers every function on a TableEnvironment, with settings that suit them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from pyflink.table import TableEnvironment

from .._engine_settings import EngineSettings
from .._errors import InvalidOptionError
from .._provider import OpenAICompatProvider
from ..job_parameters import DEFAULT_PREFIX
from ._async_scalar import (
    ai_classify_async_udf,
    ai_complete_async_udf,
    ai_embed_async_udf,
    ai_extract_async_udf,
)
from ._function_setup import declared_settings, global_job_parameters
from ._pandas_udf import (
    ai_classify_udf,
    ai_complete_result_udf,
    ai_complete_udf,
    ai_embed_udf,
    ai_extract_json_udf,
)
from ._tuning import apply_recommended_settings

EMBED_PREFIXES = (DEFAULT_PREFIX + "embed.", DEFAULT_PREFIX)

#: A function of your own: a provider (chat), a kind, or both.
OwnFunction: TypeAlias = "OpenAICompatProvider | str | tuple[str, OpenAICompatProvider | None] | None"


def register_functions(
    table_env: TableEnvironment,
    provider: OpenAICompatProvider | None = None,
    *,
    embedding_provider: OpenAICompatProvider | None = None,
    settings: EngineSettings | None = None,
    names_prefix: str = "",
    apply_settings: bool = True,
    functions: Mapping[str, OwnFunction] | Iterable[str] = (),
) -> list[str]:
    """Register ``ai_complete``, ``ai_complete_result``, ``ai_complete_async``, ``ai_embed``,
    ``ai_embed_async``, ``ai_extract``, ``ai_classify`` (and their ``_async`` forms) as
    temporary system functions; return their names.

    Without a provider the functions read ``ai.*`` job parameters at open (embeddings prefer
    ``ai.embed.*``). ``functions`` adds functions of your own names: names alone are chat
    functions ``name(text [, model [, options]])`` that read the job parameters under
    ``ai.<name>.`` and then ``ai.`` (``functions=["summarize"]`` with ``ai.summarize.model``
    set); a mapping gives each name a provider, a kind (``"complete"``, ``"classify"``,
    ``"extract"``, ``"embed"`` or their ``_async`` forms, ``"complete_result"``) or both as
    ``(kind, provider)``: ``functions={"topic": "classify", "summarize": summary_provider}``.
    An explicit ``settings`` wins over the ``ai.<name>.*`` engine keys, as everywhere.
    ``apply_settings`` sets ``recommended_settings`` where the user has not, sized by
    ``settings`` or else by the ``ai.max-concurrency`` job parameter set so far.
    """
    if apply_settings:
        declared = declared_settings(_job_parameters(table_env), settings)
        apply_recommended_settings(table_env, declared.max_concurrency)
    embed_provider = embedding_provider or provider
    functions_made = {
        "ai_complete": ai_complete_udf(provider, settings),
        "ai_complete_result": ai_complete_result_udf(provider, settings),
        "ai_complete_async": ai_complete_async_udf(provider, settings),
        "ai_embed": ai_embed_udf(embed_provider, settings, prefix=EMBED_PREFIXES),
        "ai_embed_async": ai_embed_async_udf(embed_provider, settings, prefix=EMBED_PREFIXES),
        "ai_extract": ai_extract_json_udf(provider, settings),
        "ai_extract_async": ai_extract_async_udf(provider, settings),
        "ai_classify": ai_classify_udf(provider, settings),
        "ai_classify_async": ai_classify_async_udf(provider, settings),
    }
    own = functions.items() if isinstance(functions, Mapping) else ((name, None) for name in functions)
    for name, spec in own:
        kind, own_provider = _kind_and_provider(name, spec)
        shared = (f"{DEFAULT_PREFIX}embed.",) if kind.startswith("embed") else ()
        prefixes = (f"{DEFAULT_PREFIX}{name}.", *shared, DEFAULT_PREFIX)
        functions_made[name] = KINDS[kind](own_provider, settings, prefix=prefixes, name=name)
    names = []
    for name, function in functions_made.items():
        table_env.create_temporary_system_function(names_prefix + name, function)
        names.append(names_prefix + name)
    return names


#: The kinds of function ``functions=`` can make, as in ``flink_llm_udf.sql.<kind>.<name>``.
KINDS: dict[str, Callable[..., Any]] = {
    "complete": ai_complete_udf,
    "complete_result": ai_complete_result_udf,
    "complete_async": ai_complete_async_udf,
    "extract": ai_extract_json_udf,
    "extract_async": ai_extract_async_udf,
    "classify": ai_classify_udf,
    "classify_async": ai_classify_async_udf,
    "embed": ai_embed_udf,
    "embed_async": ai_embed_async_udf,
}


def _kind_and_provider(name: str, spec: OwnFunction) -> tuple[str, OpenAICompatProvider | None]:
    if spec is None or isinstance(spec, OpenAICompatProvider):
        return "complete", spec
    kind, provider = (spec, None) if isinstance(spec, str) else spec
    if kind not in KINDS:
        raise InvalidOptionError(f"functions[{name!r}]: kind {kind!r} is not one of {', '.join(KINDS)}")
    return kind, provider


def _job_parameters(table_env: TableEnvironment) -> dict[str, str]:
    try:
        return global_job_parameters(table_env.get_config()._j_table_config)
    except AttributeError:  # not a PyFlink TableEnvironment: size from the defaults
        return {}

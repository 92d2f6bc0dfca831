"""Options from a key/value source (Flink job parameters, a config file) under a prefix.

SQL users configure the functions with keys such as ``ai.endpoint``, ``ai.model`` or
``ai.max-concurrency``: the provider's option keys plus the engine's, under one prefix.
``job_parameters_value`` renders such keys as a ``pipeline.global-job-parameters`` value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ._durations import parse_duration
from ._engine_settings import EngineSettings
from ._errors import InvalidOptionError
from ._options import OPTIONS
from ._provider import OpenAICompatProvider
from ._wire import KEY_FILE_OPTION

__all__ = [
    "DEFAULT_PREFIX",
    "ENGINE_KEYS",
    "ENGINE_OPTIONS",
    "PROVIDER_KEYS",
    "EngineKey",
    "Lookup",
    "job_parameters_value",
    "provider_from_lookup",
    "settings_from_lookup",
]

DEFAULT_PREFIX = "ai."

#: The provider's option keys (``flink_llm_udf._options``), plus the extra option naming a key file.
PROVIDER_KEYS: tuple[str, ...] = (*(option.key for option in OPTIONS), KEY_FILE_OPTION)

Lookup = Callable[[str], "str | None"]


def _count(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("must be an int >= 1") from None


def _count_budget(raw: str) -> int | None:
    """A token budget: ``none`` for no budget; ``0`` is a budget of nothing (refused), not none."""
    text = raw.strip().lower().replace("_", "").replace(",", "")
    if text in ("none", ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be an int >= 1 (tokens), or none") from None


def _money_budget(raw: str) -> float | None:
    """A cost budget: ``none`` for no budget; ``0`` is refused, not read as none."""
    text = raw.strip().lower().replace("_", "")
    if text in ("none", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError("must be a number > 0, or none") from None


def _seconds(raw: str) -> float | None:
    """A duration such as ``30s``; ``none`` or ``0`` give None (no bound, where the field allows it)."""
    return None if raw.strip().lower() in ("none", "0") else parse_duration(raw)


def _name(raw: str) -> str:
    return raw.strip().lower()


def _text(raw: str) -> str:
    return raw.strip()


def _number(raw: str) -> float | None:
    """A rate such as ``600`` or ``1.5e5``; ``none`` or ``0`` give None (no limit)."""
    text = raw.strip().lower().replace("_", "")
    if text in ("none", "0", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError("must be a number > 0, or none") from None


def _switch(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise ValueError("must be true or false")


@dataclasses.dataclass(frozen=True, slots=True)
class EngineKey:
    """An ``EngineSettings`` field as a job parameter: ``row_deadline_s`` is ``ai.row-deadline``.

    A field ending in ``_s`` holds seconds and reads a duration, an int field a count, a str
    field a name (case-insensitive), an optional str field (a file path) its text as written;
    ``EngineSettings`` itself checks the value.
    """

    key: str
    field: str
    parse: Callable[[str], Any]

    @classmethod
    def of(cls, field: dataclasses.Field[Any]) -> EngineKey:
        """The job parameter for a field: its name without ``_s``, with ``-`` for ``_``."""
        if field.metadata.get("job_parameter") == "text":
            parse: Callable[[str], Any] = _text
        elif field.metadata.get("job_parameter") == "budget":
            parse = _count_budget if field.type == "int | None" else _money_budget
        elif field.name.endswith("_s"):
            parse = _seconds
        elif isinstance(field.default, bool):
            parse = _switch
        elif field.type == "float | None":
            parse = _number
        elif isinstance(field.default, int):
            parse = _count
        elif isinstance(field.default, str):
            parse = _name
        elif field.default is None and field.type == "str | None":
            parse = _text
        else:
            raise TypeError(f"no job parameter reads EngineSettings.{field.name}: add a rule to EngineKey.of")
        return cls(field.name.removesuffix("_s").replace("_", "-"), field.name, parse)


#: Every ``EngineSettings`` field, as job parameters read it.
ENGINE_OPTIONS: tuple[EngineKey, ...] = tuple(EngineKey.of(f) for f in dataclasses.fields(EngineSettings))
#: engine option key -> EngineSettings field
ENGINE_KEYS: dict[str, str] = {option.key: option.field for option in ENGINE_OPTIONS}


_NEEDS_QUOTES = frozenset(",:'\"")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quoted_if_needed(text: str) -> str:
    if not text or text != text.strip() or any(c in _NEEDS_QUOTES for c in text):
        return _quote(text)
    return text


def job_parameters_value(options: Mapping[str, object]) -> str:
    """``options`` as a value for ``pipeline.global-job-parameters``, quoted so Flink reads it back.

    Flink splits that map at ``,`` and then at ``:``, so ``ai.endpoint:http://host:8000/v1``
    is rejected ("Map item is not a key-value pair") and a comma inside a value (``stop``,
    ``extra-body``) splits the item. Values with such characters are quoted Flink's way (single
    quotes, a quote doubled): ``{'ai.endpoint': 'http://h:8000/v1'}`` gives
    ``ai.endpoint:'http://h:8000/v1'``. Non-string values are rendered with ``str``.
    """
    items = []
    for key, value in options.items():
        item = _quoted_if_needed(str(key)) + ":" + _quoted_if_needed(str(value))
        # the outer level splits only at commas; an item may not start with a quote unquoted
        items.append(_quote(item) if "," in item or item.startswith(("'", '"')) else item)
    return ",".join(items)


def provider_from_lookup(
    lookup: Lookup, prefix: str = DEFAULT_PREFIX, source: str | None = None
) -> OpenAICompatProvider:
    """Build a provider from ``prefix + option key`` entries; absent keys keep their defaults.

    ``source`` names where the options came from in error messages (default: the prefix).
    """
    options = {key: value for key in PROVIDER_KEYS if (value := lookup(prefix + key)) is not None}
    try:
        return OpenAICompatProvider.from_options(options)
    except (InvalidOptionError, TypeError) as exc:
        raise type(exc)(f"{exc} (from the '{source or prefix}*' configuration)") from None


def settings_from_lookup(
    lookup: Lookup,
    prefix: str = DEFAULT_PREFIX,
    defaults: EngineSettings | None = None,
    source: str | None = None,
) -> EngineSettings:
    """Engine settings from ``prefix + max-concurrency`` etc.; durations like ``30s``.

    A bad value is an ``InvalidOptionError`` naming the option key and the value as the user
    wrote them, plus ``source`` (where the options came from, e.g. ``ai.``) when given.
    """
    settings = defaults or EngineSettings()
    where = "" if source is None else f" (from the '{source}*' configuration)"
    for option in ENGINE_OPTIONS:
        raw = lookup(prefix + option.key)
        if raw is None:
            continue
        try:
            # EngineSettings checks the new value, with the ones before it applied
            settings = dataclasses.replace(settings, **{option.field: option.parse(raw)})
        except ValueError as exc:
            # EngineSettings names its field ("max_concurrency=0 is not allowed: ..."): keep the rule
            reason = str(exc).split(" is not allowed: ", 1)[-1]
            shown = repr(raw)
            if option.field == "cache":
                from ._result_cache import show_cache_url

                shown = show_cache_url(raw)  # a Redis URL may carry a password
            raise InvalidOptionError(
                f"option {prefix + option.key!r}={shown}{where} is not allowed: {reason}"
            ) from None
    return settings

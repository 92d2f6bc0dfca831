"""Options from a key/value source (Flink job parameters, a config file) under a prefix.

SQL users configure the functions with keys such as ``ai.endpoint``, ``ai.model`` or
``ai.max-concurrency``: the provider's option keys plus the engine's, under one prefix.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from .durations import parse_duration
from .engine import EngineSettings
from .errors import InvalidOptionError
from .providers import _KEYS, OpenAICompatProvider

DEFAULT_PREFIX = "ai."

# engine option key -> EngineSettings field
ENGINE_KEYS: dict[str, str] = {
    "max-concurrency": "max_concurrency",
    "request-timeout": "request_timeout_s",
    "row-deadline": "row_deadline_s",
    "embedding-rows-per-request": "embedding_rows_per_request",
}
PROVIDER_KEYS: tuple[str, ...] = tuple(_KEYS.values())

Lookup = Callable[[str], "str | None"]


def lookup_from_mapping(values: Mapping[str, str]) -> Lookup:
    return values.get


def provider_from_lookup(lookup: Lookup, prefix: str = DEFAULT_PREFIX,
                         source: str | None = None) -> OpenAICompatProvider:
    """Build a provider from ``prefix + option key`` entries; absent keys keep their defaults.

    ``source`` names where the options came from in error messages (default: the prefix).
    """
    options = {key: value for key in PROVIDER_KEYS
               if (value := lookup(prefix + key)) is not None}
    try:
        return OpenAICompatProvider.from_options(options)
    except (InvalidOptionError, TypeError) as exc:
        raise type(exc)(f"{exc} (from the '{source or prefix}*' configuration)") from None


def settings_from_lookup(lookup: Lookup, prefix: str = DEFAULT_PREFIX,
                         defaults: EngineSettings | None = None) -> EngineSettings:
    """Engine settings from ``prefix + max-concurrency`` etc.; durations like ``30s``."""
    base = defaults or EngineSettings()
    changes: dict[str, object] = {}
    for key, field in ENGINE_KEYS.items():
        raw = lookup(prefix + key)
        if raw is None:
            continue
        try:
            if field.endswith("_s"):
                changes[field] = None if raw.strip().lower() in ("none", "0") and field == "row_deadline_s" \
                    else parse_duration(raw)
            else:
                changes[field] = int(raw)
        except ValueError as exc:
            raise InvalidOptionError(f"option {prefix + key!r}={raw!r} is not allowed: {exc}") from None
    values = {name: getattr(base, name) for name in ENGINE_KEYS.values()}
    values.update(changes)
    return EngineSettings(**values)

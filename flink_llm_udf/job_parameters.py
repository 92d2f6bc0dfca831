"""Options from a key/value source (Flink job parameters, a config file) under a prefix.

SQL users configure the functions with keys such as ``ai.endpoint``, ``ai.model`` or
``ai.max-concurrency``: the provider's option keys plus the engine's, under one prefix.
``job_parameters_value`` renders such keys as a ``pipeline.global-job-parameters`` value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._durations import parse_duration
from ._engine import EngineSettings
from ._errors import InvalidOptionError
from ._provider import _KEYS, OpenAICompatProvider
from ._wire import KEY_FILE_OPTION

DEFAULT_PREFIX = "ai."

# engine option key -> EngineSettings field
ENGINE_KEYS: dict[str, str] = {
    "max-concurrency": "max_concurrency",
    "request-timeout": "request_timeout_s",
    "row-deadline": "row_deadline_s",
    "embedding-rows-per-request": "embedding_rows_per_request",
    "batch-deadline": "batch_deadline_s",
    "http-client": "http_client",
}
_UNBOUNDED_FIELDS = ("row_deadline_s", "batch_deadline_s")  # "none" / "0" mean no bound
PROVIDER_KEYS: tuple[str, ...] = (*tuple(_KEYS.values()), KEY_FILE_OPTION)

Lookup = Callable[[str], "str | None"]


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


def lookup_from_mapping(values: Mapping[str, str]) -> Lookup:
    return values.get


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
    base = defaults or EngineSettings()
    values = {name: getattr(base, name) for name in ENGINE_KEYS.values()}
    where = "" if source is None else f" (from the '{source}*' configuration)"
    for key, field in ENGINE_KEYS.items():
        raw = lookup(prefix + key)
        if raw is None:
            continue
        try:
            if field == "http_client":
                value = raw.strip().lower()
            elif field.endswith("_s"):
                value = (
                    None
                    if raw.strip().lower() in ("none", "0") and field in _UNBOUNDED_FIELDS
                    else parse_duration(raw)
                )
            else:
                try:
                    value = int(raw)
                except ValueError:
                    raise ValueError("must be an int >= 1") from None
            EngineSettings(**{**values, field: value})  # check this option on its own
        except ValueError as exc:
            # EngineSettings names its field ("max_concurrency=0 is not allowed: ..."): keep the rule
            reason = str(exc).split(" is not allowed: ", 1)[-1]
            raise InvalidOptionError(
                f"option {prefix + key!r}={raw!r}{where} is not allowed: {reason}"
            ) from None
        values[field] = value
    return EngineSettings(**values)

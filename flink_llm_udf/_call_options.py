"""Per-call options: what one query or row changes of a function's configured provider.

SQL passes them as a JSON object in the call's third argument, e.g.
``ai_complete(review, NULL, JSON_OBJECT('temperature' VALUE 0, 'system-prompt' VALUE 'Be terse'))``;
Python passes a mapping. Keys are the provider's option keys (``max-tokens``) or keywords
(``max_tokens``); only options that shape the request body may vary per call, never the
endpoint, the key or the error handling, which stay the function's own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidOptionError, InvalidOptionTypeError
from ._options import OPTIONS

__all__ = ["PER_CALL_KEYS", "CallOptions", "parse_call_options"]

#: Option keys a call may set, in the option table's spelling.
PER_CALL_KEYS: tuple[str, ...] = (
    "model",
    "system-prompt",
    "user-prompt",
    "temperature",
    "top-p",
    "max-tokens",
    "stop",
    "presence-penalty",
    "n",
    "seed",
    "response-format",
    "extra-body",
)
#: Engine settings a call may set too (how the prompt is made and the reply checked).
PER_CALL_SETTINGS: tuple[str, ...] = ("prompt-template", "structured-output", "invalid-output-retries")
_OPTIONS_BY_NAME = {
    name: option for option in OPTIONS if option.key in PER_CALL_KEYS for name in (option.key, option.keyword)
}


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Validated per-call changes, as provider keywords; hashable, so requests can share a plan."""

    changes: tuple[tuple[str, Any], ...]
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def model(self) -> str | None:
        """The call's model, if it names one (sent like the ``model`` argument)."""
        return dict(self.changes).get("model")

    def provider_changes(self) -> dict[str, Any]:
        """The changes for ``provider.replace`` (the model travels separately)."""
        return {keyword: value for keyword, value in self.changes if keyword != "model"}


def parse_call_options(raw: str | Mapping[str, Any] | None) -> CallOptions | None:
    """The options of one call, or None for none; ``InvalidOptionError`` names the bad key/value.

    ``raw`` is a JSON object text (what SQL's ``JSON_OBJECT`` gives) or a mapping. A JSON null
    value leaves that option as configured.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise InvalidOptionError(
                f"per-call options must be a JSON object: {exc} in {_short(raw)}"
            ) from None
        if not isinstance(loaded, dict):
            raise InvalidOptionError(f"per-call options must be a JSON object, got {_short(raw)}")
        raw = loaded
    if not isinstance(raw, Mapping):
        raise InvalidOptionTypeError(
            f"per-call options must be a JSON object text or a mapping, got {type(raw).__name__}"
        )
    changes: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for name, value in raw.items():
        setting = str(name).replace("_", "-")
        if setting in PER_CALL_SETTINGS:
            if value is not None:
                settings[setting.replace("-", "_")] = _setting_value(setting, value)
            continue
        option = _OPTIONS_BY_NAME.get(str(name))
        if option is None:
            allowed = ", ".join((*PER_CALL_KEYS, *PER_CALL_SETTINGS))
            raise InvalidOptionError(
                f"per-call option {name!r} is not one a call can set: use one of {allowed}"
            )
        if value is None:
            continue
        if isinstance(value, str) and option.kind != "string":
            value = option.parse(value)  # SQL gives numbers as text too: '0.2'
        elif isinstance(value, int) and not isinstance(value, bool) and option.kind == "float":
            value = float(value)
        elif isinstance(value, (dict, list)) and option.key == "extra-body":
            value = json.dumps(value)
        changes[option.keyword] = option.validate(value)
    if not changes and not settings:
        return None
    return CallOptions(tuple(sorted(changes.items())), tuple(sorted(settings.items())))


def _setting_value(key: str, value: Any) -> Any:
    """A per-call engine setting, checked as ``EngineSettings`` checks it."""
    from ._engine_settings import EngineSettings  # settings import the engine's modules

    field = key.replace("-", "_")
    if field == "invalid_output_retries" and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    elif field == "structured_output" and isinstance(value, str):
        value = value.strip().lower()
    try:
        EngineSettings(**{field: value})
    except InvalidOptionError as exc:
        raise InvalidOptionError(f"per-call option {key!r}: {exc}") from None
    return value


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")

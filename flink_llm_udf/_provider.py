"""Provider objects: every option of a model call, validated when constructed.

A provider is a plain, picklable value. ``to_options()`` renders it with the option keys Flink's
Java model providers use, ``from_options()`` reads those keys back, so the same configuration can
come from Python, SQL ``SET`` statements or a config file.
"""

from __future__ import annotations

import csv
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ._durations import parse_duration
from ._errors import InvalidOptionError, InvalidOptionTypeError

__all__ = ["TASK_CHAT", "TASK_EMBEDDINGS", "OpenAICompatProvider", "Provider", "mask_secret"]

TASK_CHAT = "chat/completions"
TASK_EMBEDDINGS = "embeddings"

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


def mask_secret(secret: str | None) -> str | None:
    """Return a form of ``secret`` safe for logs and reprs: ``sk-…abcd`` at most."""
    if secret is None:
        return None
    if len(secret) < 20:
        return "***"
    return f"{secret[:3]}…{secret[-4:]}"


class Provider(ABC):
    """What every model provider shares: a name, a model key, and option rendering.

    The engine reads providers only through ``to_options()``-level values (see
    ``flink_llm_udf._wire``), so a provider for another API can be added beside this one.
    """

    @abstractmethod
    def provider_name(self) -> str:
        """Return the provider identifier recognized by Flink's Java runtime."""

    def model_option_key(self) -> str:
        """Return the Java-side option key used for a per-call model name."""
        return "model"

    @abstractmethod
    def to_options(self) -> dict[str, str]:
        """Return all configured options as a dict with Java-side key names."""

    @classmethod
    @abstractmethod
    def from_options(cls, options: Mapping[str, str]) -> Provider:
        """Build a provider from ``to_options()``-style keys (the inverse of ``to_options``)."""


# --- option table -------------------------------------------------------------------------------
# keyword -> (option key, kind, allowed values or bounds). The order is the constructor's order.
_ENUMS: dict[str, tuple[str, ...]] = {
    "task": (TASK_CHAT, TASK_EMBEDDINGS),
    "content_type": ("TEXT", "IMAGE_URL"),
    "response_format": ("text", "json_object"),
    "context_overflow_action": (
        "truncated-tail",
        "truncated-tail-log",
        "truncated-head",
        "truncated-head-log",
        "skipped",
        "skipped-log",
    ),
    "error_handling_strategy": ("RETRY", "FAILOVER", "IGNORE"),
    "retry_backoff_strategy": ("FIXED", "EXPONENTIAL"),
    "retry_fallback_strategy": ("FAILOVER", "IGNORE"),
}

_KEYS: dict[str, str] = {
    "endpoint": "endpoint",
    "api_key": "api-key",
    "task": "task",
    "model": "model",
    "system_prompt": "system-prompt",
    "user_prompt": "user-prompt",
    "temperature": "temperature",
    "top_p": "top-p",
    "max_tokens": "max-tokens",
    "stop": "stop",
    "presence_penalty": "presence-penalty",
    "n": "n",
    "seed": "seed",
    "content_type": "content-type",
    "response_format": "response-format",
    "dimension": "dimension",
    "max_context_size": "max-context-size",
    "context_overflow_action": "context-overflow-action",
    "error_handling_strategy": "error-handling-strategy",
    "retry_num": "retry-num",
    "retry_backoff_strategy": "retry-backoff-strategy",
    "retry_backoff_base_interval": "retry-backoff-base-interval",
    "retry_fallback_strategy": "retry-fallback-strategy",
    "extra_header": "extra-header",
    "extra_body": "extra-body",
}
_KEYWORDS_BY_KEY = {key: keyword for keyword, key in _KEYS.items()}

_STRING_OPTIONS = (
    "endpoint",
    "api_key",
    "model",
    "system_prompt",
    "user_prompt",
    "stop",
    "retry_backoff_base_interval",
    "extra_header",
    "extra_body",
)
# keyword -> (minimum, maximum) for ints; None means unbounded on that side
_INT_OPTIONS: dict[str, tuple[int | None, int | None]] = {
    "max_tokens": (1, None),
    "n": (1, None),
    "seed": (None, None),
    "dimension": (1, None),
    "max_context_size": (1, None),
    "retry_num": (0, None),
}
_FLOAT_OPTIONS: dict[str, tuple[float | None, float | None]] = {
    "temperature": (None, None),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
}


def _type_error(keyword: str, expected: str, value: Any) -> InvalidOptionTypeError:
    # keyword may also read "option 'api-key'" (from_options)
    shown = "<redacted>" if "api_key" in keyword or "api-key" in keyword else repr(value)
    return InvalidOptionTypeError(f"{keyword} must be {expected}, got {type(value).__name__} {shown}")


def _value_error(keyword: str, allowed: str, value: Any) -> InvalidOptionError:
    shown = "<redacted>" if keyword == "api_key" else repr(value)
    return InvalidOptionError(f"{keyword}={shown} is not allowed: {allowed}")


def _check_int(keyword: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(keyword, "an int", value)
    low, high = _INT_OPTIONS[keyword]
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise _value_error(keyword, f"must be an int {bounds}", value)
    return value


def _check_float(keyword: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(keyword, "a float", value)
    number = float(value)
    low, high = _FLOAT_OPTIONS[keyword]
    if not math.isfinite(number):
        raise _value_error(keyword, "must be a finite number", value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise _value_error(keyword, f"must be between {low} and {high}", value)
    return number


def _enum_allowed(keyword: str) -> str:
    return "allowed values are " + ", ".join(repr(a) for a in _ENUMS[keyword])


def _check_enum(keyword: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error(keyword, f"a string ({_enum_allowed(keyword)})", value)
    for canonical in _ENUMS[keyword]:
        if value.strip().lower() == canonical.lower():
            return canonical
    raise _value_error(keyword, _enum_allowed(keyword), value)


def _check_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _value_error("endpoint", "must be an http(s) URL such as https://api.openai.com/v1", value)
    return value


def task_of_endpoint(endpoint: str) -> str | None:
    """Return the task a full endpoint URL names by its path, or None for a base URL."""
    path = urlsplit(endpoint).path.rstrip("/")
    if path.endswith("/" + TASK_CHAT):
        return TASK_CHAT
    if path.endswith("/" + TASK_EMBEDDINGS):
        return TASK_EMBEDDINGS
    return None


def parse_stop(stop: str) -> list[str]:
    """Parse ``stop`` as one CSV record: quotes allow a comma inside a sequence; no trimming."""
    rows = list(csv.reader([stop], skipinitialspace=False, strict=True))
    return rows[0] if rows else []


def _check_json_object(keyword: str, value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _value_error(keyword, f"must be a JSON object ({exc.msg} at char {exc.pos})", value) from None
    if not isinstance(parsed, dict):
        raise _value_error(keyword, 'must be a JSON object, e.g. \'{"key": "value"}\'', value)
    return parsed


_HEADER_SCALARS = (str, int, float, bool)


def parse_extra_header(value: str) -> list[tuple[str, str]]:
    """Parse ``extra_header`` into (name, value) pairs; a list value sends the header per element."""
    headers: list[tuple[str, str]] = []
    for name, item in _check_json_object("extra_header", value).items():
        items = item if isinstance(item, list) else [item]
        for element in items:
            if not isinstance(element, _HEADER_SCALARS):
                raise _value_error(
                    "extra_header",
                    f"header {name!r} must be a string, number, bool or a list of those",
                    value,
                )
            headers.append((name, _render_header_value(element)))
    return headers


def _render_header_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class OpenAICompatProvider(Provider):
    """Provider for all OpenAI-compatible endpoints (openai-compat).

    Covers OpenAI, DeepSeek, Bailian/DashScope compatible mode, vLLM, Ollama, llama.cpp and any
    other service implementing the chat/completions or embeddings API. Options are validated here,
    at construction: a wrong type raises ``TypeError``, a wrong value ``ValueError``, each naming
    the keyword. ``endpoint`` and ``api_key`` may be left out and are then read where the call
    runs, at open, from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` / ``OPENAI_API_KEY_FILE``.

    >>> provider = OpenAICompatProvider(
    ...     endpoint="https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions",
    ...     api_key="sk-...", temperature=0.7)
    """

    PROVIDER_NAME: ClassVar[str] = "openai-compat"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        task: str | None = None,
        model: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        user_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | None = None,
        presence_penalty: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        content_type: str = "TEXT",
        response_format: str | None = None,
        dimension: int | None = None,
        max_context_size: int | None = None,
        context_overflow_action: str = "truncated-tail",
        error_handling_strategy: str = "RETRY",
        retry_num: int = 100,
        retry_backoff_strategy: str = "FIXED",
        retry_backoff_base_interval: str = "1s",
        retry_fallback_strategy: str = "FAILOVER",
        extra_header: str | None = None,
        extra_body: str | None = None,
        **extra_options: Any,
    ) -> None:
        given = dict(
            endpoint=endpoint,
            api_key=api_key,
            task=task,
            model=model,
            system_prompt=system_prompt,
            user_prompt=user_prompt,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=stop,
            presence_penalty=presence_penalty,
            n=n,
            seed=seed,
            content_type=content_type,
            response_format=response_format,
            dimension=dimension,
            max_context_size=max_context_size,
            context_overflow_action=context_overflow_action,
            error_handling_strategy=error_handling_strategy,
            retry_num=retry_num,
            retry_backoff_strategy=retry_backoff_strategy,
            retry_backoff_base_interval=retry_backoff_base_interval,
            retry_fallback_strategy=retry_fallback_strategy,
            extra_header=extra_header,
            extra_body=extra_body,
        )
        values: dict[str, Any] = {}
        for keyword, value in given.items():
            values[keyword] = None if value is None else self._validate(keyword, value)
        if values["system_prompt"] is None:
            raise _type_error("system_prompt", "a string ('' disables it)", None)
        for keyword in (
            "content_type",
            "context_overflow_action",
            "error_handling_strategy",
            "retry_num",
            "retry_backoff_strategy",
            "retry_backoff_base_interval",
            "retry_fallback_strategy",
        ):
            if values[keyword] is None:
                if keyword in _ENUMS:
                    raise _type_error(keyword, f"a string ({_enum_allowed(keyword)})", None)
                raise _type_error(keyword, "set (it has a default)", None)
        if values["endpoint"] is not None:
            implied = task_of_endpoint(values["endpoint"])
            if implied and values["task"] and implied != values["task"]:
                raise InvalidOptionError(
                    f"task={values['task']!r} contradicts endpoint {values['endpoint']!r}, "
                    f"whose path names the {implied!r} task"
                )
        for key, value in extra_options.items():
            if key in _KEYWORDS_BY_KEY or key in _KEYS:
                raise InvalidOptionError(
                    f"extra option {key!r} duplicates a named option; pass it as "
                    f"{_KEYWORDS_BY_KEY.get(key, key)}= instead"
                )
            if not isinstance(value, str):
                raise _type_error(f"extra option {key!r}", "a string (passed through as-is)", value)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_extra", dict(extra_options))

    # --- validation ---------------------------------------------------------------------------
    @staticmethod
    def _validate(keyword: str, value: Any) -> Any:
        if keyword in _ENUMS:
            return _check_enum(keyword, value)
        if keyword in _INT_OPTIONS:
            return _check_int(keyword, value)
        if keyword in _FLOAT_OPTIONS:
            return _check_float(keyword, value)
        if not isinstance(value, str):
            raise _type_error(keyword, "a string", value)
        if keyword == "endpoint":
            return _check_endpoint(value)
        if keyword == "api_key" and not value:
            raise _value_error("api_key", "must be a non-empty string (leave it out for no key)", value)
        if keyword == "stop":
            try:
                parse_stop(value)
            except csv.Error as exc:
                raise _value_error("stop", f"must be one CSV record ({exc})", value) from None
        if keyword == "retry_backoff_base_interval":
            try:
                parse_duration(value)
            except ValueError as exc:
                raise _value_error(keyword, str(exc), value) from None
        if keyword == "extra_header":
            parse_extra_header(value)
        if keyword == "extra_body":
            _check_json_object("extra_body", value)
        return value

    # --- immutability and access -------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one instead")

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def __getstate__(self) -> dict[str, Any]:
        return {"values": self._values, "extra": self._extra}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", state["values"])
        object.__setattr__(self, "_extra", state["extra"])

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self._values == other._values  # type: ignore[attr-defined]
            and self._extra == other._extra
        )  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_options().items())))

    @property
    def extra_options(self) -> dict[str, str]:
        """The ``**extra_options`` passed through as-is (a copy)."""
        return dict(self._extra)

    def replace(self, **changes: Any) -> OpenAICompatProvider:
        """Return a copy with some keywords changed (validated like the constructor)."""
        values = {**self._values, **self._extra, **changes}
        return type(self)(**values)

    # --- Provider API -------------------------------------------------------------------------
    def provider_name(self) -> str:
        """Return the provider identifier recognized by Flink's Java runtime."""
        return self.PROVIDER_NAME

    def model_option_key(self) -> str:
        """Return the Java-side option key used for a per-call model name."""
        return "model"

    def to_options(self) -> dict[str, str]:
        """Return all configured options as a dict with Java-side key names (None left out)."""
        options = {_KEYS[kw]: _render(v) for kw, v in self._values.items() if v is not None}
        options.update(self._extra)
        return options

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> OpenAICompatProvider:
        """Build a provider from ``to_options()`` keys; unknown keys become extra options."""
        kwargs: dict[str, Any] = {}
        for key, raw in options.items():
            keyword = _KEYWORDS_BY_KEY.get(key)
            if keyword is None:
                kwargs[key] = raw
            elif not isinstance(raw, str):
                raise _type_error(f"option {key!r}", "a string", raw)
            elif keyword in _INT_OPTIONS:
                kwargs[keyword] = _parse_number(key, raw, int)
            elif keyword in _FLOAT_OPTIONS:
                kwargs[keyword] = _parse_number(key, raw, float)
            else:
                kwargs[keyword] = raw
        return cls(**kwargs)

    def __repr__(self) -> str:
        shown = []
        for keyword, value in self._values.items():
            if value is None:
                continue
            if keyword == "api_key":
                value = mask_secret(value)
            shown.append(f"{keyword}={value!r}")
        shown += [f"{key}={value!r}" for key, value in self._extra.items()]
        return f"{type(self).__name__}({', '.join(shown)})"


def _parse_number(key: str, raw: str, kind: type) -> int | float:
    try:
        return kind(raw.strip())
    except ValueError:
        raise InvalidOptionError(
            f"option {key!r}={raw!r} is not allowed: must be {'an int' if kind is int else 'a number'}"
        ) from None

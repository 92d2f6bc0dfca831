"""Provider objects: every option of a model call, validated when constructed.

A provider is a plain, picklable, immutable value. ``to_options()`` renders it with the option
keys Flink's Java model providers use, ``from_options()`` reads those keys back, so the same
configuration can come from Python, SQL ``SET`` statements or a config file. What each option
accepts is in one table, ``flink_llm_udf._options.OPTIONS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from ._errors import InvalidOptionError
from ._options import (
    DEFAULT_SYSTEM_PROMPT,
    OPTIONS,
    OPTIONS_BY_KEY,
    TASK_CHAT,
    TASK_EMBEDDINGS,
    ContentType,
    ContextOverflowAction,
    ErrorHandlingStrategy,
    Option,
    ResponseFormat,
    RetryBackoffStrategy,
    RetryFallbackStrategy,
    Task,
    check_signature,
    option_type_error,
    parse_extra_header,
    parse_stop,
    task_of_endpoint,
)
from ._secrets import mask_secret

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "TASK_CHAT",
    "TASK_EMBEDDINGS",
    "OpenAICompatProvider",
    "Provider",
    "mask_secret",
    "parse_extra_header",
    "parse_stop",
    "task_of_endpoint",
]


class Provider(ABC):
    """What every model provider shares: a name, a model key, and option rendering.

    The engine reads providers only through ``to_options()``-level values (see
    ``flink_llm_udf._wire``), so a provider for another API can be added beside this one.
    """

    __slots__ = ()

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
    __slots__ = (*(option.keyword for option in OPTIONS), "_extra")

    # The validated values: enums in their canonical spelling, ints and floats as such. The
    # constructor below takes what users pass (the seed signature, checked against the table at
    # import); these annotations are what a type checker sees afterwards.
    endpoint: str | None
    api_key: str | None
    task: Task | None
    model: str | None
    system_prompt: str
    user_prompt: str | None
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: str | None
    presence_penalty: float | None
    n: int | None
    seed: int | None
    content_type: ContentType
    response_format: ResponseFormat | None
    dimension: int | None
    max_context_size: int | None
    context_overflow_action: ContextOverflowAction
    error_handling_strategy: ErrorHandlingStrategy
    retry_num: int
    retry_backoff_strategy: RetryBackoffStrategy
    retry_backoff_base_interval: str
    retry_fallback_strategy: RetryFallbackStrategy
    extra_header: str | None
    extra_body: str | None
    _extra: dict[str, str]

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
        given = locals()  # the keywords above by name; the table says what each one accepts
        for option in OPTIONS:
            object.__setattr__(self, option.keyword, option.validate(given[option.keyword]))
        if self.endpoint is not None:
            implied = task_of_endpoint(self.endpoint)
            if implied and self.task and implied != self.task:
                raise InvalidOptionError(
                    f"task={self.task!r} contradicts endpoint {self.endpoint!r}, "
                    f"whose path names the {implied!r} task"
                )
        for key, value in extra_options.items():
            if key in OPTIONS_BY_KEY:
                raise InvalidOptionError(
                    f"extra option {key!r} duplicates a named option; "
                    f"pass it as {OPTIONS_BY_KEY[key].keyword}= instead"
                )
            if not isinstance(value, str):
                raise option_type_error(f"extra option {key!r}", "a string (passed through as-is)", value)
        object.__setattr__(self, "_extra", dict(extra_options))

    # --- value semantics: immutable, picklable, equal by options --------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace() to build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace() to build a new one")

    def __getstate__(self) -> dict[str, Any]:
        return {**self._keywords(), "_extra": dict(self._extra)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, OpenAICompatProvider)
            and type(other) is type(self)
            and self._identity() == other._identity()
        )

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        shown = [
            f"{option.keyword}={_shown(option, value)}"
            for option in OPTIONS
            if (value := getattr(self, option.keyword)) is not None
        ]
        shown += [f"{key}={value!r}" for key, value in self._extra.items()]
        return f"{type(self).__name__}({', '.join(shown)})"

    def _keywords(self) -> dict[str, Any]:
        return {option.keyword: getattr(self, option.keyword) for option in OPTIONS}

    def _identity(self) -> tuple[object, ...]:
        return (*self._keywords().values(), tuple(sorted(self._extra.items())))

    @property
    def extra_options(self) -> dict[str, str]:
        """The ``**extra_options`` passed through as-is (a copy)."""
        return dict(self._extra)

    def replace(self, **changes: Any) -> OpenAICompatProvider:
        """Return a copy with some keywords changed (validated like the constructor)."""
        return type(self)(**{**self._keywords(), **self._extra, **changes})

    # --- Provider API -------------------------------------------------------------------------
    def provider_name(self) -> str:
        """Return the provider identifier recognized by Flink's Java runtime."""
        return self.PROVIDER_NAME

    def model_option_key(self) -> str:
        """Return the Java-side option key used for a per-call model name."""
        return "model"

    def to_options(self) -> dict[str, str]:
        """Return all configured options as a dict with Java-side key names (None left out)."""
        options = {
            option.key: option.render(value)
            for option in OPTIONS
            if (value := getattr(self, option.keyword)) is not None
        }
        options.update(self._extra)
        return options

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> OpenAICompatProvider:
        """Build a provider from ``to_options()`` keys; unknown keys become extra options."""
        kwargs: dict[str, Any] = {}
        for key, raw in options.items():
            option = OPTIONS_BY_KEY.get(key)
            if option is None:
                kwargs[key] = raw
            else:
                kwargs[option.keyword] = option.parse(raw)
        return cls(**kwargs)


check_signature(OpenAICompatProvider.__init__)


def _shown(option: Option, value: object) -> str:
    """An option's value as the repr shows it: secrets masked, URL passwords and header values too."""
    if option.secret:
        return str(mask_secret(value if isinstance(value, str) else None))
    masked = option.shown(value)
    return repr(value) if masked is None else masked

"""The provider's options, defined once: ``OPTIONS`` holds one row per keyword of the provider.

A row says everything the package needs to know about one option: its keyword, its option key
(the name Flink's Java model providers use), its kind (string, int, float or one of fixed
values), bounds or allowed values, default, an extra check for strings (URL, CSV, duration,
JSON), and its wording in the README. The rows drive validation (``Option.validate``), parsing
and rendering for ``to_options`` / ``from_options``, the check that the constructor's signature
matches the table (``check_signature``) and the README's table (``render_options_table``; run
``python -m flink_llm_udf._options`` to print it). Allowed values come from the ``Literal``
aliases below, which also type the provider's attributes.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from ._durations import parse_duration
from ._errors import InvalidOptionError, InvalidOptionTypeError
from ._secrets import mask_url_credentials

Task = Literal["chat/completions", "embeddings"]
ContentType = Literal["TEXT", "IMAGE_URL"]
ResponseFormat = Literal["text", "json_object"]
ContextOverflowAction = Literal[
    "truncated-tail", "truncated-tail-log", "truncated-head", "truncated-head-log", "skipped", "skipped-log"
]
ErrorHandlingStrategy = Literal["RETRY", "FAILOVER", "IGNORE"]
RetryBackoffStrategy = Literal["FIXED", "EXPONENTIAL"]
RetryFallbackStrategy = Literal["FAILOVER", "IGNORE"]

TASK_CHAT: Final[Task] = "chat/completions"
TASK_EMBEDDINGS: Final[Task] = "embeddings"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

#: Characters that may not reach a request line or header: C0 controls (tab aside) and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: An HTTP header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

Kind = Literal["string", "int", "float", "enum"]
_EXPECTED: dict[Kind, str] = {"string": "a string", "int": "an int", "float": "a float", "enum": "a string"}


# --- errors: they name the option and the rule, never a secret ------------------------------------
def option_type_error(
    name: str, expected: str, value: object, *, secret: bool = False
) -> InvalidOptionTypeError:
    """``name must be <expected>, got <type> <value>``; ``name`` is a keyword or e.g. ``option 'top-p'``."""
    shown = "<redacted>" if secret else repr(value)
    return InvalidOptionTypeError(f"{name} must be {expected}, got {type(value).__name__} {shown}")


def option_value_error(
    name: str, reason: str, value: object, *, secret: bool = False, shown: str | None = None
) -> InvalidOptionError:
    """``name=<value> is not allowed: <reason>``; ``shown`` replaces the value's repr (masked)."""
    if shown is None:
        shown = "<redacted>" if secret else repr(value)
    return InvalidOptionError(f"{name}={shown} is not allowed: {reason}")


def show_endpoint(value: object) -> str:
    """An endpoint as messages and reprs show it: a password in the URL masked."""
    return repr(mask_url_credentials(value)) if isinstance(value, str) else repr(value)


def show_headers(value: object) -> str:
    """``extra_header`` as messages and reprs show it: header names, every value masked."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return "<redacted>"
    return repr(json.dumps({name: "***" for name in parsed}))


# --- checks and parsers for string options: each raises ValueError(reason) --------------------------
def endpoint_problem(value: str) -> str | None:
    """Why ``value`` cannot be an endpoint URL, or None: http(s), a host, a port in 1-65535."""
    if _CONTROL.search(value):
        return "must not contain control characters or line breaks"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL such as https://api.openai.com/v1"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "has an invalid port: must be a number from 1 to 65535"
    return None


def _http_url(value: str) -> None:
    problem = endpoint_problem(value)
    if problem is not None:
        raise ValueError(problem)


def api_key_problem(value: str) -> str | None:
    """Why ``value`` cannot go into an ``Authorization`` header, or None."""
    if not value:
        return "must be a non-empty string (leave it out for no key)"
    if _CONTROL.search(value) or value != value.strip():
        return "must have no line breaks, control characters or surrounding whitespace"
    return None


def _api_key(value: str) -> None:
    problem = api_key_problem(value)
    if problem is not None:
        raise ValueError(problem)


def task_of_endpoint(endpoint: str) -> Task | None:
    """Return the task a full endpoint URL names by its path, or None for a base URL."""
    path = urlsplit(endpoint).path.rstrip("/")
    for task in (TASK_CHAT, TASK_EMBEDDINGS):
        if path.endswith("/" + task):
            return task
    return None


def parse_stop(stop: str) -> list[str]:
    """Parse ``stop`` as one CSV record: quotes allow a comma inside a sequence; no trimming."""
    rows = list(csv.reader([stop], skipinitialspace=False, strict=True))
    return rows[0] if rows else []


def _csv_record(value: str) -> None:
    try:
        parse_stop(value)
    except csv.Error as exc:
        raise ValueError(f"must be one CSV record ({exc})") from None


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"must be a JSON object ({exc.msg} at char {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object, e.g. \'{"key": "value"}\'')
    return parsed


def _header_pairs(value: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for name, item in _json_object(value).items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        for element in item if isinstance(item, list) else [item]:
            if not isinstance(element, (str, int, float, bool)):
                raise ValueError(f"header {name!r} must be a string, number, bool or a list of those")
            rendered = ("true" if element else "false") if isinstance(element, bool) else str(element)
            if _CONTROL.search(rendered):
                raise ValueError(f"header {name!r} has a line break or control character in its value")
            headers.append((name, rendered))
    return headers


def parse_extra_header(value: str) -> list[tuple[str, str]]:
    """Parse ``extra_header`` into (name, value) pairs; a list value sends the header per element."""
    try:
        return _header_pairs(value)
    except ValueError as exc:
        raise option_value_error("extra_header", str(exc), value, shown=show_headers(value)) from None


# --- the table ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Option:
    """One keyword of the provider: what it accepts, its option key, and how the README shows it.

    An option whose default is None may be None (left out of ``to_options``); the others may not.
    ``check`` raises ``ValueError(reason)`` for a bad string. ``doc`` is the README's "allowed"
    column, where ``{rule}`` stands for the rule the row states (``int ≥ 1``, the allowed values).
    """

    keyword: str
    key: str
    kind: Kind
    default: str | int | None = None
    _: KW_ONLY
    allowed: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    check: Callable[[str], object] | None = None
    secret: bool = False
    show: Callable[[object], str] | None = None
    doc: str = "{rule}"
    default_doc: str | None = None

    @property
    def expected(self) -> str:
        """The type a value must have, as error messages say it."""
        if self.kind == "enum":
            return f"a string ({self._allowed_values()})"
        return _EXPECTED[self.kind]

    def validate(self, value: object) -> object:
        """Return ``value`` checked and canonical (enums in the table's spelling, floats as float)."""
        if value is None:
            if self.default is None:
                return None
            reason = f"got None (leave it out for the default {self.default!r})"
            raise InvalidOptionTypeError(f"{self.keyword} must be {self.expected}, {reason}")
        if self.kind == "enum":
            return self._canonical(value)
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise option_type_error(self.keyword, self.expected, value, secret=self.secret)
            self._check_bounds(value, value)
            return value
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise option_type_error(self.keyword, self.expected, value, secret=self.secret)
            try:
                number = float(value)
            except OverflowError:  # an int too large for a float
                number = math.inf
            if not math.isfinite(number):
                raise option_value_error(self.keyword, "must be a finite number", value)
            self._check_bounds(number, value)
            return number
        if not isinstance(value, str):
            raise option_type_error(self.keyword, self.expected, value, secret=self.secret)
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as exc:
                raise option_value_error(
                    self.keyword, str(exc), value, secret=self.secret, shown=self.shown(value)
                ) from None
        return value

    def shown(self, value: object) -> str | None:
        """How messages and reprs show ``value`` when it is not plain (masked); None: its repr."""
        if self.secret:
            return "<redacted>"
        return None if self.show is None else self.show(value)

    def parse(self, raw: object) -> object:
        """The keyword's value for an option string (``from_options``); ``validate`` checks it after."""
        name = f"option {self.key!r}"
        if not isinstance(raw, str):
            raise option_type_error(name, "a string", raw, secret=self.secret)
        if self.kind not in ("int", "float"):
            return raw
        try:
            return int(raw.strip()) if self.kind == "int" else float(raw.strip())
        except ValueError:
            raise option_value_error(name, f"must be {self.expected}", raw) from None

    def render(self, value: object) -> str:
        """The option string for a validated value (``to_options``): floats round-trip exactly."""
        return repr(value) if isinstance(value, float) else str(value)

    def rule(self) -> str:
        """The README's short rule: ``int ≥ 1``, ``float in [0, 1]``, the allowed values."""
        if self.kind == "enum":
            return ", ".join(f"`{value}`" for value in self.allowed)
        if self.kind == "string":
            return "string"
        if self.low is not None and self.high is not None:
            return f"{self.kind} in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{self.kind} ≥ {self.low:g}"
        if self.high is not None:
            return f"{self.kind} ≤ {self.high:g}"
        return "finite float" if self.kind == "float" else "int"

    def readme_row(self) -> str:
        """This option's line in the README's table."""
        if self.default_doc is not None:
            default = self.default_doc
        elif self.default is None:
            default = "—"
        else:
            default = f"`{self.default}`" if isinstance(self.default, str) else str(self.default)
        allowed = self.doc.replace("{rule}", self.rule())
        return f"| {self.keyword} | `{self.key}` | {allowed} | {default} |"

    def _allowed_values(self) -> str:
        return "allowed values are " + ", ".join(repr(value) for value in self.allowed)

    def _canonical(self, value: object) -> str:
        if not isinstance(value, str):
            raise option_type_error(self.keyword, self.expected, value)
        folded = value.strip().lower()
        for canonical in self.allowed:
            if folded == canonical.lower():
                return canonical
        raise option_value_error(self.keyword, self._allowed_values(), value)

    def _check_bounds(self, number: float, value: object) -> None:
        low, high = self.low, self.high
        if (low is not None and number < low) or (high is not None and number > high):
            if high is None:
                bounds = f">= {low}"
            elif low is None:
                bounds = f"<= {high}"
            else:
                bounds = f"between {low} and {high}"
            raise option_value_error(self.keyword, f"must be {self.expected} {bounds}", value)


#: The provider's options in the constructor's order.
OPTIONS: tuple[Option, ...] = (
    Option(
        "endpoint",
        "endpoint",
        "string",
        check=_http_url,
        show=show_endpoint,
        doc="http(s) URL: a base URL (`…/v1`) or a full `…/chat/completions` / `…/embeddings` URL",
        default_doc="`OPENAI_BASE_URL`",
    ),
    Option(
        "api_key",
        "api-key",
        "string",
        check=_api_key,
        secret=True,
        doc="non-empty string",
        default_doc="`OPENAI_API_KEY`, then the file named by `OPENAI_API_KEY_FILE`; "
        "none = no `Authorization` header",
    ),
    Option("task", "task", "enum", allowed=get_args(Task), default_doc="from the endpoint, else chat"),
    Option("model", "model", "string"),
    Option("system_prompt", "system-prompt", "string", DEFAULT_SYSTEM_PROMPT, doc='{rule}; `""` disables it'),
    Option("user_prompt", "user-prompt", "string", doc="{rule}, sent as a second user message"),
    Option("temperature", "temperature", "float"),
    Option("top_p", "top-p", "float", low=0.0, high=1.0),
    Option("max_tokens", "max-tokens", "int", low=1),
    Option("stop", "stop", "string", check=_csv_record, doc='one CSV record (`a,"b,c"` → `["a", "b,c"]`)'),
    Option("presence_penalty", "presence-penalty", "float", low=-2.0, high=2.0),
    Option("n", "n", "int", low=1, doc="{rule} (DataStream emits one record per choice)"),
    Option("seed", "seed", "int"),
    Option(
        "content_type",
        "content-type",
        "enum",
        "TEXT",
        allowed=get_args(ContentType),
        doc="{rule} (the row is an image URL)",
    ),
    Option("response_format", "response-format", "enum", allowed=get_args(ResponseFormat)),
    Option("dimension", "dimension", "int", low=1, doc="{rule} (embeddings `dimensions`)"),
    Option("max_context_size", "max-context-size", "int", low=1, doc="{rule} tokens (tiktoken)"),
    Option(
        "context_overflow_action",
        "context-overflow-action",
        "enum",
        "truncated-tail",
        allowed=get_args(ContextOverflowAction),
        doc="`truncated-tail`, `truncated-head`, `skipped`, each also `-log`",
    ),
    Option(
        "error_handling_strategy",
        "error-handling-strategy",
        "enum",
        "RETRY",
        allowed=get_args(ErrorHandlingStrategy),
    ),
    Option("retry_num", "retry-num", "int", 100, low=0, doc="{rule}: retries after the first attempt"),
    Option(
        "retry_backoff_strategy",
        "retry-backoff-strategy",
        "enum",
        "FIXED",
        allowed=get_args(RetryBackoffStrategy),
        doc="{rule} (×2 per retry, capped at 60 s)",
    ),
    Option(
        "retry_backoff_base_interval",
        "retry-backoff-base-interval",
        "string",
        "1s",
        check=parse_duration,
        doc="duration: `1s`, `500 ms`, `2 min`",
    ),
    Option(
        "retry_fallback_strategy",
        "retry-fallback-strategy",
        "enum",
        "FAILOVER",
        allowed=get_args(RetryFallbackStrategy),
    ),
    Option(
        "extra_header",
        "extra-header",
        "string",
        check=_header_pairs,
        show=show_headers,
        doc="JSON object; a list value sends the header once per element",
    ),
    Option(
        "extra_body",
        "extra-body",
        "string",
        check=_json_object,
        doc="JSON object merged into every request body",
    ),
)
OPTIONS_BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}

_EXTRA_OPTIONS_ROW = (
    "| **extra_options | (as given) | string values, passed through `to_options()` unchanged | — |"
)


def check_signature(function: Callable[..., object]) -> None:
    """Raise ``TypeError`` unless ``function`` takes the table's keywords, keyword-only and in
    order, with the table's defaults, then ``**extra_options``: the constructor cannot drift."""
    parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    found = [(p.name, p.kind, p.default) for p in parameters]
    wanted: list[tuple[str, object, object]] = [
        (option.keyword, inspect.Parameter.KEYWORD_ONLY, option.default) for option in OPTIONS
    ]
    wanted.append(("extra_options", inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty))
    if found != wanted:
        differences = [f"{f} != {w}" for f, w in zip(found, wanted, strict=False) if f != w]
        raise TypeError(f"{function.__qualname__} does not match the option table: {differences or found}")


def render_options_table() -> str:
    """The Markdown table of the README's "Provider options" section."""
    lines = ["| keyword | option key | allowed | default |", "|---|---|---|---|"]
    lines += [option.readme_row() for option in OPTIONS]
    lines.append(_EXTRA_OPTIONS_ROW)
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_options_table())

"""The OpenAI wire format, pure: resolve the call at open, build request bodies, parse responses.

Nothing here does I/O except reading the environment and the key file in ``resolve_call``
(which runs where the call runs, at open).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import (
    ConfigurationError,
    EndpointStatusError,
    InvalidOptionError,
    InvalidReplyError,
    MalformedResponseError,
)
from ._options import ContextOverflowAction, Task, api_key_problem, endpoint_problem, show_endpoint
from ._provider import (
    TASK_CHAT,
    OpenAICompatProvider,
    mask_secret,
    parse_extra_header,
    parse_stop,
    task_of_endpoint,
)
from ._retry import RetryPolicy, is_retryable_status, parse_retry_after
from ._secrets import Redactor, basic_authorization, split_credentials

if TYPE_CHECKING:
    from ._http import HTTPReply

#: Extra headers whose values are credentials (Azure's ``api-key``, ``X-API-Key``, tokens).
CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret|password", re.IGNORECASE)

#: What ``json.dumps(text, ensure_ascii=False)`` gives for a str, without a JSONEncoder per call.
_json_string = json.encoder.encode_basestring

ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_API_KEY = "OPENAI_API_KEY"
ENV_API_KEY_FILE = "OPENAI_API_KEY_FILE"
# An extra option (``**{"api-key-file": path}``, SQL ``ai.api-key-file``) naming a key file: the
# way to give a cluster job its key through configuration without the key itself in any log.
KEY_FILE_OPTION = "api-key-file"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the server reports it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CallSpec:
    """Everything needed to send one row, resolved once at open from a provider."""

    url: str
    task: Task
    headers: tuple[tuple[str, str], ...] = field(repr=False)  # holds "Authorization: Bearer <key>"
    base_body: Mapping[str, Any]
    system_prompt: str
    user_prompt: str | None
    image_input: bool
    model: str | None
    max_context_size: int | None
    context_overflow_action: ContextOverflowAction
    retry: RetryPolicy
    api_key: str | None = field(default=None, repr=False)
    #: Every secret the requests carry (key, URL password, credential headers): redacted from
    #: whatever a server echoes back before it reaches a message.
    redactor: Redactor = field(default_factory=Redactor, repr=False)

    @property
    def masked_key(self) -> str | None:
        return mask_secret(self.api_key)


def resolve_call(provider: OpenAICompatProvider, environ: Mapping[str, str] | None = None) -> CallSpec:
    """Resolve a provider into a ``CallSpec``: endpoint and key fall back to the environment.

    Raises ``ConfigurationError`` when no endpoint is configured anywhere, or the key file named
    by ``OPENAI_API_KEY_FILE`` cannot be read.
    """
    env = os.environ if environ is None else environ
    endpoint = provider.endpoint or env.get(ENV_BASE_URL)
    if not endpoint:
        raise ConfigurationError(
            f"no endpoint: set endpoint= on the provider (option key 'endpoint') or {ENV_BASE_URL} "
            "in the environment where the job runs"
        )
    if not provider.endpoint:
        problem = endpoint_problem(endpoint)
        if problem is not None:
            raise ConfigurationError(f"{ENV_BASE_URL}={show_endpoint(endpoint)} {problem}")
    credentials = split_credentials(endpoint)
    endpoint = credentials.url
    implied = task_of_endpoint(endpoint)
    if implied and provider.task and implied != provider.task:
        raise InvalidOptionError(
            f"task={provider.task!r} contradicts endpoint {endpoint!r} "
            f"(from {ENV_BASE_URL}), whose path names the {implied!r} task"
        )
    task = provider.task or implied or TASK_CHAT
    url = endpoint if implied else _append_path(endpoint, task)

    api_key = (
        provider.api_key
        or _read_key_file(provider.extra_options.get(KEY_FILE_OPTION), KEY_FILE_OPTION)
        or _env_key(env)
        or _read_key_file(env.get(ENV_API_KEY_FILE), ENV_API_KEY_FILE)
    )
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    secrets: list[str | None] = [credentials.password]
    if api_key and credentials.password is not None:
        raise ConfigurationError(
            f"endpoint {show_endpoint(provider.endpoint or endpoint)} carries a user and password, and an "
            "API key is set too: give one of them (the key is sent as a Bearer token)"
        )
    if api_key:
        headers.append(("Authorization", f"Bearer {api_key}"))
    elif credentials.username is not None:
        authorization = basic_authorization(credentials.username, credentials.password or "")
        headers.append(("Authorization", authorization))
        secrets += [authorization.removeprefix("Basic "), f"{credentials.username}:{credentials.password}"]
    if provider.extra_header:
        extra = parse_extra_header(provider.extra_header)
        headers += extra
        secrets += [value for name, value in extra if CREDENTIAL_HEADER.search(name)]

    body: dict[str, Any] = {}
    if provider.model is not None:
        body["model"] = provider.model
    if task == TASK_CHAT:
        for keyword, api_field in (
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("max_tokens", "max_tokens"),
            ("presence_penalty", "presence_penalty"),
            ("n", "n"),
            ("seed", "seed"),
        ):
            value = getattr(provider, keyword)
            if value is not None:
                body[api_field] = value
        if provider.stop is not None:
            body["stop"] = parse_stop(provider.stop)
        if provider.response_format is not None:
            body["response_format"] = {"type": provider.response_format}
    else:
        body["encoding_format"] = "float"
        if provider.dimension is not None:
            body["dimensions"] = provider.dimension
    if provider.extra_body:
        body.update(json.loads(provider.extra_body))

    return CallSpec(
        url=url,
        task=task,
        headers=tuple(headers),
        base_body=body,
        system_prompt=provider.system_prompt,
        user_prompt=provider.user_prompt or None,
        image_input=provider.content_type == "IMAGE_URL",
        model=provider.model,
        max_context_size=provider.max_context_size,
        context_overflow_action=provider.context_overflow_action,
        retry=RetryPolicy.from_provider_values(
            provider.error_handling_strategy,
            provider.retry_num,
            provider.retry_backoff_strategy,
            provider.retry_backoff_base_interval,
            provider.retry_fallback_strategy,
        ),
        api_key=api_key or None,
        redactor=Redactor.of(*secrets, api_key=api_key),
    )


def _append_path(base_url: str, task: str) -> str:
    """``https://h/v1?x=1`` + ``chat/completions`` -> ``https://h/v1/chat/completions?x=1``."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + task))


def _env_key(env: Mapping[str, str]) -> str | None:
    """``OPENAI_API_KEY``, refused (naming it) when it cannot go into a header as it is."""
    key = env.get(ENV_API_KEY)
    if not key:
        return None
    problem = api_key_problem(key)
    if problem is not None:
        raise ConfigurationError(f"{ENV_API_KEY} {problem} (a trailing newline from a file?)")
    return key


def _read_key_file(path: str | None, source: str) -> str | None:
    """The key in the file at ``path`` (read where the call runs); ``source`` names the setting."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.read().strip()
    except OSError as exc:
        raise ConfigurationError(f"{source}={path!r} cannot be read: {exc.strerror}") from None
    if not key:
        raise ConfigurationError(f"{source}={path!r} is empty")
    problem = api_key_problem(key)
    if problem is not None:
        raise ConfigurationError(f"the key in {source}={path!r} {problem}")
    return key


def build_chat_body(spec: CallSpec, text: str, model: str | None = None) -> dict[str, Any]:
    """The chat/completions body for one row: system, the row as user content, then user_prompt."""
    messages: list[dict[str, Any]] = []
    if spec.system_prompt:
        messages.append({"role": "system", "content": spec.system_prompt})
    if spec.image_input:
        messages.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": text}}]})
    else:
        messages.append({"role": "user", "content": text})
    if spec.user_prompt:
        messages.append({"role": "user", "content": spec.user_prompt})
    body = dict(spec.base_body)
    if model is not None:
        body["model"] = model
    body["messages"] = messages
    return body


def build_embeddings_body(spec: CallSpec, texts: str | list[str], model: str | None = None) -> dict[str, Any]:
    """The embeddings body for one row (a string) or several rows (a list, one vector each)."""
    body = dict(spec.base_body)
    if model is not None:
        body["model"] = model
    body["input"] = texts
    return body


def parse_usage(payload: Mapping[str, Any]) -> Usage | None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = _int_or_zero(usage.get("prompt_tokens"))
    completion = _int_or_zero(usage.get("completion_tokens"))
    total = _int_or_zero(usage.get("total_tokens")) or prompt + completion
    return Usage(prompt, completion, total)


def parse_chat_choices(payload: Any) -> tuple[str, ...]:
    """The content of every choice, in index order; raises ``MalformedResponseError`` otherwise."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError("response has no 'choices' list", retryable=True)
    if len(choices) == 1:  # the common case, without the sort
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and isinstance(choice.get("index", 0), int):
            return (content,)
    indexes = [c.get("index", 0) if isinstance(c, dict) else 0 for c in choices]
    if not all(isinstance(i, int) for i in indexes):
        raise MalformedResponseError("a choice has a non-integer 'index'", retryable=True)
    ordered = [c for _, _, c in sorted(zip(indexes, range(len(choices)), choices, strict=True))]
    contents = []
    for choice in ordered:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if content is None and isinstance(message, dict) and "content" in message:
            content = ""  # a refusal or tool call: no text, but a well-formed answer
        if not isinstance(content, str):
            raise MalformedResponseError("a choice has no 'message.content' string", retryable=True)
        contents.append(content)
    return tuple(contents)


def parse_embeddings(payload: Any, expected: int) -> list[list[float]]:
    """One vector per input, in input order; raises ``MalformedResponseError`` otherwise."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        raise MalformedResponseError(f"response 'data' should hold {expected} embedding(s)", retryable=True)
    vectors: list[list[float] | None] = [None] * expected
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < expected or not isinstance(vector, list):
            raise MalformedResponseError("an embedding item has no valid 'index'/'embedding'", retryable=True)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            raise MalformedResponseError("an embedding holds a value that is not a number", retryable=True)
        vectors[index] = [float(x) for x in vector]
    if any(v is None for v in vectors):
        raise MalformedResponseError("response repeats an embedding index", retryable=True)
    return vectors  # type: ignore[return-value]


def error_message(payload: Any, raw: bytes, limit: int = 300) -> str:
    """The API's own error message from an error body, or the start of the raw body."""
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            code = error.get("code")
            return f"{error['message']}" + (f" (code {code})" if code else "")
        if isinstance(error, str):
            return error
    text = raw[:limit].decode("utf-8", errors="replace").strip()
    return text or "empty body"


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class BodyTemplates:
    """Request bodies as bytes: a constant prefix and suffix around the row's JSON-encoded input.

    The same bytes as ``json.dumps(build_*_body(spec, value, model), ensure_ascii=False)``, but
    per row only the row's own text is encoded (the body dict and everything constant in it,
    system prompt included, are encoded once per model). A template is made by encoding the
    body with a marker in the row's place and splitting around the marker; when the marker does
    not occur exactly once, or too many per-row models are seen, rows take the generic path.
    """

    _MARKER = "\x00flink-llm-row\x00"
    _MAX_MODELS = 64

    def __init__(self, spec: CallSpec) -> None:
        self.spec = spec
        self.build: Callable[[CallSpec, Any, str | None], dict[str, Any]] = (
            build_chat_body if spec.task == TASK_CHAT else build_embeddings_body
        )
        self._templates: dict[str | None, tuple[bytes, bytes] | None] = {}

    def encode(self, value: str | list[str], model: str | None) -> bytes:
        try:
            template = self._templates[model]
        except KeyError:
            template = None
            if len(self._templates) < self._MAX_MODELS:
                template = self._templates[model] = self._template(model)
        if template is None:
            return json.dumps(self.build(self.spec, value, model), ensure_ascii=False).encode("utf-8")
        encoded = _json_string(value) if type(value) is str else json.dumps(value, ensure_ascii=False)
        return template[0] + encoded.encode("utf-8") + template[1]

    def _template(self, model: str | None) -> tuple[bytes, bytes] | None:
        whole = json.dumps(self.build(self.spec, self._MARKER, model), ensure_ascii=False)
        marker = json.dumps(self._MARKER, ensure_ascii=False)
        if whole.count(marker) != 1:
            return None
        prefix, _, suffix = whole.partition(marker)
        return prefix.encode("utf-8"), suffix.encode("utf-8")


def unsendable(text: object, model: object = None, *, check_encoding: bool = False) -> str | None:
    """Why a row's text (or model override) cannot go into a JSON request, or None.

    A row must be a string: a number, a list or bytes is refused rather than sent as something
    the model would read differently (and a float NaN is not even JSON). With
    ``check_encoding`` a text that UTF-8 cannot encode (a lone surrogate) is refused too; the
    single-row path finds that when it encodes the body instead, at no extra cost.
    """
    for name, value in (("text", text), ("model", model)):
        if value is None or type(value) is str:
            continue
        if not isinstance(value, str):
            shown = "NaN" if isinstance(value, float) and value != value else type(value).__name__
            return f"its {name} is {shown}, not a string"
    if check_encoding:
        try:
            str(text).encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"the text is not valid Unicode ({exc.reason} at position {exc.start})"
    return None


def check_reply(
    reply: HTTPReply, parse: Callable[[Any], tuple[Any, tuple[str, ...]]], redactor: Redactor
) -> tuple[Any, tuple[str, ...]]:
    """Turn a reply into (value, choices) or raise the matching ``EndpointError``."""
    if 200 <= reply.status < 300:
        try:
            if not reply.is_json:
                raise MalformedResponseError("response body is not JSON", retryable=True)
            return parse(reply.payload)
        except MalformedResponseError as exc:
            # the parser may say a body is final (a reply that keeps failing a schema); beyond
            # that, only x-should-retry can veto
            retryable = exc.retryable and is_retryable_status(500, reply.headers)
            if isinstance(exc, InvalidReplyError):
                raise InvalidReplyError(str(exc), retryable=exc.retryable, status=reply.status) from None
            raise MalformedResponseError(
                f"HTTP {reply.status} with a malformed body: {exc}", retryable=retryable, status=reply.status
            ) from None
    # Redact whole secrets before error_message cuts the body, and pieces of them after.
    message = redactor.text(error_message(reply.payload, redactor.raw(reply.raw)))
    raise EndpointStatusError(
        f"HTTP {reply.status}: {message}",
        retryable=is_retryable_status(reply.status, reply.headers),
        status=reply.status,
        retry_after=parse_retry_after(reply.headers),
    )


def chat_value(payload: Any) -> tuple[str, tuple[str, ...]]:
    """A chat reply's first choice and all its choices."""
    choices = parse_chat_choices(payload)
    return choices[0], choices


def single_embedding(payload: Any) -> tuple[list[float], tuple[str, ...]]:
    """The one vector of a one-row embeddings reply."""
    return parse_embeddings(payload, 1)[0], ()

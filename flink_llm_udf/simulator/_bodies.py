"""OpenAI wire shapes: validate request bodies, build response and error bodies (pure).

Validation is deliberately lenient about fields the simulator ignores (``temperature``,
``top_p``, penalties, ``user``...) and strict about the ones it uses, answering the same
``invalid_request_error`` body OpenAI does, with ``param`` naming the offending field.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import FlinkLLMError
from ._limits import QuotaRefusal, format_duration
from ._replies import (
    ContentFault,
    content_text,
    count_words,
    expected_chat_choice,
    expected_embedding,
    expected_prompt_tokens,
    first_user_text,
    response_format_type,
)
from ._structured_replies import SchemaError, structured_reply

__all__ = [
    "JSON_SCHEMA_UNSUPPORTED",
    "ChatRequest",
    "EmbeddingsRequest",
    "RequestError",
    "chat_completion",
    "concurrency_error_body",
    "embeddings_response",
    "error_body",
    "malformed_body",
    "models_response",
    "parse_chat",
    "parse_embeddings",
    "quota_error_body",
    "status_error_body",
]

MAX_CHOICES = 128
MAX_DIMENSIONS = 65536

#: OpenAI's 400 message for a model without structured outputs (``json_schema_support`` off).
JSON_SCHEMA_UNSUPPORTED = (
    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
)


class RequestError(FlinkLLMError, ValueError):
    """The request body is invalid; carries the OpenAI ``param`` and ``code`` to report."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a chat completion request that shape the reply."""

    model: str
    messages: tuple[Mapping[str, Any], ...]
    max_tokens: int | None
    stop: str | tuple[str, ...] | None
    n: int
    seed: int | None
    response_format: Mapping[str, Any] | None

    @property
    def input_text(self) -> str:
        """First user text: where directives are read and attempts are counted."""
        return first_user_text(self.messages)

    @property
    def structured(self) -> bool:
        """True for a ``json_schema`` or ``json_object`` request: content faults apply to it."""
        return response_format_type(self.response_format) in ("json_schema", "json_object")

    def message_texts(self) -> list[str]:
        """Text of every message, for context-window counting."""
        return [content_text(m.get("content")) for m in self.messages]


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    """An embeddings request with ``input`` normalised to a tuple of strings."""

    model: str
    inputs: tuple[str, ...]
    encoding_format: str
    dimensions: int | None


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Simulated bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Simulated authentication failure."),
    403: ("permission_error", None, "Simulated permission denied."),
    404: ("invalid_request_error", "model_not_found", "Simulated: the model does not exist."),
    408: ("timeout_error", None, "Simulated request timeout."),
    409: ("conflict_error", None, "Simulated conflict."),
    422: ("invalid_request_error", None, "Simulated unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Simulated rate limit reached for requests."),
    500: ("server_error", None, "Simulated: the server had an error processing your request."),
    502: ("server_error", None, "Simulated bad gateway."),
    503: ("server_error", "service_unavailable", "Simulated: the engine is currently overloaded."),
    504: ("server_error", None, "Simulated gateway timeout."),
}


def status_error_body(status: int) -> dict[str, Any]:
    """Error body for an injected status, shaped like OpenAI's answer for that status."""
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    type_, code, message = _STATUS_ERRORS.get(status, (default_type, None, f"Simulated HTTP {status}."))
    return error_body(message, type_, None, code)


_ORGANIZATION = "org-simulator"
_QUOTA_NAMES = {"quota_rpm": "requests per min (RPM)", "quota_tpm": "tokens per min (TPM)"}


def quota_error_body(refusal: QuotaRefusal, model: str) -> dict[str, Any]:
    """The 429 body of a quota refusal, worded like OpenAI's (type ``requests`` or ``tokens``).

    Clients that read the wait from the message find it as OpenAI writes it
    (``Please try again in 100ms.``); a request larger than the whole limit gets OpenAI's
    "Request too large" wording and no wait.
    """
    where = f"{model} in organization {_ORGANIZATION} on {_QUOTA_NAMES[refusal.label]}"
    if refusal.too_large:
        message = (
            f"Request too large for {where}: Limit {refusal.limit}, Requested {refusal.requested}. "
            "The input or output tokens must be reduced in order to run successfully."
        )
    else:
        message = (
            f"Rate limit reached for {where}: Limit {refusal.limit}, Used {refusal.used}, "
            f"Requested {refusal.requested}. Please try again in {format_duration(refusal.wait_s)}."
        )
    type_ = "tokens" if refusal.label == "quota_tpm" else "requests"
    return error_body(message + " (flink-llm simulator quota)", type_, None, "rate_limit_exceeded")


def concurrency_error_body(limit: int, in_flight: int, retry_after_s: float) -> dict[str, Any]:
    """The 429 body when a key already has ``in_flight`` >= ``limit`` (``quota_max_concurrent``) requests."""
    message = (
        f"Rate limit reached in organization {_ORGANIZATION} on concurrent requests: Limit {limit}, "
        f"Used {in_flight}, Requested 1. Please try again in {format_duration(retry_after_s)}."
    )
    return error_body(message + " (flink-llm simulator quota)", "requests", None, "rate_limit_exceeded")


def _require_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise RequestError("The request body must be a JSON object.")
    return body


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("You must provide a model parameter.", "model")
    return model


def _optional_int(body: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise RequestError(f"Invalid '{name}': expected an integer {bound}, got {value!r}.", name)
    return value


def _check_message(index: int, message: Any) -> Mapping[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise RequestError(f"Invalid '{where}': expected an object with a 'role'.", where)
    content = message.get("content")
    if content is None or isinstance(content, str):
        return message
    if not isinstance(content, list):
        raise RequestError(f"Invalid '{where}.content': expected a string or a list.", f"{where}.content")
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        ok = (
            (kind == "text" and isinstance(part.get("text"), str))
            or (kind == "image_url" and isinstance(part.get("image_url"), (Mapping, str)))
            or kind not in (None, "text", "image_url")
        )
        if not ok:
            raise RequestError(f"Invalid '{where}.content[{j}]': bad content part.", f"{where}.content[{j}]")
    return message


def _check_json_schema(response_format: Mapping[str, Any], row_text: str) -> None:
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise RequestError(
            "Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise RequestError(
            "Missing required parameter: 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if not isinstance(schema, Mapping):
        raise RequestError(
            "Invalid 'response_format.json_schema.schema': expected an object.",
            "response_format.json_schema.schema",
        )
    try:
        structured_reply(schema, row_text)
    except SchemaError as exc:
        raise RequestError(f"Invalid schema for response_format '{name}': {exc}", "response_format") from None


def parse_chat(raw: Any, *, json_schema_support: bool = True) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body.

    A ``json_schema`` response format is refused like a model without structured outputs when
    ``json_schema_support`` is false, and checked (name, schema, a schema the simulator can
    answer) otherwise.
    """
    body = _require_object(raw)
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array.", "messages")
    checked = tuple(_check_message(i, m) for i, m in enumerate(messages))
    max_tokens = _optional_int(body, "max_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_completion_tokens", 1, None)
    stop = body.get("stop")
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop = tuple(stop)
    elif stop is not None and not isinstance(stop, str):
        raise RequestError("Invalid 'stop': expected a string or an array of strings.", "stop")
    n = _optional_int(body, "n", 1, MAX_CHOICES) or 1
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("Invalid 'seed': expected an integer.", "seed")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, Mapping)
        or response_format.get("type") not in ("text", "json_object", "json_schema")
    ):
        raise RequestError(
            "Invalid 'response_format': type must be 'text', 'json_object' or 'json_schema'.",
            "response_format",
        )
    if response_format is not None and response_format.get("type") == "json_schema":
        if not json_schema_support:
            raise RequestError(JSON_SCHEMA_UNSUPPORTED, "response_format")
        _check_json_schema(response_format, first_user_text(checked))
    return ChatRequest(model, checked, max_tokens, stop, n, seed, response_format)


def parse_embeddings(raw: Any) -> EmbeddingsRequest:
    """Validate a ``/v1/embeddings`` body (``input`` is a string or a list of strings)."""
    body = _require_object(raw)
    model = _model(body)
    value = body.get("input")
    if isinstance(value, str):
        inputs: tuple[str, ...] = (value,)
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        inputs = tuple(value)
    else:
        raise RequestError("'input' must be a string or a non-empty array of strings.", "input")
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise RequestError("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format")
    dimensions = _optional_int(body, "dimensions", 1, MAX_DIMENSIONS)
    return EmbeddingsRequest(model, inputs, encoding_format, dimensions)


def chat_completion(
    request: ChatRequest, *, response_id: str, created: int, content_fault: ContentFault | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object with the deterministic choices and word-count usage.

    ``content_fault`` spoils a structured reply's content (see :mod:`._replies`).
    """
    choices = []
    completion_tokens = 0
    for index in range(request.n):
        choice = expected_chat_choice(
            request.messages,
            choice_index=index,
            max_tokens=request.max_tokens,
            stop=request.stop,
            response_format=request.response_format,
            content_fault=content_fault,
        )
        completion_tokens += count_words(choice.content)
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": choice.content},
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
        )
    prompt_tokens = expected_prompt_tokens(request.messages)
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "system_fingerprint": "fp_sim" if request.seed is None else f"fp_sim_seed_{request.seed}",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _encode_vector(vector: Sequence[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return list(vector)


def embeddings_response(request: EmbeddingsRequest, default_dimensions: int) -> dict[str, Any]:
    """A ``list`` of one deterministic embedding per input, in input order."""
    dims = request.dimensions or default_dimensions
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encode_vector(expected_embedding(text, dims), request.encoding_format),
        }
        for i, text in enumerate(request.inputs)
    ]
    tokens = sum(count_words(text) for text in request.inputs)
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_response(models: Sequence[str]) -> dict[str, Any]:
    """``GET /v1/models`` body."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "flink-llm-simulator"} for m in models
        ],
    }


def malformed_body(kind: str, variant: str, model: str) -> bytes:
    """A 200 body a client must reject: truncated JSON (``json``) or no results (``shape``)."""
    if variant == "shape":
        obj = "chat.completion" if kind == "chat" else "list"
        return json.dumps({"id": "sim-malformed", "object": obj, "model": model}).encode()
    return b'{"id": "sim-malformed", "object": "chat.completion", "choices": [{"index": 0, "mes'

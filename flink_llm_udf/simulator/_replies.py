"""Deterministic replies, embeddings and usage: pure functions shared by server and tests.

The simulator's answer depends only on the request, never on options, timing or faults, so a
test anywhere in the project can compute what a row must come back with.

Chat reply format (before ``stop``/``max_tokens`` cuts)::

    ANSWER[<first user text>]                     one user message
    ANSWER[<first>] PROMPT[<second>]              two user messages
    ANSWER[<first>] PROMPT[<second>] PROMPT[...]  every later user message, in order
    ... #<k>                                      suffix for choice k > 0 (n > 1)

* A message's text is its string ``content``; for a list of content parts it is the parts
  joined by one space, where a ``text`` part gives its ``text`` and an ``image_url`` part its
  ``url``. System and assistant messages do not change the reply.
* Inside the brackets ``\\`` is written ``\\\\`` and ``]`` is written ``\\]``, so the mapping
  from user texts to reply is injective (``[`` is left alone: ``ANSWER[[x\\]]`` for ``[x]``).
* A simulator "token" is a whitespace-delimited word. ``stop`` cuts the reply just before the
  earliest occurrence of any stop string (``finish_reason`` stays ``"stop"``); then
  ``max_tokens`` keeps the first N words, original spacing intact (``finish_reason``
  ``"length"`` when something was cut).
* ``response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": S}}`` makes
  the content ``json.dumps(structured_reply(S, <first user text>), ensure_ascii=False)`` (see
  :mod:`._structured_replies`), the same for every choice, never cut by ``stop`` or
  ``max_tokens`` (``finish_reason`` ``"stop"``).
* ``response_format={"type": "json_object"}`` with a system (or developer) message holding a
  line ``JSON schema:`` and the schema as JSON on the next line: the same, for that schema.
  Without such a line (or when its schema cannot be answered) the content is the JSON object
  ``{"answer": <cut reply>, "input": <first user text>}``, always valid JSON.
* A content fault (``invalid_json`` or ``schema_violation``, injected at random or by a
  directive) changes a ``json_schema``/``json_object`` reply only: ``invalid_json`` makes it
  :data:`~._structured_replies.INVALID_JSON_REPLY`; ``schema_violation`` makes it
  ``schema_violation(S, <first user text>)``, or for ``json_object`` without a schema the
  object above without ``"answer"``.
* ``seed``, ``temperature``, ``top_p`` and penalties are accepted and ignored: replies are
  deterministic anyway (the server echoes ``seed`` in ``system_fingerprint``).

Usage: ``prompt_tokens`` is the word count of every message's text, ``completion_tokens`` the
word count of every choice's content.

Embeddings: SHAKE-256 of the UTF-8 text gives ``dimensions`` little-endian uint16 values,
mapped to [-1, 1] and L2-normalised (default 16 dimensions).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._behaviour import DEFAULT_EMBEDDING_DIMENSIONS
from ._structured_replies import (
    INVALID_JSON_REPLY,
    NO_VIOLATION,
    SchemaError,
    schema_in_prompt,
    schema_violation,
    structured_reply,
)

__all__ = [
    "CONTENT_FAULTS",
    "ChatChoice",
    "ContentFault",
    "content_text",
    "count_words",
    "cut_reply",
    "expected_chat_choice",
    "expected_chat_reply",
    "expected_embedding",
    "expected_prompt_tokens",
    "first_user_text",
    "json_schema_of",
    "response_format_type",
    "user_texts",
]

_WORD = re.compile(r"\S+")

#: Faults that keep a 200 answer but spoil a structured reply's content.
ContentFault = Literal["invalid_json", "schema_violation"]
CONTENT_FAULTS: tuple[ContentFault, ...] = ("invalid_json", "schema_violation")


@dataclass(frozen=True, slots=True)
class ChatChoice:
    """One simulated choice: the assistant content and why it ended (``stop`` or ``length``)."""

    content: str
    finish_reason: str


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or content parts joined by one space."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            pieces.append(str(part.get("text", "")))
        elif kind == "image_url":
            image = part.get("image_url")
            pieces.append(str(image.get("url", "")) if isinstance(image, Mapping) else str(image))
    return " ".join(pieces)


def user_texts(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Texts of the user messages, in order."""
    return [content_text(m.get("content")) for m in messages if m.get("role") == "user"]


def first_user_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """Text of the first user message (the row's input), or ``""`` when there is none."""
    for m in messages:
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("]", "\\]")


def _full_reply(messages: Sequence[Mapping[str, Any]], choice_index: int) -> str:
    texts = user_texts(messages)
    first = texts[0] if texts else ""
    parts = [f"ANSWER[{_escape(first)}]"]
    parts.extend(f"PROMPT[{_escape(t)}]" for t in texts[1:])
    if choice_index > 0:
        parts.append(f"#{choice_index}")
    return " ".join(parts)


def _stop_list(stop: str | Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop if s]


def cut_reply(
    reply: str, *, max_tokens: int | None = None, stop: str | Sequence[str] | None = None
) -> ChatChoice:
    """Apply ``stop`` (cut before the earliest stop string) then ``max_tokens`` (keep N words)."""
    positions = [i for s in _stop_list(stop) if (i := reply.find(s)) >= 0]
    if positions:
        reply = reply[: min(positions)]
    if max_tokens is not None and len(reply.split()) > max_tokens:  # split: cheap common case
        end = 0
        for count, match in enumerate(_WORD.finditer(reply), start=1):
            if count == max_tokens:
                end = match.end()
                break
        return ChatChoice(reply[:end], "length")
    return ChatChoice(reply, "stop")


def response_format_type(response_format: Mapping[str, Any] | str | None) -> str | None:
    """``response_format``'s ``type`` (``text``, ``json_object``, ``json_schema``), if any."""
    kind = response_format.get("type") if isinstance(response_format, Mapping) else response_format
    return kind if isinstance(kind, str) else None


def json_schema_of(response_format: Mapping[str, Any] | str | None) -> Mapping[str, Any] | None:
    """The schema of a ``json_schema`` response format (``json_schema.schema``), if it has one."""
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return schema if isinstance(schema, Mapping) else None


def _structured_choice(schema: Mapping[str, Any], row_text: str, fault: ContentFault | None) -> ChatChoice:
    if fault == "invalid_json":
        return ChatChoice(INVALID_JSON_REPLY, "stop")
    value = structured_reply(schema, row_text) if fault is None else schema_violation(schema, row_text)
    if value is NO_VIOLATION:
        return ChatChoice(INVALID_JSON_REPLY, "stop")
    return ChatChoice(json.dumps(value, ensure_ascii=False), "stop")


def expected_chat_choice(
    messages: Sequence[Mapping[str, Any]],
    *,
    choice_index: int = 0,
    max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    response_format: Mapping[str, Any] | str | None = None,
    content_fault: ContentFault | None = None,
) -> ChatChoice:
    """The content and finish_reason the simulator returns for choice ``choice_index``.

    ``content_fault`` is what an ``invalid_json`` or ``schema_violation`` fault makes of a
    structured reply (it leaves other replies alone).
    """
    kind = response_format_type(response_format)
    if kind in ("json_schema", "json_object"):
        row = first_user_text(messages)
        schema = json_schema_of(response_format)
        if schema is None and kind == "json_object":
            prompts = (content_text(m.get("content")) for m in messages if m.get("role") in _SYSTEM_ROLES)
            schema = schema_in_prompt(prompts)
        if schema is not None:
            try:
                return _structured_choice(schema, row, content_fault)
            except SchemaError:
                if kind == "json_schema":
                    raise
        if content_fault == "invalid_json":
            return ChatChoice(INVALID_JSON_REPLY, "stop")
        choice = cut_reply(_full_reply(messages, choice_index), max_tokens=max_tokens, stop=stop)
        body = {"answer": choice.content, "input": row}
        if content_fault == "schema_violation":
            del body["answer"]
        return ChatChoice(json.dumps(body, ensure_ascii=False), choice.finish_reason)
    return cut_reply(_full_reply(messages, choice_index), max_tokens=max_tokens, stop=stop)


_SYSTEM_ROLES = ("system", "developer")


def expected_chat_reply(
    messages: Sequence[Mapping[str, Any]],
    *,
    choice_index: int = 0,
    max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    response_format: Mapping[str, Any] | str | None = None,
    content_fault: ContentFault | None = None,
) -> str:
    """The assistant content the simulator returns; see the module docstring for the format.

    >>> expected_chat_reply([{"role": "user", "content": "hi"}])
    'ANSWER[hi]'
    """
    return expected_chat_choice(
        messages,
        choice_index=choice_index,
        max_tokens=max_tokens,
        stop=stop,
        response_format=response_format,
        content_fault=content_fault,
    ).content


def count_words(text: str) -> int:
    """Simulator token count: whitespace-delimited words."""
    return len(text.split())


def expected_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """``usage.prompt_tokens`` of a chat request: words in every message's text."""
    return sum(count_words(content_text(m.get("content"))) for m in messages)


def expected_embedding(text: str, dimensions: int | None = None) -> list[float]:
    """Deterministic unit-length embedding of ``text`` (default 16 dimensions)."""
    dims = DEFAULT_EMBEDDING_DIMENSIONS if dimensions is None else dimensions
    if dims < 1:
        raise ValueError(f"dimensions must be >= 1, got {dims!r}")
    raw = struct.unpack(f"<{dims}H", hashlib.shake_256(text.encode("utf-8")).digest(2 * dims))
    values = [v / 32767.5 - 1.0 for v in raw]
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0.0:  # astronomically unlikely; keep the vector unit-length anyway
        return [1.0] + [0.0] * (dims - 1)
    return [v / norm for v in values]

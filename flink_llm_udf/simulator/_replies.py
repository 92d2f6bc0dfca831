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
* ``response_format={"type": "json_object"}`` (or ``json_schema``) makes the content the JSON
  object ``{"answer": <cut reply>, "input": <first user text>}``, always valid JSON.
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
from typing import Any

from ._behaviour import DEFAULT_EMBEDDING_DIMENSIONS

__all__ = [
    "ChatChoice",
    "content_text",
    "count_words",
    "cut_reply",
    "expected_chat_choice",
    "expected_chat_reply",
    "expected_embedding",
    "expected_prompt_tokens",
    "first_user_text",
    "user_texts",
]

_WORD = re.compile(r"\S+")


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


def _is_json_format(response_format: Mapping[str, Any] | str | None) -> bool:
    kind = response_format.get("type") if isinstance(response_format, Mapping) else response_format
    return kind in ("json_object", "json_schema")


def expected_chat_choice(
    messages: Sequence[Mapping[str, Any]],
    *,
    choice_index: int = 0,
    max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    response_format: Mapping[str, Any] | str | None = None,
) -> ChatChoice:
    """The content and finish_reason the simulator returns for choice ``choice_index``."""
    choice = cut_reply(_full_reply(messages, choice_index), max_tokens=max_tokens, stop=stop)
    if _is_json_format(response_format):
        body = {"answer": choice.content, "input": first_user_text(messages)}
        return ChatChoice(json.dumps(body, ensure_ascii=False), choice.finish_reason)
    return choice


def expected_chat_reply(
    messages: Sequence[Mapping[str, Any]],
    *,
    choice_index: int = 0,
    max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    response_format: Mapping[str, Any] | str | None = None,
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

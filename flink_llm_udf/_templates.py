"""Prompt templates with named placeholders over a row's columns: ``'Product: {product} Review: {review}'``.

A template is checked once, at configuration time (``PromptTemplate.parse``), and rendered in
one pass per row: each ``{name}`` is replaced by the text of that column's value, inserted
literally, so a value that itself contains ``{x}``, braces, quotes or backslashes is never read
again. ``{{`` and ``}}`` are literal braces. A NULL column makes the whole prompt NULL, as in
SQL's ``'a' || NULL``: the row is answered NULL without a request.

A row's input reaches the template as a mapping, or as the JSON object that Flink SQL's
``JSON_OBJECT('product' VALUE product, 'review' VALUE review)`` produces (``fields_of_input``).
Keep ``JSON_OBJECT``'s default ``NULL ON NULL``: with ``ABSENT ON NULL`` a NULL column is a
missing field, which is an error rather than a NULL prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import FlinkLLMError, InvalidOptionError

#: Fields a plain string input fills when the template names only one of them.
TEXT_FIELDS = ("text", "input")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_SHOWN_CHARS = 80


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


class TemplateInputError(FlinkLLMError, ValueError):
    """A row's input does not fit the prompt template."""


class TemplateFieldError(TemplateInputError, KeyError):
    """A row lacks a field the prompt template names."""

    def __init__(self, field: str, given: tuple[str, ...] = ()) -> None:
        self.field = field
        self.given = given
        shown = f"has: {', '.join(given)}" if given else "has no fields"
        super().__init__(f"the prompt template needs the field {field!r}; the row {shown}")

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A prompt with ``{name}`` placeholders; ``{{`` and ``}}`` are literal braces.

    A name is letters, digits, ``_`` and ``-``, starting with a letter or ``_``.
    ``PromptTemplate(text)`` and ``PromptTemplate.parse(text)`` are the same; either raises
    ``InvalidOptionError`` on a brace that is neither a placeholder nor doubled.
    """

    text: str
    #: the literal text around the placeholders: one more than ``placeholders``
    literals: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: the placeholders in order, repeats included
    placeholders: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        literals, placeholders = _split(self.text)
        object.__setattr__(self, "literals", literals)
        object.__setattr__(self, "placeholders", placeholders)

    @classmethod
    def parse(cls, text: str) -> PromptTemplate:
        """The template of ``text``, checked; raises ``InvalidOptionError`` naming the bad brace."""
        return cls(text)

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields the template names, in order of first use, each once."""
        return tuple(dict.fromkeys(self.placeholders))

    def render(self, values: Mapping[str, object]) -> str | None:
        """The prompt for one row, or ``None`` when a field's value is ``None`` (NULL).

        Raises ``TemplateFieldError`` when ``values`` lacks a field. Strings go in as they are;
        ``True``/``False`` as ``true``/``false``; numbers as ``str``; lists and mappings as
        compact JSON.
        """
        literals = self.literals
        parts = [literals[0]]
        for i, name in enumerate(self.placeholders, 1):
            try:
                value = values[name]
            except KeyError:
                raise TemplateFieldError(name, tuple(map(str, values))) from None
            if value is None:
                return None
            parts.append(value if isinstance(value, str) else value_text(value))
            parts.append(literals[i])
        return "".join(parts)


def _split(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The literal parts and placeholder names of a template, or ``InvalidOptionError``."""
    if not isinstance(text, str):
        raise InvalidOptionError(f"a prompt template must be a string, got {type(text).__name__}")
    literals: list[str] = []
    placeholders: list[str] = []
    current: list[str] = []
    pos, start = 0, 0
    while True:
        brace = _next_brace(text, pos)
        if brace < 0:
            current.append(text[start:])
            break
        char = text[brace]
        if text.startswith(char, brace + 1):  # a doubled brace is one literal brace
            current.append(text[start : brace + 1])
            pos = start = brace + 2
            continue
        if char == "}":
            raise _brace_error(text, f"unmatched '}}' at position {brace}; write '}}}}' for a literal brace")
        match = _PLACEHOLDER.match(text, brace)
        if match is None:
            close = text.find("}", brace)
            if close < 0 or "{" in text[brace + 1 : close]:
                raise _brace_error(
                    text, f"unmatched '{{' at position {brace}; write '{{{{' for a literal brace"
                )
            raise _brace_error(
                text,
                f"{_shown(text[brace : close + 1])!r} at position {brace} is not a placeholder: a name is "
                "letters, digits, '_' and '-', starting with a letter or '_'; write '{{' for a literal brace",
            )
        current.append(text[start:brace])
        literals.append("".join(current))
        current = []
        placeholders.append(match.group(1))
        pos = start = match.end()
    literals.append("".join(current))
    return tuple(literals), tuple(placeholders)


def _next_brace(text: str, pos: int) -> int:
    opening, closing = text.find("{", pos), text.find("}", pos)
    if opening < 0 or closing < 0:
        return max(opening, closing)
    return min(opening, closing)


def _brace_error(text: str, what: str) -> InvalidOptionError:
    return InvalidOptionError(f"prompt template {_shown(text)!r}: {what}")


def value_text(value: object) -> str:
    """A column value as prompt text: ``true``/``false``, ``str`` for numbers, JSON for containers."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):  # float's own repr: NumPy 2 scalars would show np.float64(...)
        return float.__repr__(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    if hasattr(value, "tolist"):  # a NumPy array or scalar, as PyFlink's Pandas UDFs pass them
        return value_text(value.tolist())
    return str(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def fields_of_input(value: object, template: PromptTemplate) -> Mapping[str, Any] | None:
    """The fields a row's input gives ``template``; ``None`` when the input is NULL.

    A mapping is used as it is. A string fills the template's only field when that is ``text``
    or ``input``; otherwise it must be a JSON object (Flink SQL's ``JSON_OBJECT``), in which a
    JSON ``null`` is a NULL column. A template without placeholders needs no fields.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value
    fields = template.fields
    if not fields:
        return {}
    if isinstance(value, str):
        if len(fields) == 1 and fields[0] in TEXT_FIELDS:
            return {fields[0]: value}
        if value.lstrip().startswith("{"):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                return parsed
        got = f"text that is not a JSON object: {_shown(value)!r}"
    else:
        got = f"{type(value).__name__} {_shown(repr(value))}"
    example = ", ".join(f"'{name}' VALUE {name}" for name in fields[:2])
    raise TemplateInputError(
        f"the prompt template needs the fields {', '.join(fields)}: give the row as "
        f"JSON_OBJECT({example}{', …' if len(fields) > 2 else ''}) or a mapping, got {got}"
    )

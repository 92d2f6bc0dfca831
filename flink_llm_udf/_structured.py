"""Structured output without PyFlink or HTTP: result schemas, labels, and reply validation.

A result type arrives as a Flink SQL type string (``ROW<sentiment STRING, score DOUBLE>``), a
JSON-schema text, or a list of labels. ``parse_type_string`` reads a type string into a small
``FlinkType`` tree (from which the Flink layer builds its ``DataType``) and ``json_schema_of``
turns that tree into the JSON schema sent as ``response_format``. ``OutputValidator`` checks each
reply against the schema and returns the parsed object or raises ``InvalidOutputError``.

Nullable Flink types (Flink's default) become the JSON type plus ``null``; every ROW field is
listed in ``required`` and no other property is allowed, which is what OpenAI's ``strict: true``
demands. Type-string errors raise ``InvalidOptionError`` naming the text and the position.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema.exceptions import SchemaError, best_match
from jsonschema.validators import validator_for

from ._errors import FlinkLLMError, InvalidOptionError, InvalidOptionTypeError

TypeKind = Literal[
    "ROW", "ARRAY", "MAP", "STRING", "VARCHAR", "CHAR", "BOOLEAN", "TINYINT", "SMALLINT", "INT",
    "BIGINT", "FLOAT", "DOUBLE", "DECIMAL", "DATE", "TIME", "TIMESTAMP", "TIMESTAMP_LTZ",
]  # fmt: skip

#: The marker line before the schema in the json_object fallback's system prompt.
SCHEMA_MARKER = "JSON schema:"
#: How much of a bad reply an error message shows.
_SHOWN_REPLY_CHARS = 80
_SHOWN_MESSAGE_CHARS = 200


class InvalidOutputError(FlinkLLMError):
    """A reply that is not JSON or does not match the result schema."""


# --- the type tree --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FlinkField:
    """One field of a ROW: its name, type, and the optional description written after the type."""

    name: str
    type: FlinkType
    description: str | None = None


@dataclass(frozen=True, slots=True)
class FlinkType:
    """A Flink logical type read from a type string.

    ``kind`` is the canonical name (``INTEGER`` reads as ``INT``, ``NUMERIC`` as ``DECIMAL``,
    ``DOUBLE PRECISION`` as ``DOUBLE``); ``params`` hold the length or precision and scale, with
    Flink's defaults filled in when the text omits them (``DECIMAL`` is ``(10, 0)``, ``VARCHAR``
    ``(1,)``, ``TIMESTAMP`` ``(6,)``); ``fields`` are a ROW's fields; ``children`` an ARRAY's
    element type or a MAP's key and value types.
    """

    kind: TypeKind
    nullable: bool = True
    params: tuple[int, ...] = ()
    fields: tuple[FlinkField, ...] = ()
    children: tuple[FlinkType, ...] = ()


_SIMPLE: dict[str, TypeKind] = {
    "STRING": "STRING",
    "BOOLEAN": "BOOLEAN",
    "TINYINT": "TINYINT",
    "SMALLINT": "SMALLINT",
    "INT": "INT",
    "INTEGER": "INT",
    "BIGINT": "BIGINT",
    "FLOAT": "FLOAT",
    "DATE": "DATE",
}
_DECIMAL_NAMES = frozenset({"DECIMAL", "DEC", "NUMERIC"})
_JSON_TYPE: dict[str, str] = {
    "STRING": "string", "VARCHAR": "string", "CHAR": "string", "DATE": "string", "TIME": "string",
    "TIMESTAMP": "string", "TIMESTAMP_LTZ": "string", "BOOLEAN": "boolean", "TINYINT": "integer",
    "SMALLINT": "integer", "INT": "integer", "BIGINT": "integer", "FLOAT": "number",
    "DOUBLE": "number", "DECIMAL": "number", "ARRAY": "array", "MAP": "object",
}  # fmt: skip
_FORMAT = {"DATE": "date", "TIME": "time", "TIMESTAMP": "date-time", "TIMESTAMP_LTZ": "date-time"}
_CLOSER = {"<": ">", "(": ")"}


# --- reading a type string ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["word", "number", "quoted", "string", "punct", "end"]
    text: str
    pos: int


_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"\d+")


def _shown(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class _TypeReader:
    """A recursive-descent reader over the tokens of one type string."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize()
        self.i = 0

    def error(self, what: str) -> InvalidOptionError:
        return InvalidOptionError(f"cannot read the type {_shown(self.text, 200)!r}: {what}")

    def _tokenize(self) -> list[_Token]:
        text, pos, tokens = self.text, 0, []
        while pos < len(text):
            char = text[pos]
            if char.isspace():
                pos += 1
            elif char in "<>(),":
                tokens.append(_Token("punct", char, pos))
                pos += 1
            elif char in "`'":
                # Both quotes escape themselves by doubling, as in Flink SQL.
                value, end = [], pos + 1
                while True:
                    close = text.find(char, end)
                    if close < 0:
                        what = "field name" if char == "`" else "description"
                        raise self.error(f"unterminated {what} starting at position {pos}")
                    value.append(text[end:close])
                    if text.startswith(char, close + 1):
                        value.append(char)
                        end = close + 2
                        continue
                    break
                tokens.append(_Token("quoted" if char == "`" else "string", "".join(value), pos))
                pos = close + 1
            elif match := _NUMBER.match(text, pos):
                tokens.append(_Token("number", match.group(), pos))
                pos = match.end()
            elif match := _WORD.match(text, pos):
                tokens.append(_Token("word", match.group(), pos))
                pos = match.end()
            else:
                raise self.error(f"unexpected character {char!r} at position {pos}")
        tokens.append(_Token("end", "", len(text)))
        return tokens

    # -- token helpers --
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def found(self, token: _Token) -> str:
        return "the end" if token.kind == "end" else repr(token.text)

    def expected(self, what: str) -> InvalidOptionError:
        token = self.peek()
        return self.error(f"expected {what} at position {token.pos}, found {self.found(token)}")

    def accept_word(self, *words: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.upper() in words:
            self.i += 1
            return True
        return False

    def expect_word(self, word: str) -> None:
        if not self.accept_word(word):
            raise self.expected(repr(word))

    def accept_punct(self, char: str) -> bool:
        token = self.peek()
        if token.kind == "punct" and token.text == char:
            self.i += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        if not self.accept_punct(char):
            raise self.expected(repr(char))

    def number(self, what: str, low: int, high: int) -> int:
        token = self.peek()
        if token.kind != "number":
            raise self.expected(what)
        value = int(self.advance().text)
        if not low <= value <= high:
            raise self.error(f"{what} must be between {low} and {high}, got {value} at position {token.pos}")
        return value

    def optional_params(self, what: str, low: int, high: int) -> int | None:
        if not self.accept_punct("("):
            return None
        value = self.number(what, low, high)
        self.expect_punct(")")
        return value

    # -- grammar --
    def read(self) -> FlinkType:
        flink_type = self.type()
        if self.peek().kind != "end":
            raise self.expected("the end of the type")
        return flink_type

    def type(self) -> FlinkType:
        token = self.peek()
        if token.kind != "word":
            raise self.expected("a type")
        name = self.advance().text.upper()
        flink_type = self.type_body(name, token)
        if self.accept_word("NOT"):
            self.expect_word("NULL")
            return _with_nullable(flink_type, False)
        self.accept_word("NULL")
        return flink_type

    def type_body(self, name: str, token: _Token) -> FlinkType:
        if name in _SIMPLE:
            return FlinkType(_SIMPLE[name])
        if name == "DOUBLE":
            self.accept_word("PRECISION")
            return FlinkType("DOUBLE")
        if name in ("VARCHAR", "CHAR"):
            length = self.optional_params("a length", 1, 2_147_483_647)
            return FlinkType("VARCHAR" if name == "VARCHAR" else "CHAR", params=(length or 1,))
        if name in _DECIMAL_NAMES:
            return self.decimal()
        if name == "TIME":
            precision = self.optional_params("a precision", 0, 9)
            self.without_time_zone()
            return FlinkType("TIME", params=(0 if precision is None else precision,))
        if name in ("TIMESTAMP", "TIMESTAMP_LTZ"):
            precision = self.optional_params("a precision", 0, 9)
            params = (6 if precision is None else precision,)
            if name == "TIMESTAMP_LTZ":
                return FlinkType("TIMESTAMP_LTZ", params=params)
            if self.accept_word("WITH"):
                self.expect_word("LOCAL")
                self.expect_word("TIME")
                self.expect_word("ZONE")
                return FlinkType("TIMESTAMP_LTZ", params=params)
            self.without_time_zone()
            return FlinkType("TIMESTAMP", params=params)
        if name == "ARRAY":
            self.expect_punct("<")
            element = self.type()
            self.expect_punct(">")
            return FlinkType("ARRAY", children=(element,))
        if name == "MAP":
            return self.map(token)
        if name == "ROW":
            return self.row(token)
        raise self.error(f"unknown type {token.text!r} at position {token.pos}")

    def without_time_zone(self) -> None:
        if self.accept_word("WITHOUT"):
            self.expect_word("TIME")
            self.expect_word("ZONE")

    def decimal(self) -> FlinkType:
        precision, scale = 10, 0
        if self.accept_punct("("):
            precision = self.number("a precision", 1, 38)
            if self.accept_punct(","):
                scale = self.number("a scale", 0, precision)
            self.expect_punct(")")
        return FlinkType("DECIMAL", params=(precision, scale))

    def map(self, token: _Token) -> FlinkType:
        self.expect_punct("<")
        key = self.type()
        if key.kind not in ("STRING", "VARCHAR", "CHAR"):
            raise self.error(
                f"the MAP at position {token.pos} has {key.kind} keys; structured output needs "
                "STRING keys (JSON object keys are strings)"
            )
        self.expect_punct(",")
        value = self.type()
        self.expect_punct(">")
        return FlinkType("MAP", children=(key, value))

    def row(self, token: _Token) -> FlinkType:
        opener = self.peek()
        if not (self.accept_punct("<") or self.accept_punct("(")):
            raise self.expected("'<' or '(' after ROW")
        closer = _CLOSER[opener.text]
        fields: list[FlinkField] = []
        names: set[str] = set()
        while True:
            name_token = self.peek()
            if name_token.kind not in ("word", "quoted"):
                raise self.expected("a field name")
            self.advance()
            if name_token.text in names:
                raise self.error(f"the field name {name_token.text!r} repeats at position {name_token.pos}")
            names.add(name_token.text)
            field_type = self.type()
            description = self.advance().text if self.peek().kind == "string" else None
            fields.append(FlinkField(name_token.text, field_type, description))
            if self.accept_punct(closer):
                return FlinkType("ROW", fields=tuple(fields))
            if not self.accept_punct(","):
                raise self.expected(f"',' or {closer!r}")


def _with_nullable(flink_type: FlinkType, nullable: bool) -> FlinkType:
    return FlinkType(flink_type.kind, nullable, flink_type.params, flink_type.fields, flink_type.children)


def parse_type_string(text: str) -> FlinkType:
    """Read a Flink SQL type string whose top level is a ROW; the ROW itself is never nullable.

    Keywords are case-insensitive; field names keep their case and may be backquoted. Raises
    ``InvalidOptionError`` naming the text, the position and what was expected.
    """
    if not isinstance(text, str):
        raise InvalidOptionTypeError(f"a result type must be a type string, got {type(text).__name__}")
    reader = _TypeReader(text)
    flink_type = reader.read()
    if flink_type.kind != "ROW":
        raise reader.error(
            f"the result type must be a ROW<...>, got {flink_type.kind}: structured output is an object"
        )
    return _with_nullable(flink_type, False)


# --- JSON schemas ---------------------------------------------------------------------------------
def json_schema_of(flink_type: FlinkType) -> dict[str, Any]:
    """The JSON schema of values of ``flink_type``: nullable types also accept ``null``."""
    if flink_type.kind == "ROW":
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {field.name: _field_schema(field) for field in flink_type.fields},
            "required": [field.name for field in flink_type.fields],
            "additionalProperties": False,
        }
        return {"anyOf": [schema, {"type": "null"}]} if flink_type.nullable else schema
    json_type = _JSON_TYPE[flink_type.kind]
    schema = {"type": [json_type, "null"] if flink_type.nullable else json_type}
    if flink_type.kind == "ARRAY":
        schema["items"] = json_schema_of(flink_type.children[0])
    elif flink_type.kind == "MAP":
        schema["additionalProperties"] = json_schema_of(flink_type.children[1])
    elif flink_type.kind in _FORMAT:
        schema["format"] = _FORMAT[flink_type.kind]
    return schema


def _field_schema(field: FlinkField) -> dict[str, Any]:
    schema = json_schema_of(field.type)
    return schema if field.description is None else {**schema, "description": field.description}


def schema_from_type_string(text: str) -> dict[str, Any]:
    """The JSON schema of a Flink ROW type string, e.g. ``ROW<sentiment STRING, score DOUBLE>``."""
    return json_schema_of(parse_type_string(text))


def schema_from_argument(text: str) -> dict[str, Any]:
    """The schema argument of SQL's ``ai_extract``: a JSON schema (text starting ``{``) or a ROW type.

    A JSON schema must describe an object (``"type": "object"``) and be a valid schema.
    """
    if not isinstance(text, str):
        raise InvalidOptionTypeError(
            f"the schema must be a ROW type string or a JSON schema, got {type(text).__name__}"
        )
    if not text.lstrip().startswith("{"):
        return schema_from_type_string(text)
    shown = _shown(text.strip(), 200)
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidOptionError(f"the JSON schema {shown!r} is not JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise InvalidOptionError(
            f'the JSON schema {shown!r} must have "type": "object": structured output is an object'
        )
    _check_schema(schema)
    return schema


def _check_schema(schema: dict[str, Any]) -> None:
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidOptionError(
            f"the JSON schema {_shown(canonical_json(schema), 200)!r} is not valid: "
            f"at {exc.json_path}: {_shown(exc.message, _SHOWN_MESSAGE_CHARS)}"
        ) from None


#: Keywords that OpenAI's strict mode rejects anywhere in a schema.
_STRICT_UNSUPPORTED = frozenset({"allOf", "oneOf", "not", "if", "then", "else", "patternProperties"})


def is_strict_compatible(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's ``strict: true`` accepts ``schema`` (else the request says ``strict: false``).

    Every object must forbid other properties and require all of its own, recursively through
    properties, items, anyOf and ``$defs``; composition keywords other than anyOf are refused.
    """
    if not isinstance(schema, dict):
        return isinstance(schema, bool)
    if _STRICT_UNSUPPORTED.intersection(schema):
        return False
    types = schema.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in schema
    if is_object:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False or not isinstance(properties, dict):
            return False
        if sorted(schema.get("required", [])) != sorted(properties):
            return False
    return all(is_strict_compatible(sub) for sub in _subschemas(schema))


def _subschemas(schema: dict[str, Any]) -> Iterable[Any]:
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            yield from schema[key].values()
    items = schema.get("items")
    if isinstance(items, dict):
        yield items
    for key in ("anyOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            yield from schema[key]


def canonical_json(obj: Any) -> str:
    """``obj`` as compact JSON with sorted keys, so equal schemas give equal cache/dict keys."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def response_format_json_schema(schema: dict[str, Any], name: str = "row") -> dict[str, Any]:
    """The request's ``response_format`` for ``schema``; ``strict`` only when OpenAI accepts it.

    ``name`` is cut to OpenAI's ``[a-zA-Z0-9_-]{1,64}`` (other characters become ``_``).
    """
    safe_name = _NAME_CHARS.sub("_", name)[:64] or "row"
    return {
        "type": "json_schema",
        "json_schema": {"name": safe_name, "schema": schema, "strict": is_strict_compatible(schema)},
    }


def schema_instruction(schema: dict[str, Any]) -> str:
    """The system-prompt text of the ``json_object`` fallback, ending with the schema.

    The line ``JSON schema:`` is followed by the schema as one line of compact JSON (property
    order kept, since models tend to answer in the order shown); the simulator finds it there.
    """
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    return (
        "Answer with one JSON object and nothing else: no prose and no Markdown code fence. "
        "The object must match this JSON schema.\n"
        f"{SCHEMA_MARKER}\n{compact}"
    )


# --- labels ---------------------------------------------------------------------------------------
def parse_labels(labels: str | Sequence[str]) -> tuple[str, ...]:
    """The labels of ``ai_classify``: one CSV record (``a,"b,c"`` → ``("a", "b,c")``) or a sequence.

    A PyFlink ARRAY arrives as a list or a NumPy array. Whitespace around each label, empty and
    NULL labels, and repeats are dropped (first occurrence kept); at least one label must remain.
    """
    if isinstance(labels, str):
        # Newlines separate labels too: a record that wraps is still a list of labels.
        records = csv.reader(io.StringIO(labels), skipinitialspace=True)
        items: Iterable[object] = [label for record in records for label in record]
    elif isinstance(labels, (bytes, bytearray, dict)) or not hasattr(labels, "__iter__"):
        raise InvalidOptionTypeError(
            f"labels must be a comma-separated string or an array of strings, got {type(labels).__name__}"
        )
    else:
        items = labels
    kept: dict[str, None] = {}
    for item in items:
        if item is None:
            continue
        if not isinstance(item, str):
            raise InvalidOptionTypeError(f"labels must be strings, got {type(item).__name__} {item!r}")
        label = item.strip()
        if label:
            kept.setdefault(label, None)
    if not kept:
        shown = labels if isinstance(labels, str) else list(labels)
        raise InvalidOptionError(f"labels must name at least one label, got {shown!r}")
    return tuple(kept)


def classification_schema(labels: str | Sequence[str]) -> dict[str, Any]:
    """The schema of an ``ai_classify`` reply: ``{"label": <one of the labels>}``."""
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(parse_labels(labels))}},
        "required": ["label"],
        "additionalProperties": False,
    }


# --- validating replies ---------------------------------------------------------------------------
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)


def strip_code_fence(content: str) -> str:
    """The inside of a reply that is one Markdown code fence (```json … ```), else the reply."""
    stripped = content.strip()
    if stripped.startswith("```") and (match := _FENCE.fullmatch(stripped)):
        return match.group(1)
    return content


class OutputValidator:
    """Parses and validates replies against one JSON schema, compiled once.

    Equal schemas give equal, equally hashed validators; pickling keeps only the schema. Formats
    (``date``, ``date-time``) are not checked.
    """

    __slots__ = ("_fast", "_key", "_validator", "schema")

    def __init__(self, schema: dict[str, Any]) -> None:
        _check_schema(schema)
        self.schema = schema
        self._key = canonical_json(schema)
        self._validator = validator_for(schema)(schema, format_checker=None)
        self._fast = _compile(schema)

    def parse(self, content: str) -> Any:
        """The reply's JSON value if it matches the schema, else ``InvalidOutputError``.

        A reply that is wholly a Markdown code fence is read from inside the fence.
        """
        if not isinstance(content, str):
            raise InvalidOutputError(f"the reply has no text, got {type(content).__name__}")
        text = strip_code_fence(content)
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InvalidOutputError(_not_json_message(text, exc)) from None
        fast = self._fast
        if (fast is None or not fast(value)) and not self._validator.is_valid(value):
            error = best_match(self._validator.iter_errors(value))
            raise InvalidOutputError(
                f"the reply does not match the schema: at {error.json_path}: "
                f"{_shown(error.message, _SHOWN_MESSAGE_CHARS)}"
            )
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputValidator) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"OutputValidator({_shown(self._key, 120)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (OutputValidator, (self.schema,))


# --- a quick check for the common schemas ----------------------------------------------------------
# jsonschema walks a schema keyword by keyword at every call (~10 µs for a three-field object,
# a third of the engine's own CPU per row). The schemas of type strings and labels use a handful
# of keywords, so they are compiled into closures that accept exactly the values JSON decoding
# yields. A closure may only say "valid" when jsonschema would: when it says "invalid" (or the
# schema uses another keyword), jsonschema decides and names the error.
Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"description", "title", "format", "default", "examples", "$comment", "$schema"})
_QUICK_KEYWORDS = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
}
_OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties"})
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),  # not 1.0, nor True: jsonschema accepts the former, so it decides
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _compile(schema: Any) -> Check | None:
    """A closure that accepts only values ``schema`` accepts, or ``None`` for other keywords."""
    if schema is True:
        return lambda value: True
    if not isinstance(schema, dict) or not _QUICK_KEYWORDS.issuperset(schema):
        return None
    allowed: frozenset[type] | None = None
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not all(isinstance(name, str) and name in _PY_TYPES for name in names):
            return None
        allowed = frozenset(t for name in names for t in _PY_TYPES[name])
    enum: frozenset[str] | None = None
    if "enum" in schema:
        # Python's == would equate 1, 1.0 and True; only string enums stay exact.
        if not all(isinstance(member, str) for member in schema["enum"]):
            return None
        enum = frozenset(schema["enum"])
    fields_check = items_check = None
    if _OBJECT_KEYWORDS.intersection(schema) and (fields_check := _compile_object(schema)) is None:
        return None
    if "items" in schema and (items_check := _compile(schema["items"])) is None:
        return None
    any_of: tuple[Check, ...] | None = None
    if "anyOf" in schema:
        branches = [_compile(branch) for branch in schema["anyOf"]]
        if any(branch is None for branch in branches):
            return None
        any_of = tuple(branch for branch in branches if branch is not None)

    def check(value: Any) -> bool:
        kind = type(value)
        if allowed is not None and kind not in allowed:
            return False
        if enum is not None and (kind is not str or value not in enum):
            return False
        if fields_check is not None and kind is dict and not fields_check(value):
            return False
        if items_check is not None and kind is list and not all(map(items_check, value)):
            return False
        return any_of is None or any(branch(value) for branch in any_of)

    return check


def _compile_object(schema: dict[str, Any]) -> Check | None:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list):
        return None
    checks = {name: _compile(sub) for name, sub in properties.items()}
    extra_check = None if extra is False else _compile(extra)
    if any(c is None for c in checks.values()) or (extra is not False and extra_check is None):
        return None

    def check_object(value: dict[str, Any]) -> bool:
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            check = checks.get(name)
            if check is None:
                if extra_check is None or not extra_check(item):  # None: no other property allowed
                    return False
            elif not check(item):
                return False
        return True

    return check_object


def _not_json_message(text: str, exc: ValueError) -> str:
    if not text.strip():
        return "the reply is not JSON: it is empty"
    detail = (
        f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        if isinstance(exc, json.JSONDecodeError)
        else str(exc)
    )
    stripped = text.strip()
    if len(stripped) > _SHOWN_REPLY_CHARS:
        return f"the reply is not JSON: {detail} (reply starts {stripped[:_SHOWN_REPLY_CHARS] + '…'!r})"
    return f"the reply is not JSON: {detail} (reply {stripped!r})"

"""Structured replies: a deterministic JSON value for a JSON schema and a row (pure).

The simulator answers a ``response_format`` of type ``json_schema`` with
``json.dumps(structured_reply(schema, row_text), ensure_ascii=False)``, where ``row_text`` is
the first user message's text (the row; see :mod:`._replies`). A ``json_object`` request whose
system prompt has a line that is exactly ``JSON schema:`` (:data:`SCHEMA_MARKER`, surrounding
whitespace ignored) gets the same answer for the schema on the next line
(:func:`schema_in_prompt`).

Every value depends only on the schema, the row and the value's *path*: ``$`` for the root,
``<parent>.<name>`` for an object property, ``<parent>[<i>]`` for array item ``i``
(``$.items[0].label``). Its hash is ::

    stable_hash(row_text, path) = int(sha256((row_text + "|" + path).encode("utf-8")).hexdigest(), 16)

and with ``h`` that number (and "the digest" its hex text, ``sha256(...).hexdigest()``) the
rules are, in the order they are tried:

==========================  ===============================================================
``$ref``                    local only (``#/$defs/X``, ``#/definitions/X``, any ``#/...``
                            pointer): the target, at the same path
``allOf``                   the branches merged (``properties`` joined, ``required`` united)
``const``                   the constant
``enum``                    ``enum[h % len(enum)]``
``anyOf`` / ``oneOf``       the first branch that is not ``{"type": "null"}`` (``null`` if
                            every branch is)
``type`` a list             the first type that is not ``"null"`` (``null`` if it is alone);
                            no ``type``: ``object`` with ``properties``, ``array`` with
                            ``items``/``prefixItems``, else ``string``
``object``                  every property in ``properties`` order (only the ``required`` ones
                            below depth 8, so recursive schemas end); a ``required`` name
                            without a property schema gets ``additionalProperties`` (if a
                            schema) or a string; with no ``properties`` and an
                            ``additionalProperties`` schema (a map), the keys ``key0`` and
                            ``key1``; nothing else is added
``array``                   ``max(2, minItems)`` items, at most ``maxItems``; item ``i`` follows
                            ``prefixItems[i]`` if there is one, else ``items`` (below depth 8:
                            ``minItems`` items)
``string`` with ``format``  ``date``: ``2000-01-01`` + ``h % 10000`` days; ``date-time``: that
                            day at ``(h // 10000) % 86400`` seconds, ``...THH:MM:SSZ``; ``time``:
                            ``HH:MM:SS`` of ``h % 86400`` seconds (no offset, like a Flink
                            ``TIME``); ``email``:
                            ``user-<hex8>@example.com``; ``uri``: ``https://example.com/<hex8>``;
                            ``uuid``: the first 16 bytes of the digest as a UUID
``string`` row-derived      a property whose name contains one of :data:`ROW_TEXT_NAMES`
                            (``text``, ``summary``, ...): the row's first 8 words joined by one
                            space
``string`` otherwise        ``<name>-<hex8>``: the property name (``value`` at the root or for
                            an array item), a dash, the digest's first 8 hex digits
``integer``                 ``lo``/``hi`` the least/greatest integer the bounds allow
                            (``minimum``, ``exclusiveMinimum``, ...): both
                            ``lo + h % (hi - lo + 1)``, only ``lo`` ``lo + h % 100``, only ``hi``
                            ``hi - h % 100``, neither ``h % 100``
``number``                  with ``f = (h % 9999 + 1) / 10000``: both bounds
                            ``lo + (hi - lo) * f`` (strictly inside), only ``lo``
                            ``lo + (h % 10000 + 1) / 100``, only ``hi`` ``hi - (h % 10000 + 1) /
                            100``, neither ``(h % 10000) / 100``
``boolean`` / ``null``      ``h % 2 == 1`` / ``None``
==========================  ===============================================================

Strings are then padded with ``x`` to ``minLength`` and cut to ``maxLength``. ``pattern``,
``multipleOf``, ``uniqueItems`` and ``minProperties`` are not honoured. A schema the rules
cannot follow (a remote ``$ref``, an unknown type, ``minimum > maximum``, recursion that never
ends) raises :class:`SchemaError`; the server answers it with a 400.

Faults: :data:`INVALID_JSON_REPLY` is the content of an ``invalid_json`` fault;
:func:`schema_violation` the value of a ``schema_violation`` fault: the valid reply without the
first ``required`` property of the root object (after ``$ref``/``allOf``/``anyOf``), or, when
the root object has none, a value of a JSON type the root does not allow (the first of
``"not valid for the schema"``, ``12345``, ``True``, ``["not valid"]``, ``{"not": "valid"}``,
``None``). A schema that allows anything cannot be violated: :func:`schema_violation` returns
:data:`NO_VIOLATION` and the server sends :data:`INVALID_JSON_REPLY` instead.

Example (a classification row)::

    >>> schema = {"type": "object", "properties": {"label": {"enum": ["pos", "neg"]}}}
    >>> structured_reply(schema, "great film")["label"] == ["pos", "neg"][
    ...     stable_hash("great film", "$.label") % 2]
    True
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from .._errors import FlinkLLMError

__all__ = [
    "INVALID_JSON_REPLY",
    "NO_VIOLATION",
    "ROW_TEXT_NAMES",
    "SCHEMA_MARKER",
    "SchemaError",
    "schema_in_prompt",
    "schema_violation",
    "stable_hash",
    "structured_reply",
]

#: The line of a system prompt after which a ``json_object`` request carries its schema.
SCHEMA_MARKER = "JSON schema:"

#: Content of an ``invalid_json`` fault: chatty, and the JSON never closes.
INVALID_JSON_REPLY = "Sure! Here is the JSON you asked for: {"

#: A string property whose lower-cased name contains one of these echoes the row's first words.
ROW_TEXT_NAMES: tuple[str, ...] = (
    "text",
    "summary",
    "description",
    "content",
    "answer",
    "reason",
    "explanation",
)

#: :func:`schema_violation`'s answer for a schema that accepts every JSON value.
NO_VIOLATION: Any = object()

_ROW_WORDS = 8
_SHALLOW_DEPTH = 8  # below this, only what the schema requires (recursive schemas end)
_MAX_DEPTH = 64
_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
_WRONG_VALUES: tuple[tuple[frozenset[str], Any], ...] = (
    (frozenset({"string"}), "not valid for the schema"),
    (frozenset({"integer", "number"}), 12345),
    (frozenset({"boolean"}), True),
    (frozenset({"array"}), ["not valid"]),
    (frozenset({"object"}), {"not": "valid"}),
    (frozenset({"null"}), None),
)
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})


class SchemaError(FlinkLLMError, ValueError):
    """A JSON schema the simulator cannot answer (remote ``$ref``, unknown type, bad bounds...)."""


def stable_hash(row_text: str, path: str) -> int:
    """``int(sha256((row_text + "|" + path).encode("utf-8")).hexdigest(), 16)``."""
    return int(_digest(row_text, path), 16)


def _digest(row_text: str, path: str) -> str:
    return hashlib.sha256((row_text + "|" + path).encode("utf-8")).hexdigest()


def structured_reply(schema: Mapping[str, Any], row_text: str) -> Any:
    """The JSON value the simulator answers for ``schema`` and a row; see the module docstring."""
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a schema must be a JSON object, got {schema!r}")
    return _Generator(schema, row_text).value(schema, "$", None, 0)


def schema_in_prompt(texts: Iterable[str]) -> Mapping[str, Any] | None:
    """The schema on the line after the first ``JSON schema:`` line of ``texts``, if it is an object.

    ``None`` when no text has the marker, or the next line is not a JSON object (then the
    request is answered like a ``json_object`` request without a schema).
    """
    for text in texts:
        if SCHEMA_MARKER not in text:
            continue
        lines = text.splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.strip() == SCHEMA_MARKER:
                try:
                    schema = json.loads(lines[i + 1])
                except ValueError:
                    return None
                return schema if isinstance(schema, dict) else None
    return None


def schema_violation(schema: Mapping[str, Any], row_text: str) -> Any:
    """A value that is valid JSON but violates ``schema`` (see the module docstring)."""
    valid = structured_reply(schema, row_text)
    generator = _Generator(schema, row_text)
    root = generator.resolve(schema, 0)
    required = root.get("required")
    if isinstance(valid, dict) and isinstance(required, list):
        missing = next((name for name in required if name in valid), None)
        if missing is not None:
            return {key: value for key, value in valid.items() if key != missing}
    allowed = generator.allowed_types(schema, 0)
    if allowed is None and "allOf" in schema:  # allOf narrows: the merged branches' type holds
        allowed = generator.allowed_types(root, 0)
    if allowed is None:
        return NO_VIOLATION
    for types, value in _WRONG_VALUES:
        if not types & allowed:
            return value
    return NO_VIOLATION


class _Generator:
    """Walks one schema for one row; ``root`` is where ``$ref`` pointers start."""

    __slots__ = ("root", "row_text")

    def __init__(self, root: Mapping[str, Any], row_text: str) -> None:
        self.root = root
        self.row_text = row_text

    # ------------------------------------------------------------- resolution
    def _ref(self, ref: Any) -> Mapping[str, Any]:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise SchemaError(f"only local $ref pointers (#/$defs/...) are supported, got {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/") if ref != "#" else ():
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise SchemaError(f"$ref {ref!r} points nowhere")
        if not isinstance(node, Mapping):
            raise SchemaError(f"$ref {ref!r} does not point to a schema")
        return node

    def resolve(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """Follow ``$ref``, merge ``allOf`` and pick the ``anyOf``/``oneOf`` branch."""
        for _ in range(_MAX_DEPTH):
            if depth > _MAX_DEPTH:
                break
            if "$ref" in schema:
                target = self._ref(schema["$ref"])
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**target, **rest} if rest else target
                depth += 1
                continue
            if "allOf" in schema:
                schema = self._merge(schema, depth)
                continue
            if ("anyOf" in schema or "oneOf" in schema) and "const" not in schema and "enum" not in schema:
                branches = schema.get("anyOf") or schema.get("oneOf")
                if not isinstance(branches, list) or not branches:
                    raise SchemaError(f"anyOf/oneOf must be a non-empty array, got {branches!r}")
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                branch = next((b for b in branches if not _is_null_schema(b)), branches[0])
                if not isinstance(branch, Mapping):
                    raise SchemaError(f"an anyOf/oneOf branch must be a schema, got {branch!r}")
                schema = {**rest, **branch}
                continue
            return schema
        raise SchemaError("the schema's $ref/allOf/anyOf nest too deeply (a cycle?)")

    def _merge(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        branches = schema["allOf"]
        if not isinstance(branches, list):
            raise SchemaError(f"allOf must be an array, got {branches!r}")
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties") or {})
        required: list[str] = list(merged.get("required") or [])
        for branch in branches:
            if not isinstance(branch, Mapping):
                raise SchemaError(f"an allOf branch must be a schema, got {branch!r}")
            branch = self.resolve(branch, depth + 1)
            properties.update(branch.get("properties") or {})
            required += [name for name in branch.get("required") or [] if name not in required]
            merged.update({k: v for k, v in branch.items() if k not in ("properties", "required")})
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def _type(self, schema: Mapping[str, Any]) -> str:
        kind = schema.get("type")
        if kind is None:
            if "properties" in schema:
                return "object"
            if "items" in schema or "prefixItems" in schema:
                return "array"
            return "string"
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind not in _TYPES:
            raise SchemaError(f"unknown JSON schema type {kind!r}")
        return str(kind)

    def allowed_types(self, schema: Mapping[str, Any], depth: int) -> frozenset[str] | None:
        """JSON types ``schema`` accepts; ``None`` when it accepts anything."""
        if "$ref" in schema:
            return self.allowed_types(self._ref(schema["$ref"]), depth + 1) if depth < _MAX_DEPTH else None
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else list(schema["enum"])
            return frozenset(_json_type(v) for v in values)
        kind = schema.get("type")
        if isinstance(kind, str):
            return frozenset({kind, "number"} if kind == "integer" else {kind})
        if isinstance(kind, list):
            return frozenset(kind) | ({"number"} if "integer" in kind else set())
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list) and branches:
            union: set[str] = set()
            for branch in branches:
                types = self.allowed_types(branch, depth + 1) if isinstance(branch, Mapping) else None
                if types is None:
                    return None
                union |= types
            return frozenset(union)
        if "properties" in schema:
            return frozenset({"object"})
        return None

    # ------------------------------------------------------------- generation
    def value(self, schema: Mapping[str, Any], path: str, name: str | None, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise SchemaError(f"the schema nests deeper than {_MAX_DEPTH} levels at {path} (a cycle?)")
        schema = self.resolve(schema, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            options = schema["enum"]
            if not isinstance(options, list) or not options:
                raise SchemaError(f"enum must be a non-empty array at {path}, got {options!r}")
            return options[stable_hash(self.row_text, path) % len(options)]
        kind = self._type(schema)
        if kind == "object":
            return self._object(schema, path, depth)
        if kind == "array":
            return self._array(schema, path, depth)
        if kind == "string":
            return self._string(schema, path, name)
        if kind == "integer":
            return self._integer(schema, path)
        if kind == "number":
            return self._number(schema, path)
        if kind == "boolean":
            return stable_hash(self.row_text, path) % 2 == 1
        return None

    def _object(self, schema: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        if not isinstance(properties, Mapping) or not isinstance(required, list):
            raise SchemaError(f"properties must be an object and required an array at {path}")
        shallow = depth >= _SHALLOW_DEPTH
        out: dict[str, Any] = {}
        for key, sub in properties.items():
            if shallow and key not in required:
                continue
            if not isinstance(sub, Mapping):
                raise SchemaError(f"property {key!r} at {path} must have a schema, got {sub!r}")
            out[key] = self.value(sub, f"{path}.{key}", key, depth + 1)
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, Mapping) and not shallow:  # a map: two entries
            for key in ("key0", "key1"):
                out[key] = self.value(extra, f"{path}.{key}", key, depth + 1)
        for key in required:
            if key not in out:
                sub = extra if isinstance(extra, Mapping) else {"type": "string"}
                out[key] = self.value(sub, f"{path}.{key}", key, depth + 1)
        return out

    def _array(self, schema: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        low = _count(schema, "minItems", path) or 0
        count = low if depth >= _SHALLOW_DEPTH else max(2, low)
        high = _count(schema, "maxItems", path)
        if high is not None:
            if high < low:
                raise SchemaError(f"maxItems {high} < minItems {low} at {path}")
            count = min(count, high)
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        out = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            if not isinstance(sub, Mapping):
                raise SchemaError(f"items at {path} must be a schema, got {sub!r}")
            out.append(self.value(sub, f"{path}[{i}]", None, depth + 1))
        return out

    def _string(self, schema: Mapping[str, Any], path: str, name: str | None) -> str:
        digest = _digest(self.row_text, path)
        h = int(digest, 16)
        fmt = schema.get("format")
        lowered = (name or "").lower()
        if fmt == "date":
            text = (_EPOCH + datetime.timedelta(days=h % 10000)).date().isoformat()
        elif fmt == "date-time":
            moment = _EPOCH + datetime.timedelta(days=h % 10000, seconds=(h // 10000) % 86400)
            text = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif fmt == "time":
            text = (_EPOCH + datetime.timedelta(seconds=h % 86400)).strftime("%H:%M:%S")
        elif fmt == "email":
            text = f"user-{digest[:8]}@example.com"
        elif fmt == "uri":
            text = f"https://example.com/{digest[:8]}"
        elif fmt == "uuid":
            text = str(uuid.UUID(hex=digest[:32]))
        elif any(word in lowered for word in ROW_TEXT_NAMES):
            text = " ".join(self.row_text.split()[:_ROW_WORDS])
        else:
            text = f"{name or 'value'}-{digest[:8]}"
        low = _count(schema, "minLength", path)
        high = _count(schema, "maxLength", path)
        if low is not None and len(text) < low:
            text += "x" * (low - len(text))
        if high is not None:
            text = text[:high]
        return text

    def _integer(self, schema: Mapping[str, Any], path: str) -> int:
        low, high = _bounds(schema, path)
        lo = None if low is None else _ceil_int(low[0]) + (1 if low[1] and low[0] == int(low[0]) else 0)
        hi = None if high is None else _floor_int(high[0]) - (1 if high[1] and high[0] == int(high[0]) else 0)
        h = stable_hash(self.row_text, path)
        if lo is not None and hi is not None:
            if hi < lo:
                raise SchemaError(f"no integer lies between the bounds at {path}")
            return lo + h % (hi - lo + 1)
        if lo is not None:
            return lo + h % 100
        if hi is not None:
            return hi - h % 100
        return h % 100

    def _number(self, schema: Mapping[str, Any], path: str) -> float:
        low, high = _bounds(schema, path)
        h = stable_hash(self.row_text, path)
        if low is not None and high is not None:
            lo, hi = low[0], high[0]
            if hi < lo or (hi == lo and (low[1] or high[1])):
                raise SchemaError(f"no number lies between the bounds at {path}")
            value = lo + (hi - lo) * ((h % 9999 + 1) / 10000)
            return float(min(max(value, lo), hi))
        if low is not None:
            return float(low[0] + (h % 10000 + 1) / 100)
        if high is not None:
            return float(high[0] - (h % 10000 + 1) / 100)
        return (h % 10000) / 100


def _is_null_schema(schema: Any) -> bool:
    return isinstance(schema, Mapping) and (schema.get("type") == "null" or schema.get("const", 0) is None)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _count(schema: Mapping[str, Any], key: str, path: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"{key} must be a non-negative integer at {path}, got {value!r}")
    return value


def _number_keyword(schema: Mapping[str, Any], key: str, path: str) -> float | None:
    value = schema.get(key)
    if value is None or isinstance(value, bool):  # draft 4's boolean exclusive* are not supported
        return None
    if not isinstance(value, (int, float)):
        raise SchemaError(f"{key} must be a number at {path}, got {value!r}")
    return value


def _bounds(
    schema: Mapping[str, Any], path: str
) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
    """``((low, exclusive), (high, exclusive))``, the tighter of each inclusive/exclusive pair."""
    out: list[tuple[float, bool] | None] = []
    for inclusive, exclusive, tighter in (
        ("minimum", "exclusiveMinimum", max),
        ("maximum", "exclusiveMaximum", min),
    ):
        a = _number_keyword(schema, inclusive, path)
        b = _number_keyword(schema, exclusive, path)
        if a is None and b is None:
            out.append(None)
        elif b is None or (a is not None and tighter(a, b) == a and a != b):
            assert a is not None
            out.append((a, False))
        else:
            out.append((b, True))
    return out[0], out[1]


def _ceil_int(value: float) -> int:
    return -int(-value // 1)


def _floor_int(value: float) -> int:
    return int(value // 1)

"""The lexer of ``flink-llm sql``: a SQL script split into statements, and what each one is.

Pure functions over text: no pyflink, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Statement", "parse_set", "split_statements", "statement_kind"]


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement: its text without the final ``;`` and leading comments, and where it starts."""

    text: str
    line: int  #: 1-based line of the statement's first character in the file

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0].strip() if self.text else ""


_BLOCK_START = re.compile(r"(?:EXECUTE\s+)?STATEMENT\s+SET\s+BEGIN\b", re.IGNORECASE)
_BLOCK_END = re.compile(r"\bEND\s*$", re.IGNORECASE)


def split_statements(sql: str) -> list[Statement]:
    """Split a SQL script into statements at top-level ``;``.

    A ``;`` inside a single-quoted string (``''`` escapes a quote), a backquoted identifier, a
    ``--`` comment or a ``/* */`` comment does not end a statement, nor does one inside an
    ``EXECUTE STATEMENT SET BEGIN ... END`` block. Comments before a statement are dropped;
    comments inside it are kept (Flink's parser skips them). Text after the last ``;`` is a
    statement too. Statements that are empty or only comments are left out.
    """
    statements: list[Statement] = []
    start: int | None = None  # offset of the current statement's first code character
    code_end = 0  # offset just past its last code character
    code: list[str] = []  # the current statement with comments blanked, to recognise blocks
    i, n = 0, len(sql)

    def emit() -> None:
        nonlocal start
        if start is not None:
            text = sql[start:code_end].rstrip()  # trailing comments and blanks are not kept
            statements.append(Statement(text, sql.count("\n", 0, start) + 1))
        start = None
        code.clear()

    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
            continue
        if ch == "/" and sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
            code.append(" ")
            continue
        if ch in "'`":
            if start is None:
                start = i
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote: an escaped quote
                        j += 2
                        continue
                    break
                j += 1
            code.append(sql[i : j + 1])
            i = code_end = min(j + 1, n)
            continue
        if ch == ";":
            joined = "".join(code).strip()
            if _BLOCK_START.match(joined) and not _BLOCK_END.search(joined):
                code.append(ch)
                i = code_end = i + 1
                continue
            emit()
            i += 1
            continue
        if start is None and not ch.isspace():
            start = i
        if start is not None:
            code.append(ch)
            if not ch.isspace():
                code_end = i + 1
        i += 1
    emit()
    return [s for s in statements if s.text]


_SET = re.compile(
    r"^SET(?:\s+(?P<key>'(?:[^']|'')*'|[^\s=]+)\s*=\s*(?P<value>'(?:[^']|'')*'|.+?))?\s*$", re.I | re.S
)
_RESET = re.compile(r"^RESET(?:\s+(?P<key>'(?:[^']|'')*'|\S+))?\s*$", re.I | re.S)


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] == "'":
        return token[1:-1].replace("''", "'")
    return token


def parse_set(text: str) -> tuple[str, str | None, str | None] | None:
    """Recognise ``SET``/``RESET``: ``("SET", key, value)``, ``("SET", None, None)`` (list),
    ``("RESET", key, None)``, ``("RESET", None, None)`` (all), or None for any other statement."""
    if match := _SET.match(text.strip()):
        key, value = match.group("key"), match.group("value")
        if key is None:
            return ("SET", None, None)
        return ("SET", _unquote(key), _unquote(value))
    if match := _RESET.match(text.strip()):
        key = match.group("key")
        return ("RESET", _unquote(key) if key else None, None)
    return None


def statement_kind(text: str) -> str:
    """The statement's first keyword(s), upper-case: ``INSERT``, ``SELECT``, ``STATEMENT SET``..."""
    words = re.sub(r"/\*.*?\*/|--[^\n]*", " ", text, flags=re.S).split()
    head = " ".join(words[:4]).upper()
    if head.startswith("BEGIN STATEMENT SET"):
        return "BEGIN STATEMENT SET"
    if _BLOCK_START.match(head):
        return "STATEMENT SET"
    if head.startswith("EXECUTE INSERT"):
        return "INSERT"
    return words[0].upper() if words else ""

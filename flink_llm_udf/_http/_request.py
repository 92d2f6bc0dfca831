"""The request side: the caller's headers checked once per session, and the built-in client's head.

A header that cannot go on the wire as given (a line break or another control character in its
value, a name that is not an HTTP token) is refused when the session is created, naming the
header but never its value (it is usually the API key), so no request is ever half-built.
"""

from __future__ import annotations

import string

from .._errors import InvalidOptionError
from ._target import Endpoint

Headers = tuple[tuple[str, str], ...]

#: Header names a client owns: the framing of its requests. The caller's are dropped.
CLIENT_OWNED = frozenset(("host", "content-length", "transfer-encoding", "connection"))
#: Content codings both clients decode (``_limits.ReplyBody``), so the only ones they ask for.
ACCEPT_ENCODING = "gzip, deflate"
_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
#: Control characters, which no field value may hold; horizontal tab is allowed (RFC 9110 5.5).
_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F)) - {"\t"}


def checked_headers(headers: Headers) -> Headers:
    """``headers`` without the client-owned ones; ``InvalidOptionError`` for one that cannot be sent."""
    kept = []
    for name, value in headers:
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidOptionError(f"header {name!r} is not allowed: names and values must be strings")
        if not name or not _TOKEN.issuperset(name):
            raise InvalidOptionError(
                f"header {name[:60]!r} is not allowed: a header name is letters, digits and !#$%&'*+-.^_`|~ "
                "(no spaces, ':', line breaks or NUL)"
            )
        if not _CONTROL.isdisjoint(value):
            raise InvalidOptionError(
                f"header {name!r} is not allowed: its value holds a line break or another control "
                "character (a stray newline at the end of a key file or environment variable?)"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidOptionError(
                f"header {name!r} is not allowed: its value is not valid Unicode (a lone surrogate)"
            ) from None
        if name.lower() not in CLIENT_OWNED:
            kept.append((name, value))
    return tuple(kept)


def request_head(endpoint: Endpoint, headers: Headers) -> bytes:
    """The built-in client's request up to the Content-Length value, encoded once per session.

    ``headers`` come from ``checked_headers``. ``Accept`` and ``Accept-Encoding`` are added
    unless the caller gave them; values are sent as UTF-8, as aiohttp sends them.
    """
    lines = [f"POST {endpoint.target} HTTP/1.1", f"Host: {endpoint.authority}"]
    names = {name.lower() for name, _ in headers}
    if "accept" not in names:
        lines.append("Accept: application/json")
    if "accept-encoding" not in names:
        lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}")
    lines += (f"{name}: {value}" for name, value in headers)
    lines.append("Content-Length: ")
    return "\r\n".join(lines).encode("utf-8")

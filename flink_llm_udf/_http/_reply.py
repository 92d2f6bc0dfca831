"""What every HTTP client of the engine hands back, and the interface they share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

_NOT_JSON = object()


@dataclass(slots=True)  # not frozen: one per request, and a frozen __init__ costs more
class HTTPReply:
    """A response fully read: status, headers, raw body and the body parsed as JSON (or None)."""

    status: int
    headers: Mapping[str, str]
    raw: bytes
    payload: Any
    is_json: bool


class HTTPSession:
    """One worker's connections to one endpoint; create it inside the loop that will use it."""

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    async def post(self, data: bytes, timeout_s: float) -> HTTPReply:
        """POST ``data`` (an encoded JSON body); the whole reply within ``timeout_s`` seconds."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the connections, on the session's own loop."""
        raise NotImplementedError

    def abandon(self) -> None:
        """Release the connections when the session's loop has already stopped (no await)."""
        raise NotImplementedError


def reply_of(status: int, headers: Mapping[str, str], raw: bytes) -> HTTPReply:
    """An ``HTTPReply`` with the body parsed as JSON when it is JSON."""
    payload: Any = _NOT_JSON
    if raw:
        try:
            payload = orjson.loads(raw)
        except ValueError:
            payload = _json_fallback(raw)
    is_json = payload is not _NOT_JSON
    return HTTPReply(status, headers, raw, payload if is_json else None, is_json)


def _json_fallback(raw: bytes) -> Any:
    """What ``json`` accepts and orjson refuses (NaN, Infinity): read as before, not lost."""
    try:
        return json.loads(raw.decode("utf-8"))  # str: skips json's encoding detection
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON

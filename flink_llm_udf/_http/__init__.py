"""HTTP for the engine: one POST of a JSON body, its reply read whole, failures translated once.

Two clients sit behind one ``HTTPSession`` interface: the lean built-in HTTP/1.1 client
(``_builtin`` over ``_http11``) and aiohttp's (``_aiohttp``). ``open_session`` picks one per
``EngineSettings.http_client``:

- ``"auto"`` (default): the client named by ``FLINK_LLM_HTTP_CLIENT`` when set, else the built-in
  one, except that aiohttp is used whenever the environment routes the endpoint through a proxy
  or has netrc credentials for it (the built-in client does neither);
- ``"builtin"`` / ``"aiohttp"``: that client, always.
"""

from __future__ import annotations

import os
from typing import Literal

from .._errors import InvalidOptionError
from ._aiohttp import AiohttpSession, abandon_session, env_request_options, new_session, post_json
from ._builtin import BuiltinSession
from ._reply import HTTPReply, HTTPSession, reply_of

HTTPClient = Literal["auto", "builtin", "aiohttp"]

#: ``EngineSettings.http_client`` values.
HTTP_CLIENTS: tuple[HTTPClient, ...] = ("auto", "builtin", "aiohttp")
#: The clients the package ships (what ``"auto"`` chooses between).
SHIPPED_HTTP_CLIENTS: tuple[HTTPClient, ...] = ("builtin", "aiohttp")
#: Environment variable naming the client ``"auto"`` prefers.
HTTP_CLIENT_ENV = "FLINK_LLM_HTTP_CLIENT"


def preferred_client(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The client ``"auto"`` prefers: ``FLINK_LLM_HTTP_CLIENT`` when it names one, else builtin."""
    value = (os.environ if environ is None else environ).get(HTTP_CLIENT_ENV, "").strip().lower()
    if value and value not in SHIPPED_HTTP_CLIENTS:
        raise InvalidOptionError(
            f"{HTTP_CLIENT_ENV}={value!r} is not allowed: must be one of {', '.join(SHIPPED_HTTP_CLIENTS)}"
        )
    return value or "builtin"


def open_session(
    url: str,
    headers: tuple[tuple[str, str], ...],
    max_connections: int,
    *,
    client: str = "auto",
    max_reply_bytes: int | None = None,
    tls_ca_file: str | None = None,
) -> HTTPSession:
    """The session for ``url`` (see the module docstring for the choice). Call inside the loop."""
    if client == "builtin":
        return BuiltinSession(url, headers)
    sends_authorization = any(name.lower() == "authorization" for name, _ in headers)
    options = env_request_options(url, sends_authorization=sends_authorization)
    if client == "aiohttp" or options or preferred_client() == "aiohttp":
        return AiohttpSession(url, headers, max_connections, options)
    return BuiltinSession(url, headers)


__all__ = [
    "HTTP_CLIENTS",
    "HTTP_CLIENT_ENV",
    "SHIPPED_HTTP_CLIENTS",
    "AiohttpSession",
    "BuiltinSession",
    "HTTPClient",
    "HTTPReply",
    "HTTPSession",
    "abandon_session",
    "env_request_options",
    "new_session",
    "open_session",
    "post_json",
    "preferred_client",
    "reply_of",
]

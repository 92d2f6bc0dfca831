"""HTTP for the engine: one POST of a JSON body, its reply read whole, failures translated once.

Two clients sit behind one ``HTTPSession`` interface and one contract (the same URL encoding,
header checks, trust store, reply-size cap and error translation): the lean built-in HTTP/1.1
client (``_builtin``: ``_pool`` over ``_connection``, llhttp through httptools) and aiohttp's
(``_aiohttp``). ``open_session`` picks one per ``EngineSettings.http_client``:

- ``"auto"`` (default): the client named by ``FLINK_LLM_HTTP_CLIENT`` when set, else the built-in
  one, except that aiohttp is used whenever the environment routes the endpoint through a proxy
  or has netrc credentials for it (the built-in client does neither);
- ``"builtin"`` / ``"aiohttp"``: that client, always.

Modules: ``_target`` (the URL, via yarl), ``_request`` (header checks, the request head),
``_tls`` (trust store, certificate failures), ``_limits`` (head and body bounds, decoding),
``_failures`` (errors, secrets redacted), ``_connection`` / ``_pool`` / ``_builtin`` (the built-in
client), ``_aiohttp``, ``_reply`` (``HTTPReply``, the ``HTTPSession`` interface).
"""

from __future__ import annotations

import os
from typing import Literal

from .._errors import InvalidOptionError
from ._aiohttp import AiohttpSession, abandon_session, env_request_options, new_session, post_json
from ._builtin import BuiltinSession
from ._limits import DEFAULT_MAX_REPLY_BYTES
from ._reply import HTTPReply, HTTPSession, reply_of
from ._request import checked_headers
from ._target import Endpoint
from ._tls import client_context

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
    """The session for ``url`` (see the module docstring for the choice). Call inside the loop.

    ``max_reply_bytes`` caps a reply body before and after decompression (None: the default,
    ``DEFAULT_MAX_REPLY_BYTES``); ``tls_ca_file`` adds a PEM bundle of CAs to the system's.
    Raises ``InvalidOptionError`` for a URL or header that cannot be sent and
    ``ConfigurationError`` for a ``tls_ca_file`` that cannot be used: here, not at a request.
    """
    cap = DEFAULT_MAX_REPLY_BYTES if max_reply_bytes is None else max_reply_bytes
    endpoint = Endpoint.parse(url)
    checked_headers(headers)  # refused here, before any client is set up
    context = client_context(tls_ca_file) if endpoint.tls or tls_ca_file is not None else None
    if client != "builtin":
        sends_authorization = any(name.lower() == "authorization" for name, _ in headers)
        options = env_request_options(url, sends_authorization=sends_authorization)
        if client == "aiohttp" or options or preferred_client() == "aiohttp":
            return AiohttpSession(
                url, headers, max_connections, options, max_reply_bytes=cap, ssl_context=context
            )
    return BuiltinSession(url, headers, max_reply_bytes=cap, ssl_context=context)


__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
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

"""aiohttp's client behind the ``HTTPSession`` interface: the only module using aiohttp's client.

Used when the environment routes the endpoint through a proxy or gives netrc credentials for
it, or when the user asks for it. aiohttp's exceptions become ``EndpointConnectionError`` /
``EndpointTimeoutError`` here, so the engine sees only the package's own tree.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

from .._errors import EndpointConnectionError, EndpointTimeoutError
from ._reply import HTTPReply, HTTPSession, reply_of


class AiohttpSession(HTTPSession):
    """aiohttp's client, with proxy and netrc settings from the environment resolved once."""

    def __init__(
        self, url: str, headers: tuple[tuple[str, str], ...], max_connections: int, options: dict[str, Any]
    ) -> None:
        self._url, self._headers, self._options = url, headers, options
        self._session = new_session(max_connections)

    @property
    def closed(self) -> bool:
        return self._session.closed

    async def post(self, data: bytes, timeout_s: float) -> HTTPReply:
        return await post_json(self._session, self._url, data, self._headers, timeout_s, self._options)

    async def aclose(self) -> None:
        await self._session.close()

    def abandon(self) -> None:
        abandon_session(self._session)


def new_session(max_connections: int) -> aiohttp.ClientSession:
    """A client session for one worker; must be created inside the running event loop.

    Proxies and netrc credentials from the environment are honoured through
    ``env_request_options`` (resolved once), not aiohttp's ``trust_env``, which re-reads them
    in a worker thread on every request (two thread hops per request, most of our CPU per row).
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections, limit_per_host=0, keepalive_timeout=30, enable_cleanup_closed=True
    )
    # Timeouts are per request (see post_json).
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
        json_serialize=json.dumps,
        skip_auto_headers=("User-Agent",),
    )


def env_request_options(url: str, *, sends_authorization: bool = False) -> dict[str, Any]:
    """What aiohttp's ``trust_env=True`` would add to a request to ``url``, resolved once.

    ``proxy``/``proxy_auth`` from ``*_proxy``/``no_proxy`` (and netrc for the proxy host) and
    ``auth`` from netrc for the URL's host; only the keys that apply. Reads files: call it once
    per session, not per request. When the request carries its own ``Authorization`` header
    (an API key), netrc is not consulted: aiohttp refuses both at once, on every request.
    """
    target = URL(url)
    options: dict[str, Any] = {}
    if target.host is not None and not sends_authorization:
        try:
            options["auth"] = basicauth_from_netrc(netrc_from_env(), target.host)
        except LookupError:
            pass
    try:
        proxy, proxy_auth = get_env_proxy_for_url(target)
    except LookupError:
        pass
    else:
        options["proxy"] = proxy
        if proxy_auth is not None:  # what trust_env passes (proxy_headers would skip plain HTTP)
            options["proxy_auth"] = proxy_auth
    return options


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    headers: tuple[tuple[str, str], ...],
    timeout_s: float,
    options: dict[str, Any] | None = None,
) -> HTTPReply:
    """POST ``data`` (an encoded JSON body) and read the whole reply within ``timeout_s`` seconds.

    ``options`` are extra ``session.post`` arguments (``env_request_options``)."""
    try:
        deadline = asyncio.timeout(timeout_s) if hasattr(asyncio, "timeout") else _timeout(timeout_s)
        request = session.post(url, data=data, headers=list(headers), **(options or {}))
        async with deadline, request as response:
            raw = await response.read()
            status, reply_headers = response.status, response.headers
    except (asyncio.TimeoutError, TimeoutError):
        raise EndpointTimeoutError(f"no complete response within {timeout_s:g} s", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise EndpointConnectionError(f"connection error: {_describe(exc)}", retryable=True) from None
    except OSError as exc:
        raise EndpointConnectionError(f"connection error: {exc.strerror or exc}", retryable=True) from None
    return reply_of(status, reply_headers, raw)


def _describe(exc: aiohttp.ClientError) -> str:
    # aiohttp messages can contain the URL but never request headers, so the key cannot leak.
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class _timeout:
    """asyncio.timeout for Python 3.10 (which lacks it)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._expired = False

    async def __aenter__(self) -> None:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> bool:
        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise asyncio.TimeoutError
        return False


def abandon_session(session: aiohttp.ClientSession) -> None:
    """Release a session whose event loop has already stopped (no await possible).

    Flink stops an async operator's loop before it calls the function's ``close()``; detaching
    the connector and closing its sockets keeps aiohttp from warning about an unclosed session.
    """
    connector = session.connector
    session.detach()
    if connector is not None and not connector.closed:
        try:
            connector._close()  # the synchronous half of close(): closes transports, no await
        except RuntimeError:
            pass  # the loop is closed: the sockets go with the process

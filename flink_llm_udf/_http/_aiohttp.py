"""aiohttp's client behind the ``HTTPSession`` interface: the only module using aiohttp's client.

Used when the environment routes the endpoint through a proxy or gives netrc credentials for
it, or when the user asks for it. It keeps the built-in client's contract: the same URL
encoding (``_target``), header checks (``_request``), trust store (``_tls``), reply-size cap and
decoding (``_limits.ReplyBody``: aiohttp's own decompression is off, so the cap holds before and
after inflating), and the same failures (``_failures``): aiohttp's exceptions become the
package's ``EndpointError``s here, with the session's secrets redacted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

from ._failures import Failures, ReplyProblem, secrets_of
from ._limits import DEFAULT_MAX_REPLY_BYTES, INFLATE_STEP, ReplyBody, too_large
from ._reply import HTTPReply, HTTPSession, reply_of
from ._request import ACCEPT_ENCODING, Headers, checked_headers
from ._target import Endpoint
from ._tls import verification_failed

#: As the built-in client (``_pool.HAPPY_EYEBALLS_DELAY_S``): the next address after this delay.
HAPPY_EYEBALLS_DELAY_S = 0.25


class AiohttpSession(HTTPSession):
    """aiohttp's client, with proxy and netrc settings from the environment resolved once."""

    def __init__(
        self,
        url: str,
        headers: Headers,
        max_connections: int,
        options: dict[str, Any],
        *,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        endpoint = Endpoint.parse(url)
        sent = checked_headers(headers)
        if not any(name.lower() == "accept-encoding" for name, _ in sent):
            sent += (("Accept-Encoding", ACCEPT_ENCODING),)  # what ReplyBody decodes, nothing else
        self._url = URL(endpoint.url, encoded=True)
        self._headers, self._options = sent, options
        self._max_reply_bytes = max_reply_bytes
        self._failures = Failures(endpoint.where, secrets_of(sent))
        self._session = new_session(max_connections, ssl_context)

    @property
    def closed(self) -> bool:
        return self._session.closed

    async def post(self, data: bytes, timeout_s: float) -> HTTPReply:
        return await post_json(
            self._session,
            self._url,
            data,
            self._headers,
            timeout_s,
            self._options,
            max_reply_bytes=self._max_reply_bytes,
            failures=self._failures,
        )

    async def aclose(self) -> None:
        await self._session.close()

    def abandon(self) -> None:
        abandon_session(self._session)


def new_session(max_connections: int, ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    """A client session for one worker; must be created inside the running event loop.

    Proxies and netrc credentials from the environment are honoured through
    ``env_request_options`` (resolved once), not aiohttp's ``trust_env``, which re-reads them
    in a worker thread on every request (two thread hops per request, most of our CPU per row).
    Bodies arrive as sent (``auto_decompress=False``): ``ReplyBody`` decodes them under the cap.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        keepalive_timeout=30,
        enable_cleanup_closed=True,
        ssl=ssl_context if ssl_context is not None else True,
        happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S,
        interleave=1,
    )
    # Timeouts are per request (see post_json).
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
        json_serialize=json.dumps,
        skip_auto_headers=("User-Agent",),
        auto_decompress=False,
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
    url: str | URL,
    data: bytes,
    headers: Headers,
    timeout_s: float,
    options: dict[str, Any] | None = None,
    *,
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    failures: Failures | None = None,
) -> HTTPReply:
    """POST ``data`` (an encoded JSON body) and read the whole reply within ``timeout_s`` seconds.

    ``options`` are extra ``session.post`` arguments (``env_request_options``); ``failures``
    names the endpoint and redacts the session's secrets in errors (default: from ``headers``).
    """
    try:
        deadline = asyncio.timeout(timeout_s) if hasattr(asyncio, "timeout") else _timeout(timeout_s)
        request = session.post(url, data=data, headers=list(headers), **(options or {}))
        async with deadline, request as response:
            status, reply_headers = response.status, response.headers
            raw = await _read_body(response, max_reply_bytes)
    except BaseException as exc:
        if failures is None:
            target = URL(url) if isinstance(url, str) else url
            failures = Failures(f"{target.host}:{target.port}", secrets_of(headers))
        failure = _translated(exc, timeout_s, failures)
    else:
        return reply_of(status, reply_headers, raw)
    # Raised outside the handler: the error keeps no link to aiohttp's, whose request_info holds
    # the request headers (the API key).
    raise failure from None


async def _read_body(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, counted against ``cap`` as sent and as decoded; inflated in bounded steps."""
    if response.status == 101:
        raise ReplyProblem("the server switched protocols (101), which no request asked for")
    transfer = response.headers.get("Transfer-Encoding")
    if transfer is not None and transfer.strip().lower() != "chunked":
        raise ReplyProblem(f"unsupported Transfer-Encoding {transfer!r}")
    length = response.content_length
    if length is not None and length > cap and response.status not in (204, 304):
        raise too_large(cap, "Content-Length", length)
    encoding = response.headers.get("Content-Encoding")
    body = ReplyBody(cap, None if encoding is None else encoding.encode("latin-1", "replace"))
    stream = response.content
    while chunk := await stream.readany():
        body.budget = INFLATE_STEP
        body.feed(chunk)
        while body.pending:
            await asyncio.sleep(0)  # let the loop run between inflate steps
            body.budget = INFLATE_STEP
            body.inflate()
    return body.finish()


def _translated(exc: BaseException, timeout_s: float, failures: Failures) -> BaseException:
    """aiohttp's failures in the package's tree; the rest as ``Failures.translated`` has them."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        if isinstance(cause, ssl.SSLCertVerificationError):
            return verification_failed(failures.where, cause, failures.text)
        return failures.connection(f"TLS with {failures.where}: {cause}", retryable=False)
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return failures.connection(f"TLS with {failures.where}: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return failures.connection(f"cannot connect to {failures.where}: {reason}")
    if isinstance(exc, aiohttp.ClientResponseError):  # the parser's: the first line says what
        reason = str(exc.message or exc.status).split("\n", 1)[0].rstrip(": ")
        return failures.connection(f"{type(exc).__name__}: {reason}")
    if isinstance(exc, aiohttp.ClientError):
        return failures.connection(_describe(exc))
    return failures.translated(exc, timeout_s)


def _describe(exc: aiohttp.ClientError) -> str:
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

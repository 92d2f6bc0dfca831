"""The aiohttp application: OpenAI endpoints, admin endpoints, admission limits and stats.

Hot-path budget: one JSON parse, one substring test for directives, a few dict updates and one
JSON dump per request; latency is ``asyncio.sleep`` (no CPU); the access log is off; with no
quota set, quotas cost one ``if``. Admission order for ``/v1`` requests: API key (401),
``rate_per_minute`` (429), ``max_in_flight`` (429), the key's ``quota_max_concurrent`` (429),
then body validation (a ``json_schema`` response format too: refused with OpenAI's 400 when
``json_schema_support`` is off), context window and directive syntax (400), ``quota_rpm`` then
``quota_tpm`` (429, see :mod:`._limits`), then directive or random faults, latency, and the
answer. A request the quotas admitted has used them whatever follows (an injected 503 too).
``/v1/models`` only checks the API key.

With a quota set, every chat and embeddings reply past the server-wide limits (200, 400, 429,
injected faults) carries the ``x-ratelimit-*`` headers of the configured dimensions (unless
``quota_headers`` is off): as they stood after the request was admitted, or, for a request
that was not, as they stand when it is answered. A quota 429 also carries ``Retry-After`` and
``retry-after-ms`` (whatever ``retry_after_ms_header`` says), except a request larger than the
whole ``quota_tpm``, which no wait can help.

Admin endpoints are never key-protected: ``GET /sim/stats[?requests=1]``, ``POST /sim/reset``,
``POST /sim/config`` (JSON object of :data:`~.config.RUNTIME_FIELDS` changes), ``GET /health``.
With ``record_requests`` each request is kept (method, path, query, headers with the key masked,
body, time) with what it got: ``status`` (None when no answer was written: a reset, or a client
that gave up first), ``fault`` (the injected fault's label, as counted in ``faults``, or None)
and ``limit`` (the admission limit that answered 429, as counted in ``rejected``:
``rate_per_minute``, ``max_in_flight``, ``quota_concurrency``, ``quota_rpm``, ``quota_tpm``; or
None).

Stats (``GET /sim/stats``) count quota refusals in ``rate_limited_requests`` (``quota_rpm``),
``rate_limited_tokens`` (``quota_tpm``) and ``rate_limited_concurrency``, and give each key's
admitted ``requests``, ``tokens`` and current ``in_flight`` in ``quota_keys`` under
:func:`~._limits.quota_key_label` (``anonymous`` for requests without ``Authorization``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._behaviour import SimulatorConfig
from ._bodies import (
    ChatRequest,
    EmbeddingsRequest,
    RequestError,
    chat_completion,
    concurrency_error_body,
    embeddings_response,
    error_body,
    malformed_body,
    models_response,
    parse_chat,
    parse_embeddings,
    quota_error_body,
    status_error_body,
)
from ._context_window import context_error_message, count_prompt_tokens, load_encoding
from ._directives import MARKER, Directive, DirectiveError, parse_directive
from ._faults import Fault, directive_fault, format_seconds, latency_s, random_fault
from ._limits import (
    FixedWindow,
    KeyQuota,
    admit_quota,
    ceil_ms,
    chat_quota_tokens,
    embeddings_quota_tokens,
    quota_key_label,
    rate_limit_headers,
)
from ._replies import CONTENT_FAULTS, ContentFault

__all__ = ["RunningSimulator", "SimulatorServer", "Stats", "start_simulator"]

logger = logging.getLogger(__name__)

_MAX_BODY_BYTES = 64 * 1024 * 1024


class _Dropped(Exception):
    """The connection was aborted on purpose; no response must be written."""


class Stats:
    """Counters served by ``GET /sim/stats``; mutated only on the server's event loop."""

    __slots__ = (
        "by_path",
        "by_status",
        "faults",
        "in_flight",
        "max_in_flight",
        "rate_limited_concurrency",
        "rate_limited_requests",
        "rate_limited_tokens",
        "recorded",
        "recorded_dropped",
        "rejected",
        "requests_total",
        "usage",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.clear()

    def clear(self) -> None:
        """Zero everything except the live ``in_flight`` gauge."""
        self.requests_total = 0
        self.by_path: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.rate_limited_requests = 0
        self.rate_limited_tokens = 0
        self.rate_limited_concurrency = 0
        self.max_in_flight = self.in_flight
        self.recorded: list[dict[str, Any]] = []
        self.recorded_dropped = 0
        #: token usage of the 200 replies sent, as their ``usage`` reported it (what a bill counts)
        self.usage: dict[str, int] = {"prompt_tokens": 0, "completion_tokens": 0, "replies": 0}

    def snapshot(self, *, include_requests: bool = False) -> dict[str, Any]:
        """JSON-ready copy of the counters (and the recorded requests when asked)."""
        out: dict[str, Any] = {
            "requests_total": self.requests_total,
            "by_path": dict(self.by_path),
            "by_status": dict(self.by_status),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults": dict(self.faults),
            "rejected": dict(self.rejected),
            "rate_limited_requests": self.rate_limited_requests,
            "rate_limited_tokens": self.rate_limited_tokens,
            "rate_limited_concurrency": self.rate_limited_concurrency,
            "recorded_count": len(self.recorded),
            "recorded_dropped": self.recorded_dropped,
            "usage": dict(self.usage),
        }
        if include_requests:
            out["requests"] = [dict(r) for r in self.recorded]
        return out


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers,
    )


def _bad_request(message: str, param: str | None = None, code: str | None = None) -> web.Response:
    return _json(400, error_body(message, "invalid_request_error", param, code))


class _QuotaTicket:
    """One request's way through the quotas: its key's state and the headers to answer with."""

    __slots__ = ("headers", "key")

    def __init__(self, key: KeyQuota) -> None:
        self.key = key
        self.headers: list[tuple[str, str]] | None = None


class SimulatorServer:
    """State and handlers of one simulator; build the app with :meth:`build_app`.

    ``clock`` (seconds, monotonic) times the rate window and the quotas; tests may inject one.
    """

    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.stats = Stats()
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._random_faults = config.has_random_faults
        self._quota_on = config.has_quota
        self._quota_keys: dict[str, KeyQuota] = {}
        self._window = FixedWindow()
        self._attempts: dict[str, int] = {}
        self._ids = itertools.count(1)

    # ----------------------------------------------------------------- control
    async def apply_changes(self, changes: Mapping[str, Any]) -> SimulatorConfig:
        """Validate and apply runtime config changes (raises ``ValueError``/``TypeError``)."""
        config = self.config.with_changes(changes)
        if config.context_window is not None:
            await asyncio.get_running_loop().run_in_executor(None, load_encoding)
        if config.seed != self.config.seed:
            self._rng.seed(config.seed)
        if config.rate_per_minute != self.config.rate_per_minute:
            self._window.reset()
        self.config = config
        self._random_faults = config.has_random_faults
        self._quota_on = config.has_quota
        logger.info("simulator config changed: %s", sorted(changes))
        return config

    def reset(self) -> None:
        """Zero stats, forget recorded requests, attempt counters, the rate window and quotas, reseed.

        Every key's quota is full again; a key with requests still in flight keeps counting
        them against ``quota_max_concurrent``.
        """
        self.stats.clear()
        self._attempts.clear()
        self._window.reset()
        for name, key in list(self._quota_keys.items()):
            if key.in_flight:
                key.clear()
            else:
                del self._quota_keys[name]
        self._rng.seed(self.config.seed)

    def snapshot(self, *, include_requests: bool = False) -> dict[str, Any]:
        """Stats plus directive attempt counters and the current config (key hidden)."""
        out = self.stats.snapshot(include_requests=include_requests)
        out["attempts"] = dict(self._attempts)
        out["quota_keys"] = {key.label: key.snapshot() for key in self._quota_keys.values()}
        out["config"] = self.config.to_dict()
        return out

    def build_app(self) -> web.Application:
        """The aiohttp application serving the OpenAI and admin endpoints."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/v1/{tail:.*}", self._unknown)
        app.router.add_get("/sim/stats", self._admin_stats)
        app.router.add_post("/sim/reset", self._admin_reset)
        app.router.add_post("/sim/config", self._admin_config)
        app.router.add_get("/health", self._health)
        return app

    # ------------------------------------------------------------- API handlers
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "chat")

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "embeddings")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "models")

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "unknown")

    async def _serve(self, request: web.Request, kind: str) -> web.StreamResponse:
        config = self.config
        stats = self.stats
        stats.requests_total += 1
        _bump(stats.by_path, request.path)
        record = await self._record(request, config) if config.record_requests else None
        try:
            response = await self._admit(request, config, kind, record)
        except _Dropped:
            # Surfaces in aiohttp as a premature disconnect: nothing is written or logged.
            raise asyncio.CancelledError from None
        _bump(stats.by_status, str(response.status))
        if record is not None:
            record["status"] = response.status
        return response

    async def _record(self, request: web.Request, config: SimulatorConfig) -> dict[str, Any]:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            name = name.lower()
            headers.setdefault(name, []).append("***" if name == "authorization" else value)
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": headers,
            "body": body,
            "time": time.time(),
            "status": None,  # None: no answer was written (a reset, or a client that gave up)
            "fault": None,  # the label of an injected fault (as counted in stats' "faults")
            "limit": None,  # the admission limit that answered 429 (as counted in stats' "rejected")
        }
        if len(self.stats.recorded) < config.record_limit:
            self.stats.recorded.append(record)
        else:
            self.stats.recorded_dropped += 1
        return record

    async def _admit(
        self, request: web.Request, config: SimulatorConfig, kind: str, record: Any
    ) -> web.StreamResponse:
        if config.api_key is not None:
            given = request.headers.get("Authorization")
            if given != "Bearer " + config.api_key:
                message = (
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                    if given is None
                    else "Incorrect API key provided."
                )
                return _json(401, error_body(message, "invalid_request_error", None, "invalid_api_key"))
        if kind == "models":
            return _json(200, models_response(config.models))
        if kind == "unknown":
            message = f"Unknown request URL: {request.method} {request.path}."
            return _json(404, error_body(message, "invalid_request_error", None, "unknown_url"))
        stats = self.stats
        if config.rate_per_minute is not None:
            wait = self._window.acquire(config.rate_per_minute, self._clock())
            if wait is not None:
                _bump(stats.rejected, "rate_per_minute")
                if record is not None:
                    record["limit"] = "rate_per_minute"
                return self._too_many(
                    config,
                    float(math.ceil(wait)),
                    f"Rate limit reached: {config.rate_per_minute} per minute.",
                )
        if config.max_in_flight is not None and stats.in_flight >= config.max_in_flight:
            _bump(stats.rejected, "max_in_flight")
            if record is not None:
                record["limit"] = "max_in_flight"
            return self._too_many(
                config, config.retry_after_s, f"Capacity reached: {config.max_in_flight} requests in flight."
            )
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        try:
            if self._quota_on:
                return await self._serve_quota(request, config, kind, record)
            return await self._process(request, config, kind, record, None)
        finally:
            stats.in_flight -= 1

    async def _serve_quota(
        self, request: web.Request, config: SimulatorConfig, kind: str, record: dict[str, Any] | None
    ) -> web.StreamResponse:
        """:meth:`_process` under the request's key's quotas: the concurrency cap, then headers."""
        authorization = request.headers.get("Authorization") or ""
        key = self._quota_keys.get(authorization)
        if key is None:
            label = quota_key_label(authorization or None)
            key = self._quota_keys[authorization] = KeyQuota(label, config.quota_window_s)
        cap = config.quota_max_concurrent
        response: web.StreamResponse
        if cap is not None and key.in_flight >= cap:
            self.stats.rate_limited_concurrency += 1
            self._refused(record, "quota_concurrency")
            retry = config.retry_after_s
            response = _json(
                429,
                concurrency_error_body(cap, key.in_flight, retry),
                {"Retry-After": str(math.ceil(retry)), "retry-after-ms": str(ceil_ms(retry))},
            )
            headers = None
        else:
            ticket = _QuotaTicket(key)
            key.in_flight += 1
            try:
                response = await self._process(request, config, kind, record, ticket)
            finally:
                key.in_flight -= 1
            headers = ticket.headers
        if config.quota_headers:
            if headers is None:
                headers = rate_limit_headers(key, config.quota_rpm, config.quota_tpm, self._clock())
            response.headers.extend(headers)
        return response

    def _refused(self, record: dict[str, Any] | None, label: str) -> None:
        _bump(self.stats.rejected, label)
        if record is not None:
            record["limit"] = label

    def _take_quota(
        self,
        ticket: _QuotaTicket,
        config: SimulatorConfig,
        chat: ChatRequest | None,
        embeddings: EmbeddingsRequest | None,
        model: str,
        record: dict[str, Any] | None,
    ) -> web.Response | None:
        """Charge the request to its key's buckets (``None``), or the 429 when it does not fit."""
        if chat is not None:
            tokens = chat_quota_tokens(
                chat.messages, chat.max_tokens, chat.n, config.quota_default_max_tokens
            )
        else:
            assert embeddings is not None
            tokens = embeddings_quota_tokens(embeddings.inputs)
        now = self._clock()
        key = ticket.key
        refusal = admit_quota(key, config.quota_rpm, config.quota_tpm, tokens, now)
        if config.quota_headers:
            ticket.headers = rate_limit_headers(key, config.quota_rpm, config.quota_tpm, now)
        if refusal is None:
            return None
        if refusal.label == "quota_rpm":
            self.stats.rate_limited_requests += 1
        else:
            self.stats.rate_limited_tokens += 1
        self._refused(record, refusal.label)
        return _json(429, quota_error_body(refusal, model), dict(refusal.retry_headers()))

    @staticmethod
    def _too_many(config: SimulatorConfig, retry_after: float, message: str) -> web.Response:
        headers = {"Retry-After": format_seconds(retry_after)}
        if config.retry_after_ms_header:
            headers["retry-after-ms"] = str(round(retry_after * 1000))
        body = error_body(message + " Please try again later.", "requests", None, "rate_limit_exceeded")
        return _json(429, body, headers)

    async def _process(
        self,
        request: web.Request,
        config: SimulatorConfig,
        kind: str,
        record: dict[str, Any] | None,
        quota: _QuotaTicket | None,
    ) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _bad_request(
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)"
            )
        chat: ChatRequest | None = None
        embeddings: EmbeddingsRequest | None = None
        try:
            if kind == "chat":
                chat = parse_chat(body, json_schema_support=config.json_schema_support)
            else:
                embeddings = parse_embeddings(body)
        except RequestError as exc:
            return _bad_request(exc.message, exc.param, exc.code)
        texts: tuple[str, ...]
        if chat is not None:
            model, texts = chat.model, (chat.input_text,)
            if config.context_window is not None:
                tokens = count_prompt_tokens(chat.message_texts())
                if tokens > config.context_window:
                    return _bad_request(
                        context_error_message(config.context_window, tokens),
                        "messages",
                        "context_length_exceeded",
                    )
        else:
            assert embeddings is not None
            model, texts = embeddings.model, embeddings.inputs

        directive: Directive | None = None
        directive_text = ""
        for text in texts:
            if MARKER in text:
                try:
                    directive = parse_directive(text)
                except DirectiveError as exc:
                    return _bad_request(str(exc), "messages" if kind == "chat" else "input")
                directive_text = text
                break
        if quota is not None:
            refused = self._take_quota(quota, config, chat, embeddings, model, record)
            if refused is not None:
                return refused

        delay = 0.0
        if config.latency_ms or config.latency_jitter_ms:
            delay = latency_s(config, self._rng)
        fault: Fault | None = None
        if directive is not None:
            delay += directive.slow_ms / 1000.0
            if directive.has_fault:
                attempt = self._attempts.get(directive_text, 0) + 1
                self._attempts[directive_text] = attempt
                fault = directive_fault(directive, attempt, config)
        if fault is None and self._random_faults:
            fault = random_fault(config, self._rng)
        content_fault: ContentFault | None = None
        if fault is not None and fault.kind in CONTENT_FAULTS:
            if chat is not None and chat.structured:
                content_fault = "invalid_json" if fault.kind == "invalid_json" else "schema_violation"
            else:  # spoils structured replies only; anything else is answered as usual
                fault = None
        if fault is not None:
            _bump(self.stats.faults, fault.label)
            if record is not None:
                record["fault"] = fault.label
            delay += fault.delay_s
        if delay > 0.0:
            await asyncio.sleep(delay)

        if fault is not None and fault.kind != "ok" and content_fault is None:
            return self._inject(request, fault, kind, model)
        if chat is not None:
            payload = chat_completion(
                chat,
                response_id=f"chatcmpl-sim-{next(self._ids)}",
                created=int(time.time()),
                content_fault=content_fault,
            )
        else:
            assert embeddings is not None
            payload = embeddings_response(embeddings, config.embedding_dimensions)
        usage = self.stats.usage
        usage["prompt_tokens"] += payload["usage"].get("prompt_tokens", 0)
        usage["completion_tokens"] += payload["usage"].get("completion_tokens", 0)
        usage["replies"] += 1
        return _json(200, payload)

    @staticmethod
    def _inject(request: web.Request, fault: Fault, kind: str, model: str) -> web.Response:
        if fault.kind == "reset":
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    try:  # linger 0: the peer sees a TCP reset, not a clean close
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                transport.abort()
            raise _Dropped
        if fault.kind == "malformed":
            return web.Response(
                status=200, body=malformed_body(kind, fault.variant, model), content_type="application/json"
            )
        return _json(fault.status, status_error_body(fault.status), dict(fault.headers))

    # ----------------------------------------------------------- admin handlers
    async def _admin_stats(self, request: web.Request) -> web.Response:
        include = request.query.get("requests", "") in ("1", "true", "yes")
        return _json(200, self.snapshot(include_requests=include))

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json(200, {"ok": True})

    async def _admin_config(self, request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.read())
        except ValueError:
            return _bad_request("config patch must be a JSON object")
        if not isinstance(changes, dict):
            return _bad_request("config patch must be a JSON object")
        try:
            config = await self.apply_changes(changes)
        except (TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        return _json(200, config.to_dict())

    async def _health(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})


@dataclass(slots=True)
class RunningSimulator:
    """A started simulator on the current event loop; :meth:`close` stops it."""

    server: SimulatorServer
    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def close(self) -> None:
        """Stop listening and cancel requests still in flight (after a short grace period)."""
        await self.runner.cleanup()


async def start_simulator(config: SimulatorConfig) -> RunningSimulator:
    """Bind and start serving ``config`` on the running event loop."""
    server = SimulatorServer(config)
    if config.context_window is not None:
        await asyncio.get_running_loop().run_in_executor(None, load_encoding)
    runner = web.AppRunner(
        server.build_app(),
        access_log=None,
        # A client that gives up (timeout, reset) frees its slot: hung handlers are cancelled.
        handler_cancellation=True,
        shutdown_timeout=0.5,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=4096)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1]
    logger.info("simulator listening on %s:%s", config.host, port)
    return RunningSimulator(server, runner, config.host, port)

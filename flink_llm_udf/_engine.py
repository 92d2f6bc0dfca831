"""The async call engine: bounded concurrency, per-row retries, one ``RowResult`` per input.

One ``LLMEngine`` per Flink worker (or per notebook call). Rows run as coroutines on one event
loop; request slots bound requests in flight (a row gives its slot back while it waits to retry,
so a backing-off row never idles a slot). Both the batch path (Pandas UDF, ``run_batch``) and the
row path (AsyncFunction) go through ``call_row``, so the semantics are the same everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from ._endpoint_tokens import EndpointTokenizer, EndpointTokenizerMissing
from ._engine_settings import EngineSettings
from ._errors import (
    EndpointError,
    EndpointTimeoutError,
    RowFailedError,
)
from ._http import HTTPSession, open_session
from ._observers import EngineObserver, NullObserver
from ._provider import TASK_CHAT, OpenAICompatProvider
from ._quota import QuotaGate, TokenEstimator
from ._results import FAILED, IGNORED, NULL_INPUT, OK, SKIPPED, RowResult
from ._retry import delay_before_retry
from ._slots import RequestSlots
from ._tokens import fit_to_context, load_encoding
from ._wire import (
    BodyTemplates,
    CallSpec,
    chat_value,
    check_reply,
    parse_embeddings,
    parse_usage,
    resolve_call,
    single_embedding,
    unsendable,
)
from ._workers import gather_or_cancel, run_on_workers

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]
Clock = Callable[[], float]


class LLMEngine:
    """Calls one provider's endpoint; open it where the calls run (it reads env and key file).

    Construction resolves the endpoint/key and loads the tokenizer (so a missing tiktoken
    encoding fails at open, not at the first row). The HTTP session is created lazily inside the
    event loop that runs the calls; ``aclose()`` must run on that same loop.
    """

    def __init__(
        self,
        provider: OpenAICompatProvider,
        settings: EngineSettings | None = None,
        *,
        observer: EngineObserver | None = None,
        environ: dict[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        uniform: Callable[[], float] = random.random,
        subtasks: int = 1,
    ) -> None:
        self.provider = provider
        self.settings = settings or EngineSettings()
        self.spec: CallSpec = resolve_call(provider, environ)
        counts_here = self.spec.max_context_size and self.settings.context_tokenizer == "tiktoken"
        self.encoding = load_encoding(self.spec.model) if counts_here else None
        self._server_tokens: EndpointTokenizer | None = None
        if self.spec.max_context_size and self.settings.context_tokenizer == "endpoint":
            self._server_tokens = EndpointTokenizer(
                self.spec.url, self.spec.model, self._open_session_for, self.settings.request_timeout_s
            )
        self.observer: EngineObserver = observer or NullObserver()
        self._sleep = sleep
        self._clock = clock
        self._uniform = uniform
        self._session: HTTPSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: RequestSlots | None = None
        self._bodies = BodyTemplates(self.spec)
        self.in_flight = 0
        self.subtasks = max(1, subtasks)
        self.quota = QuotaGate(
            requests_per_minute=self.settings.requests_per_minute,
            tokens_per_minute=self.settings.tokens_per_minute,
            subtasks=self.subtasks,
            max_concurrency=self.settings.max_concurrency,
            clock=clock,
            sleep=sleep,
            on_concurrency=self._resize_slots,
            adaptive=self.settings.adaptive_concurrency,
            read_headers=self.settings.rate_limit_headers,
        )
        self._estimator: TokenEstimator | None = None
        attach = getattr(self.observer, "attach_quota", None)
        if attach is not None:
            attach(self.quota.usage)

    def __repr__(self) -> str:
        return (
            f"LLMEngine(url={self.spec.url!r}, task={self.spec.task!r}, "
            f"api_key={self.spec.masked_key!r}, settings={self.settings!r})"
        )

    @property
    def is_chat(self) -> bool:
        return self.spec.task == TASK_CHAT

    # --- one row -------------------------------------------------------------------------------
    async def call_row(self, text: str | None, *, model: str | None = None) -> RowResult:
        """Send one row (with retries) and return its outcome; never raises for a row's failure."""
        result = await self._call_row(text, model)
        self.observer.row_done(result)
        return result

    async def _call_row(
        self, text: str | None, model: str | None, on_backoff: Callable[[], None] | None = None
    ) -> RowResult:
        if text is None:
            return RowResult(None, NULL_INPUT)
        problem = unsendable(text, model)
        if problem is not None:
            return self._unsent(problem)
        try:
            fitted = await self._fitted(text)
        except EndpointError as exc:
            return self._unsent(f"counting its tokens with the server failed: {self._redact(str(exc))}")
        if fitted is None:
            return RowResult(None, SKIPPED)
        try:
            body = self._bodies.encode(fitted, model)
        except UnicodeEncodeError as exc:
            return self._unsent(f"the text is not valid Unicode ({exc.reason} at position {exc.start})")
        parse = chat_value if self.is_chat else single_embedding
        return await self._send(body, parse, on_backoff, self._tokens_of(fitted))

    def _tokens_of(self, texts: str | list[str]) -> int:
        """The request's estimated tokens when a token budget is in force (else 0: not counted)."""
        if not self.quota.counts_tokens:
            return 0
        if self._estimator is None:
            self._estimator = TokenEstimator(self.spec, self.settings.completion_tokens_estimate)
        return self._estimator.estimate(texts)

    def _unsent(self, problem: str) -> RowResult:
        """A row that cannot go into a request: its own error, never the batch's (no attempt made)."""
        outcome = FAILED if self.spec.retry.final_action == "FAILOVER" else IGNORED
        return RowResult(None, outcome, error=f"the row cannot be sent: {problem}")

    def _fit(self, text: str) -> str | None:
        if self.encoding is None or self.spec.max_context_size is None:
            return text
        return fit_to_context(
            text, self.encoding, self.spec.max_context_size, self.spec.context_overflow_action
        ).text

    async def _fitted(self, text: str) -> str | None:
        """The row after the context limit (None: skipped), counted where the settings say."""
        return self._fit(text) if self._server_tokens is None else await self._fit_on_server(text)

    async def _fit_on_server(self, text: str) -> str | None:
        """The row cut to ``max_context_size`` by the server's tokenizer (or tiktoken's, if none)."""
        tokenizer, limit = self._server_tokens, self.spec.max_context_size
        if tokenizer is None or limit is None:
            return text
        try:
            return (await tokenizer.fit(text, limit, self.spec.context_overflow_action)).text
        except EndpointTokenizerMissing as exc:
            logger.warning(
                "context_tokenizer='endpoint', but the server has no usable tokenizer (%s): "
                "counting with tiktoken instead",
                self._redact(str(exc)),
            )
            self._server_tokens = None
            await tokenizer.aclose()
            self.encoding = load_encoding(self.spec.model)
            return self._fit(text)

    # --- many rows -----------------------------------------------------------------------------
    async def run_batch(
        self,
        inputs: Sequence[str | None],
        models: Sequence[str | None] | None = None,
        *,
        raise_on_failover: bool = True,
    ) -> list[RowResult]:
        """One result per input, same order. Under FAILOVER the first failed row raises
        ``RowFailedError`` (naming its index) and the batch's other rows are cancelled."""
        if models is not None and len(models) != len(inputs):
            raise ValueError(f"models has {len(models)} entries for {len(inputs)} inputs")
        if self._session is None or self._session.closed:
            self._get_session()  # here, so a configuration error is raised once, not by every worker
        if not self.is_chat and self.settings.embedding_rows_per_request > 1:
            return await self._run_grouped_embeddings(inputs, models, raise_on_failover)

        async def one(index: int, on_backoff: Callable[[], None]) -> RowResult:
            result = await self._call_row(
                inputs[index], None if models is None else models[index], on_backoff
            )
            self.observer.row_done(result)
            if raise_on_failover and result.outcome == FAILED:
                raise RowFailedError(
                    index, result.error or "unknown error", attempts=result.attempts, status=result.status
                )
            return result

        results = await run_on_workers(
            len(inputs), one, self.settings.max_concurrency, self.settings.batch_deadline_s
        )
        late = [index for index, result in enumerate(results) if result is None]
        if late:
            error = f"batch deadline of {self.settings.batch_deadline_s:g} s reached before the row finished"
            outcome = FAILED if self.spec.retry.final_action == "FAILOVER" else IGNORED
            if outcome == FAILED and raise_on_failover:
                raise RowFailedError(late[0], error, attempts=0, status=None)
            for index in late:
                results[index] = ended = RowResult(None, outcome, error=error)
                self.observer.row_done(ended)
        return _all_done(results)

    async def _run_grouped_embeddings(
        self, inputs: Sequence[str | None], models: Sequence[str | None] | None, raise_on_failover: bool
    ) -> list[RowResult]:
        results: list[RowResult | None] = [None] * len(inputs)
        groups: dict[str | None, list[tuple[int, str]]] = {}
        for index, text in enumerate(inputs):
            model = None if models is None else models[index]
            problem = None if text is None else unsendable(text, model, check_encoding=True)
            fitted = None
            if text is not None and problem is None:
                try:
                    fitted = (
                        self._fit(text) if self._server_tokens is None else await self._fit_on_server(text)
                    )
                except EndpointError as exc:
                    problem = f"counting its tokens with the server failed: {self._redact(str(exc))}"
            if fitted is None:
                if text is None:
                    done = RowResult(None, NULL_INPUT)
                elif problem is not None:
                    done = self._unsent(problem)
                else:
                    done = RowResult(None, SKIPPED)
                results[index] = done
                self.observer.row_done(done)
                if raise_on_failover and done.outcome == FAILED:
                    raise RowFailedError(index, done.error or "", attempts=0, status=None)
                continue
            groups.setdefault(model, []).append((index, fitted))
        size = self.settings.embedding_rows_per_request
        chunks = [
            (model, members[i : i + size])
            for model, members in groups.items()
            for i in range(0, len(members), size)
        ]

        async def one_chunk(model: str | None, members: list[tuple[int, str]]) -> None:
            texts = [text for _, text in members]
            group = await self._send(
                self._bodies.encode(texts, model),
                lambda payload: (parse_embeddings(payload, len(texts)), ()),
                tokens=self._tokens_of(texts),
            )
            if group.outcome == OK:
                vectors = cast("list[list[float]]", group.value)
                for position, (index, _) in enumerate(members):
                    # the group's usage goes to its first row, so sums stay right
                    results[index] = row = RowResult(
                        vectors[position],
                        OK,
                        status=group.status,
                        attempts=group.attempts,
                        usage=group.usage if position == 0 else None,
                        latency_s=group.latency_s,
                    )
                    self.observer.row_done(row)
                return
            # One bad row must not null its neighbours: retry the members one by one.
            for index, text in members:
                row = await self.call_row(text, model=model)
                results[index] = row
                if raise_on_failover and row.outcome == FAILED:
                    raise RowFailedError(
                        index, row.error or "unknown error", attempts=row.attempts, status=row.status
                    )

        await gather_or_cancel([one_chunk(model, members) for model, members in chunks])
        return _all_done(results)

    # --- attempts and retries ------------------------------------------------------------------
    async def _send(
        self,
        body: bytes,
        parse: Callable[[Any], tuple[Any, tuple[str, ...]]],
        on_backoff: Callable[[], None] | None = None,
        tokens: int = 0,
    ) -> RowResult:
        """One row's attempts; ``on_backoff`` is called before each wait for a retry.

        ``tokens`` is the request's estimate for the token budget. Time held by the quota gate
        moves the row's deadline by as much: a row waiting for the quota is not failed by it.
        """
        policy, settings, clock, gate = self.spec.retry, self.settings, self._clock, self.quota
        attempts, status, started, throttled = 0, None, 0.0, 0.0
        deadline: float | None = None
        error: EndpointError | None = None
        slots = self._slots or self._get_slots()
        while True:
            if not slots.take_now():
                await slots.wait()
            try:
                wait, taken = gate.reserve(tokens)
                if wait > 0:
                    held = await gate.settle(wait, taken, tokens)
                    throttled += held
                    if deadline is not None:
                        deadline += held
                gate.sent(tokens)
                now = clock()
                if attempts == 0:  # a row's deadline counts from its first attempt, not its queueing
                    started = now
                    deadline = None if settings.row_deadline_s is None else now + settings.row_deadline_s
                remaining = settings.request_timeout_s if deadline is None else deadline - now
                attempts += 1
                self.in_flight += 1
                session = self._session
                if session is None or session.closed:
                    session = self._get_session()
                reply = None
                try:
                    reply = await session.post(body, min(settings.request_timeout_s, remaining))
                    status = reply.status
                    value, choices = check_reply(reply, parse, self.spec.redactor)
                    error = None
                except EndpointError as exc:
                    error = exc
                finally:
                    self.in_flight -= 1
                latency = clock() - now
                self.observer.request_done(latency, error is None)
                usage = None if reply is None or error is not None else parse_usage(reply.payload)
                if reply is not None:
                    used = None if usage is None else usage.total_tokens
                    gate.reply(reply.status, reply.headers, latency, used, tokens)
                if error is not None and _overloaded(error):
                    gate.overloaded(error.status, error.retry_after, {} if reply is None else reply.headers)
            finally:
                slots.give_back()
            if error is None:
                return RowResult(
                    value,
                    OK,
                    status=status,
                    attempts=attempts,
                    usage=usage,
                    choices=choices,
                    latency_s=self._clock() - started,
                    throttled_s=throttled,
                )
            if not error.retryable or attempts >= policy.max_attempts:
                break
            delay = delay_before_retry(policy, attempts, error.retry_after, self._uniform)
            if deadline is not None and self._clock() + delay >= deadline:
                error = type(error)(
                    f"{error} (row deadline of {self.settings.row_deadline_s:g} s "
                    f"reached before retry {attempts})",
                    retryable=False,
                    status=error.status,
                )
                break
            self.observer.retry()
            if on_backoff is not None:
                on_backoff()
            await self._sleep(delay)
        outcome = FAILED if policy.final_action == "FAILOVER" else IGNORED
        message = self._redact(f"{error} [{self.spec.url}]")
        if outcome == IGNORED:
            logger.debug("row ignored after %d attempt(s): %s", attempts, message)
        return RowResult(
            None,
            outcome,
            error=message,
            status=status,
            attempts=attempts,
            latency_s=self._clock() - started,
            throttled_s=throttled,
        )

    def _redact(self, text: str) -> str:
        return self.spec.redactor.text(text)

    def _get_slots(self) -> RequestSlots:
        if self._slots is None:
            self._slots = RequestSlots(self.quota.aimd.allowed)
        return self._slots

    def _resize_slots(self, allowed: int) -> None:
        """The quota gate's adaptive limit changed: allow that many requests in flight."""
        if self._slots is not None:
            self._slots.resize(allowed)

    def _get_session(self) -> HTTPSession:
        if self._session is None or self._session.closed:
            self._loop = asyncio.get_running_loop()
            self._session = self._open_session_for(self.spec.url, self.settings.max_concurrency)
        return self._session

    def _open_session_for(self, url: str, max_connections: int = 2) -> HTTPSession:
        """A session to ``url`` (the API, or the server's tokenizer) with this engine's settings."""
        return open_session(
            url,
            self.spec.headers,
            max_connections,
            client=self.settings.http_client,
            max_reply_bytes=self.settings.max_reply_bytes,
            tls_ca_file=self.settings.tls_ca_file,
        )

    async def aclose(self) -> None:
        """Close the HTTP session; call on the loop that made the requests."""
        if self._session is not None and not self._session.closed:
            await self._session.aclose()
        if self._server_tokens is not None:
            await self._server_tokens.aclose()
        self._session = None
        self._slots = None

    def close_from_outside(self, timeout_s: float = 5.0) -> None:
        """Close from a thread other than the engine's loop (Flink's ``close()``).

        If the loop that made the requests still runs, the session is closed on it; if Flink has
        already stopped it, the session is abandoned without awaiting.
        """
        session, loop = self._session, self._loop
        if session is None or session.closed:
            return
        if loop is not None and loop.is_running() and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout_s)
                return
            except Exception:
                pass
        session.abandon()
        if self._server_tokens is not None:
            self._server_tokens.abandon()
        self._session = None
        self._slots = None


def _overloaded(error: EndpointError) -> bool:
    """The signals the quota gate acts on: a 429, a 503 that says when to come back, a timeout.

    A plain 5xx is the server failing, not asking for less: it is retried, nothing more.
    """
    if error.status == 429:
        return True
    if error.status == 503:
        return error.retry_after is not None
    return isinstance(error, EndpointTimeoutError)


def _all_done(results: list[RowResult | None]) -> list[RowResult]:
    """The batch's results once every row has one (a None here is a bug, not a row's outcome)."""
    if any(result is None for result in results):
        raise AssertionError("a row of the batch has no result")
    return cast("list[RowResult]", results)

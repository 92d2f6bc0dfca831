"""The async call engine: bounded concurrency, per-row retries, one ``RowResult`` per input.

One ``LLMEngine`` per Flink worker (or per notebook call). Rows run as coroutines on one event
loop; request slots bound requests in flight (a row gives its slot back while it waits to retry,
so a backing-off row never idles a slot). Both the batch path (Pandas UDF, ``run_batch``) and the
row path (AsyncFunction) go through ``call_row``, so the semantics are the same everywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import orjson

from ._call_options import CallOptions
from ._call_plan import CallPlan, OutputSpec, PlanCache, build_plan
from ._endpoint_tokens import EndpointTokenizer, EndpointTokenizerMissing
from ._engine_settings import EngineSettings
from ._errors import (
    EndpointError,
    EndpointTimeoutError,
    FlinkLLMError,
    InvalidReplyError,
    RowFailedError,
)
from ._http import HTTPSession, open_session
from ._observers import EngineObserver, NullObserver
from ._packer import Packer
from ._provider import TASK_CHAT, OpenAICompatProvider
from ._quota import QuotaGate, TokenEstimator
from ._result_cache import ResultCache, cache_key, open_cache
from ._results import FAILED, IGNORED, NULL_INPUT, OK, SKIPPED, RowResult
from ._retry import delay_before_retry
from ._slots import RequestSlots
from ._spend import PriceTable, SpendGuard, spend_guard
from ._templates import fields_of_input
from ._tokens import fit_to_context, load_encoding
from ._wire import (
    CREDENTIAL_HEADER,
    BodyTemplates,
    CallSpec,
    Usage,
    check_reply,
    parse_embeddings,
    parse_usage,
    resolve_call,
    unsendable,
)
from ._workers import run_on_workers

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
        self._plan_estimators: dict[int, tuple[CallPlan, TokenEstimator]] = {}
        self._warned_no_usage = False
        self._environ = environ
        self._default_plan = build_plan(
            provider, self.settings, None, None, json_schema_refused=False, environ=environ
        )
        self._plans = PlanCache()
        self._json_schema_refused = False
        self._pending: dict[bytes, asyncio.Future[RowResult]] = {}
        self.cache: ResultCache | None = open_cache(
            self.settings.cache,
            ttl_s=self.settings.cache_ttl_s,
            max_entries=self.settings.cache_max_entries,
            password_file=self.settings.cache_password_file,
            tls_ca_file=self.settings.tls_ca_file,
        )
        # what besides URL and body can change an answer: the headers a gateway routes by
        # (credentials left out, so a rotated key still finds its answers)
        self._cache_scope = "".join(
            f"\n{name.lower()}:{value}"
            for name, value in sorted(self.spec.headers)
            if name.lower() != "content-type" and not CREDENTIAL_HEADER.search(name)
        )
        self.prices = None if self.settings.prices is None else PriceTable.parse(self.settings.prices)
        self.spend: SpendGuard = spend_guard(
            self.settings.token_budget, self.settings.cost_budget, self.subtasks, self.prices
        )
        self._budgeted = self.settings.token_budget is not None or self.settings.cost_budget is not None
        if self.settings.cost_budget is not None:
            self.spend.require_price(self.spec.model)
        self.rows_refused = 0
        self.cache_hits = self.cache_misses = 0
        self._packer: Packer[tuple[CallOptions | None, str | None], str, RowResult] | None = None
        if not self.is_chat and self.settings.embedding_rows_per_request > 1:
            self._packer = Packer(
                self._send_pack,
                self.settings.embedding_rows_per_request,
                self.settings.embedding_pack_wait_s or 0.0,
            )
        attach = getattr(self.observer, "attach_quota", None)
        if attach is not None:
            attach(self.quota.usage)
        attach_counts = getattr(self.observer, "attach_counts", None)
        if attach_counts is not None:
            attach_counts(self._counts)

    def __repr__(self) -> str:
        return (
            f"LLMEngine(url={self.spec.url!r}, task={self.spec.task!r}, "
            f"api_key={self.spec.masked_key!r}, settings={self.settings!r})"
        )

    @property
    def is_chat(self) -> bool:
        return self.spec.task == TASK_CHAT

    # --- one row -------------------------------------------------------------------------------
    async def call_row(
        self,
        text: str | Mapping[str, Any] | None,
        *,
        model: str | None = None,
        options: CallOptions | None = None,
        output: OutputSpec | None = None,
    ) -> RowResult:
        """Send one row (with retries) and return its outcome; never raises for a row's failure.

        ``options`` change the function's configuration for this call (``parse_call_options``);
        ``output`` asks for structured output, validated before the row counts as answered. With
        a prompt template the row may be a mapping (or a JSON object text) of its fields.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()  # where close_from_outside closes the cache
        result = await self._call_row(text, model, options=options, output=output)
        self.observer.row_done(result)
        return result

    async def _call_row(
        self,
        text: str | Mapping[str, Any] | None,
        model: str | None,
        on_backoff: Callable[[], None] | None = None,
        *,
        options: CallOptions | None = None,
        output: OutputSpec | None = None,
    ) -> RowResult:
        if text is None:
            return RowResult(None, NULL_INPUT)
        try:
            plan = self._plan(options, output)
        except (FlinkLLMError, ValueError, TypeError) as exc:
            return self._unsent(f"its options cannot be used: {self._redact(str(exc))}")
        if model is None:
            model = plan.model
        prompt: object = text
        if plan.template is not None:
            try:
                fields = fields_of_input(text, plan.template)
                prompt = None if fields is None else plan.template.render(fields)
            except (KeyError, ValueError, TypeError) as exc:
                return self._unsent(_reason(exc))
            if prompt is None:
                return RowResult(None, NULL_INPUT)
        problem = unsendable(prompt, model)
        if problem is not None:
            return self._unsent(problem)
        row = cast(str, prompt)
        try:
            fitted = await self._fitted(row)
        except EndpointError as exc:
            return self._unsent(f"counting its tokens with the server failed: {self._redact(str(exc))}")
        if fitted is None:
            return RowResult(None, SKIPPED)
        try:
            body = plan.bodies.encode(fitted, model)
        except UnicodeEncodeError as exc:
            return self._unsent(f"the text is not valid Unicode ({exc.reason} at position {exc.start})")
        priced = model or plan.spec.model
        packer = self._packer
        if packer is not None:
            group = (options, model)

            def produce() -> Awaitable[RowResult]:
                if on_backoff is not None:
                    on_backoff()  # the worker starts the next row, which may join this pack
                return packer.submit(group, fitted)

        else:

            def produce() -> Awaitable[RowResult]:
                return self._send(body, plan.parser(), on_backoff, self._tokens_of(fitted, plan), priced)

        result = await self._once(plan.spec.url, body, produce, on_backoff)
        if self._refuses_json_schema(plan, result):
            again = await self._call_row(text, model, on_backoff, options=options, output=output)
            return dataclasses.replace(
                again, attempts=again.attempts + result.attempts, latency_s=again.latency_s + result.latency_s
            )
        return result

    def _plan(self, options: CallOptions | None, output: OutputSpec | None) -> CallPlan:
        """The plan for a call: the function's own, or one built once per (options, output)."""
        if options is None and output is None:
            return self._default_plan
        return self._plans.get(
            (options, output),
            lambda: build_plan(
                self.provider,
                self.settings,
                options,
                output,
                json_schema_refused=self._json_schema_refused,
                environ=self._environ,
            ),
        )

    def _refuses_json_schema(self, plan: CallPlan, result: RowResult) -> bool:
        """Whether the server refused ``json_schema`` (then every plan asks with ``json_object``)."""
        if result.ok or not plan.asks_json_schema or not plan.fallback_allowed:
            return False
        error = (result.error or "").lower()
        if result.status not in (400, 422) or not ("response_format" in error or "json_schema" in error):
            return False
        if not self._json_schema_refused:
            logger.warning(
                "the endpoint refused response_format json_schema (HTTP %s): asking for json_object with "
                "the schema in the system prompt from now on (structured-output=json_object: from the start)",
                result.status,
            )
        self._json_schema_refused = True
        self._plans.clear()
        return True

    # --- paying once ---------------------------------------------------------------------------
    async def _once(
        self,
        url: str,
        body: bytes,
        produce: Callable[[], Awaitable[RowResult]],
        on_backoff: Callable[[], None] | None,
    ) -> RowResult:
        """The answer to ``body``: shared with an identical request in flight, from the cache, or
        from ``produce`` (a request), which then fills the cache."""
        future: asyncio.Future[RowResult] | None = None
        if self.settings.dedup:
            while (pending := self._pending.get(body)) is not None:
                if on_backoff is not None:
                    on_backoff()  # waiting for another row's request: let the worker go on
                    on_backoff = None
                try:
                    return _shared(await asyncio.shield(pending))
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if pending.cancelled() and (task is None or not getattr(task, "cancelling", int)()):
                        continue  # the row that sent it was cancelled: send it ourselves
                    raise
            future = asyncio.get_running_loop().create_future()
            self._pending[body] = future
        try:
            result = await self._cached_or(url, body, produce)
        except BaseException:
            if future is not None:
                future.cancel()
            raise
        finally:
            if future is not None:
                self._pending.pop(body, None)
        if future is not None:
            future.set_result(result)
        return result

    async def _cached_or(
        self, url: str, body: bytes, produce: Callable[[], Awaitable[RowResult]]
    ) -> RowResult:
        cache = self.cache
        if cache is None:
            return await produce()
        key = cache_key(url + self._cache_scope, body)
        stored = await cache.get(key)
        if stored is not None:
            hit = self._from_cache(stored)
            if hit is not None:
                self.cache_hits += 1
                return hit
        self.cache_misses += 1
        result = await produce()
        if result.ok:
            entry = _to_cache(result)
            if entry is not None:
                await cache.put(key, entry)
        return result

    def _from_cache(self, stored: bytes) -> RowResult | None:
        try:
            try:
                entry = orjson.loads(stored)
            except ValueError:
                entry = json.loads(stored)  # stored by the json fallback (a big integer)
            usage = Usage(*entry["u"]) if entry.get("u") else None
            return RowResult(
                entry["v"],
                OK,
                status=200,
                usage=usage,
                choices=tuple(entry.get("c", ())),
                cached=True,
                cost=None if self.prices is None else 0.0,
            )
        except (ValueError, KeyError, TypeError):
            return None  # not an entry of ours: ask the endpoint

    def _counts(self) -> dict[str, float]:
        """Counts the observer reports beside its own: the cache's and the spend guard's."""
        cache = self.cache
        return {
            "cacheHits": self.cache_hits,  # this engine's: a memory cache serves the whole process
            "cacheMisses": self.cache_misses,
            "cacheErrors": 0 if cache is None else cache.errors,
            "budgetRefused": self.rows_refused,
        }

    def _tokens_of(self, texts: str | list[str], plan: CallPlan | None = None) -> int:
        """The request's estimated tokens when a token quota or budget is in force (else 0),
        counted with the call's own plan: its prompts, ``max_tokens``, ``n`` and schema."""
        if not (self.quota.counts_tokens or self._budgeted):
            return 0
        if plan is None or plan is self._default_plan:
            if self._estimator is None:
                self._estimator = TokenEstimator(self.spec, self.settings.completion_tokens_estimate)
            return self._estimator.estimate(texts)
        known = self._plan_estimators.get(id(plan))
        if known is None:
            if len(self._plan_estimators) >= 256:
                self._plan_estimators.clear()
            estimator = TokenEstimator(plan.spec, self.settings.completion_tokens_estimate)
            known = self._plan_estimators[id(plan)] = (plan, estimator)  # the plan held: its id stays its own
        return known[1].estimate(texts)

    def unsent(self, problem: str) -> RowResult:
        """A row that cannot go into a request: its own error, never the batch's (no attempt made)."""
        return self._unsent(problem)

    def _unsent(self, problem: str) -> RowResult:
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
        inputs: Sequence[str | Mapping[str, Any] | None],
        models: Sequence[str | None] | None = None,
        *,
        options: CallOptions | Sequence[CallOptions | None] | None = None,
        output: OutputSpec | Sequence[OutputSpec | None] | None = None,
        raise_on_failover: bool = True,
    ) -> list[RowResult]:
        """One result per input, same order. Under FAILOVER the first failed row raises
        ``RowFailedError`` (naming its index) and the batch's other rows are cancelled.

        ``options`` are one ``CallOptions`` for every row or one per row; ``output`` asks every
        row for structured output."""
        if models is not None and len(models) != len(inputs):
            raise ValueError(f"models has {len(models)} entries for {len(inputs)} inputs")
        per_row = None if options is None or isinstance(options, CallOptions) else list(options)
        if per_row is not None and len(per_row) != len(inputs):
            raise ValueError(f"options has {len(per_row)} entries for {len(inputs)} inputs")
        shared = options if isinstance(options, CallOptions) else None
        outputs = None if output is None or isinstance(output, OutputSpec) else list(output)
        if outputs is not None and len(outputs) != len(inputs):
            raise ValueError(f"output has {len(outputs)} entries for {len(inputs)} inputs")
        one_output = output if isinstance(output, OutputSpec) else None
        if self._session is None or self._session.closed:
            self._get_session()  # here, so a configuration error is raised once, not by every worker

        async def one(index: int, on_backoff: Callable[[], None]) -> RowResult:
            result = await self._call_row(
                inputs[index],
                None if models is None else models[index],
                on_backoff,
                options=shared if per_row is None else per_row[index],
                output=one_output if outputs is None else outputs[index],
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

    async def _send_pack(
        self, group: tuple[CallOptions | None, str | None], texts: list[str]
    ) -> list[RowResult]:
        """One embeddings request for a pack of rows; a failed pack is retried row by row."""
        options, model = group
        plan = self._plan(options, None)
        priced = model or plan.spec.model
        if len(texts) > 1:
            pack = await self._send(
                plan.bodies.encode(texts, model),
                lambda payload: (parse_embeddings(payload, len(texts)), ()),
                tokens=self._tokens_of(texts, plan),
                model=priced,
            )
            if pack.ok:
                vectors = cast("list[list[float]]", pack.value)
                # the pack's usage and cost go to its first row, so sums stay right
                return [
                    dataclasses.replace(
                        pack,
                        value=vector,
                        usage=pack.usage if position == 0 else None,
                        cost=pack.cost if position == 0 or pack.cost is None else 0.0,
                    )
                    for position, vector in enumerate(vectors)
                ]
        # One bad row must not null its neighbours: each is sent (and retried) alone.
        return list(
            await asyncio.gather(
                *(
                    self._send(
                        plan.bodies.encode(text, model),
                        plan.parser(),
                        None,
                        self._tokens_of(text, plan),
                        priced,
                    )
                    for text in texts
                )
            )
        )

    # --- attempts and retries ------------------------------------------------------------------
    async def _send(
        self,
        body: bytes,
        parse: Callable[[Any], tuple[Any, tuple[str, ...]]],
        on_backoff: Callable[[], None] | None = None,
        tokens: int = 0,
        model: str | None = None,
    ) -> RowResult:
        """One row's attempts; ``on_backoff`` is called before each wait for a retry.

        ``tokens`` is the request's estimate for the token quota and budget; ``model`` the one
        it is priced as. Time held by the quota gate moves the row's deadline by as much: a row
        waiting for the quota is not failed by it. Each attempt is admitted by the spend guard:
        once the budget is spent, the row ends without a request.
        """
        policy, settings, clock, gate, guard = (
            self.spec.retry,
            self.settings,
            self._clock,
            self.quota,
            self.spend,
        )
        attempts, status, started, throttled = 0, None, 0.0, 0.0
        gate_tokens = tokens if gate.counts_tokens else 0
        deadline: float | None = None
        error: EndpointError | None = None
        earlier_cost = 0.0  # what the row's earlier, answered but unusable attempts cost
        earlier_usage: Usage | None = None  # and the tokens they were billed
        slots = self._slots or self._get_slots()
        while True:
            reservation = guard.admit(tokens, model)
            if reservation is None:
                refused = self._refused(attempts, status, clock() - started if attempts else 0.0, throttled)
                cost = None if self.prices is None else earlier_cost
                return dataclasses.replace(refused, usage=earlier_usage, cost=cost)
            if not slots.take_now():
                await slots.wait()
            reply = None
            try:
                wait, taken = gate.reserve(gate_tokens)
                if wait > 0:
                    held = await gate.settle(wait, taken, gate_tokens)
                    throttled += held
                    if deadline is not None:
                        deadline += held
                gate.sent(gate_tokens)
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
                    gate.reply(reply.status, reply.headers, latency, used, gate_tokens)
                if error is not None and _overloaded(error):
                    gate.overloaded(error.status, error.retry_after, {} if reply is None else reply.headers)
            finally:
                slots.give_back()
                if reply is None and isinstance(error, EndpointTimeoutError):
                    guard.keep(reservation)  # sent and maybe answered (and billed) after we stopped waiting
                elif reply is None or reply.payload is None:
                    guard.release(reservation)
                else:  # an answered request is paid for, valid or not
                    paid = parse_usage(reply.payload) if isinstance(reply.payload, dict) else None
                    if paid is None:
                        if 200 <= reply.status < 300:
                            guard.keep(reservation)  # answered, so billed: count the estimate
                            self._warn_no_usage()
                        else:
                            guard.release(reservation)
                    else:
                        guard.settle(reservation, paid.prompt_tokens, paid.completion_tokens, model)
                        if error is not None:  # e.g. a reply that broke the schema: billed all the same
                            earlier_cost += self._cost(model, paid) or 0.0
                            earlier_usage = _add_usage(earlier_usage, paid)
            if error is None:
                return RowResult(
                    value,
                    OK,
                    status=status,
                    attempts=attempts,
                    usage=_add_usage(earlier_usage, usage),
                    choices=choices,
                    latency_s=self._clock() - started,
                    throttled_s=throttled,
                    cost=_plus(self._cost(model, usage), earlier_cost),
                )
            # a reply that breaks the schema is asked again whatever the strategy (the parser
            # counts those and says when to stop), at once: the server is fine
            invalid_reply = isinstance(error, InvalidReplyError)
            if not error.retryable or (attempts >= policy.max_attempts and not invalid_reply):
                break
            delay = (
                0.0
                if invalid_reply
                else delay_before_retry(policy, attempts, error.retry_after, self._uniform)
            )
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
            usage=earlier_usage,
            cost=None if self.prices is None else earlier_cost,
            throttled_s=throttled,
        )

    def _refused(self, attempts: int, status: int | None, latency_s: float, throttled_s: float) -> RowResult:
        """A row the spend guard stopped: the budget is spent, so no (further) request is sent."""
        self.rows_refused += 1
        outcome = FAILED if self.spec.retry.final_action == "FAILOVER" else IGNORED
        return RowResult(
            None,
            outcome,
            error=self.spend.exhausted_message(),
            status=status,
            attempts=attempts,
            latency_s=latency_s,
            throttled_s=throttled_s,
        )

    def _warn_no_usage(self) -> None:
        if self._budgeted and not self._warned_no_usage:
            self._warned_no_usage = True
            logger.warning(
                "the endpoint answers without 'usage': the token budget counts each answered "
                "request at its estimate (prompt counted here, plus max_tokens or %d)",
                self.settings.completion_tokens_estimate,
            )

    def _cost(self, model: str | None, usage: Usage | None) -> float | None:
        if self.prices is None:
            return None
        if usage is None:
            return 0.0
        return self.prices.cost(model, usage.prompt_tokens, usage.completion_tokens)

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
        """Close the HTTP session and the cache's connection; call on the loop that made the requests."""
        if self._packer is not None:
            await self._packer.aclose()
        if self.cache is not None:
            await self.cache.aclose()
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
        open_session = session is not None and not session.closed
        if loop is None or not (open_session or self.cache is not None or self._packer is not None):
            return  # nothing ran on a loop: nothing holds a connection
        if loop.is_running() and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout_s)
                return
            except Exception:
                pass
        if session is not None and not session.closed:
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


def _add_usage(first: Usage | None, second: Usage | None) -> Usage | None:
    """Tokens of two requests together (None when neither reported any)."""
    if first is None or second is None:
        return second if first is None else first
    return Usage(
        first.prompt_tokens + second.prompt_tokens,
        first.completion_tokens + second.completion_tokens,
        first.total_tokens + second.total_tokens,
    )


def _plus(cost: float | None, more: float) -> float | None:
    return cost if cost is None else cost + more


def _shared(result: RowResult) -> RowResult:
    """Another row's answer to the same request: no request of its own, nothing paid."""
    if not result.ok:
        # its error, and no request of its own
        return dataclasses.replace(
            result, attempts=0, throttled_s=0.0, cost=None if result.cost is None else 0.0
        )
    return dataclasses.replace(
        result, cached=True, attempts=0, throttled_s=0.0, cost=None if result.cost is None else 0.0
    )


def _to_cache(result: RowResult) -> bytes | None:
    """A cache entry: the value, every choice and the usage of the request that paid for it."""
    usage = result.usage
    entry = {
        "v": result.value,
        "c": list(result.choices),
        "u": None if usage is None else [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens],
    }
    try:
        return orjson.dumps(entry)
    except TypeError:  # e.g. an integer beyond 64 bits in a structured answer
        try:
            return json.dumps(entry, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError):
            return None  # not storable: the answer is simply not cached


def _reason(exc: BaseException) -> str:
    """A template error's message (a KeyError's str() is its quoted key)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _all_done(results: list[RowResult | None]) -> list[RowResult]:
    """The batch's results once every row has one (a None here is a bug, not a row's outcome)."""
    if any(result is None for result in results):
        raise AssertionError("a row of the batch has no result")
    return cast("list[RowResult]", results)

"""Synchronous access to the async engine: a private event loop in a daemon thread.

The Pandas UDF calls the engine once per Arrow batch from Flink's worker thread, and notebook
users may already run an event loop; a loop thread of our own serves both, and keeps the aiohttp
session (and its warm connections) alive across batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ._call_options import CallOptions, parse_call_options
from ._call_plan import OutputSpec, output_spec
from ._engine import LLMEngine
from ._engine_settings import EngineSettings
from ._event_loops import EVENT_LOOP_ENV, new_event_loop  # noqa: F401 - EVENT_LOOP_ENV re-exported
from ._observers import EngineObserver
from ._provider import OpenAICompatProvider
from ._results import RowResult

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread; ``run`` submits and waits."""

    def __init__(self, name: str = "flink-llm-loop") -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and return its result (re-raising its exception)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


class BlockingEngine:
    """An ``LLMEngine`` driven from synchronous code (one loop thread, one HTTP session)."""

    def __init__(
        self,
        provider: OpenAICompatProvider,
        settings: EngineSettings | None = None,
        *,
        observer: EngineObserver | None = None,
        subtasks: int = 1,
    ) -> None:
        self.engine = LLMEngine(provider, settings, observer=observer, subtasks=subtasks)
        self._loop = LoopThread()

    def run_batch(
        self,
        inputs: Sequence[str | Mapping[str, Any] | None],
        models: Sequence[str | None] | None = None,
        *,
        options: CallOptions | Sequence[CallOptions | None] | None = None,
        output: OutputSpec | Sequence[OutputSpec | None] | None = None,
        raise_on_failover: bool = True,
        timeout: float | None = None,
    ) -> list[RowResult]:
        return self._loop.run(
            self.engine.run_batch(
                inputs, models, options=options, output=output, raise_on_failover=raise_on_failover
            ),
            timeout,
        )

    def close(self) -> None:
        try:
            self._loop.run(self.engine.aclose(), timeout=10)
        finally:
            self._loop.stop()

    def __enter__(self) -> BlockingEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_batch(
    provider: OpenAICompatProvider,
    inputs: Sequence[str | Mapping[str, Any] | None],
    *,
    settings: EngineSettings | None = None,
    models: Sequence[str | None] | None = None,
    observer: EngineObserver | None = None,
    options: str | Mapping[str, Any] | None = None,
    output_schema: str | Mapping[str, Any] | None = None,
    labels: str | Sequence[str] | None = None,
    **setting_values: Any,
) -> list[RowResult]:
    """Call the endpoint for every input; return one ``RowResult`` per input, in order.

    ``settings`` (an ``EngineSettings``) and any of its fields as keywords
    (``run_batch(p, rows, max_concurrency=64, context_tokenizer="endpoint")``; the keywords win)
    say how; ``request_timeout``, ``row_deadline`` and ``batch_deadline`` are accepted for the
    ``_s`` fields. At most ``max_concurrency`` requests are in flight. A NULL input yields a NULL
    value with no request. Rows that fail follow the provider's error handling: under IGNORE (or
    RETRY with an IGNORE fallback) their value is None and ``error`` says why; under FAILOVER the
    first failed row raises ``RowFailedError`` naming its index and cause. Works inside a running
    event loop (e.g. Jupyter) because the calls run on a private loop thread.

    ``options`` change the provider's options for these calls (``{"temperature": 0}``); with a
    ``prompt_template`` an input may be a mapping of the template's fields. ``output_schema`` (a
    Flink ``ROW<…>`` type string, a JSON schema as text or mapping) makes each value the reply's
    validated JSON object; ``labels`` makes it exactly one of the labels.
    """
    chosen = settings_with(settings, setting_values)
    call_options, output = parse_call_options(options), output_spec(output_schema, labels)
    with BlockingEngine(provider, chosen, observer=observer) as engine:
        return engine.run_batch(
            list(inputs), None if models is None else list(models), options=call_options, output=output
        )


async def arun_batch(
    provider: OpenAICompatProvider,
    inputs: Sequence[str | Mapping[str, Any] | None],
    *,
    settings: EngineSettings | None = None,
    models: Sequence[str | None] | None = None,
    observer: EngineObserver | None = None,
    options: str | Mapping[str, Any] | None = None,
    output_schema: str | Mapping[str, Any] | None = None,
    labels: str | Sequence[str] | None = None,
    **setting_values: Any,
) -> list[RowResult]:
    """``run_batch`` for callers already inside an event loop (runs on the caller's loop)."""
    call_options, output = parse_call_options(options), output_spec(output_schema, labels)
    engine = LLMEngine(provider, settings_with(settings, setting_values), observer=observer)
    try:
        return await engine.run_batch(
            list(inputs), None if models is None else list(models), options=call_options, output=output
        )
    finally:
        await engine.aclose()


#: ``run_batch`` keywords that name an ``EngineSettings`` field by its shorter, older name.
_KEYWORD_ALIASES = {
    "request_timeout": "request_timeout_s",
    "row_deadline": "row_deadline_s",
    "batch_deadline": "batch_deadline_s",
}


def settings_with(settings: EngineSettings | None, values: dict[str, Any]) -> EngineSettings:
    """``settings`` (or the defaults) with ``values`` (field names or their aliases) applied."""
    fields = {field.name for field in dataclasses.fields(EngineSettings)}
    changes: dict[str, Any] = {}
    for name, value in values.items():
        field = _KEYWORD_ALIASES.get(name, name)
        if field not in fields:
            raise TypeError(
                f"run_batch() got an unexpected keyword argument {name!r}: not an EngineSettings field "
                f"({', '.join(sorted(fields))})"
            )
        changes[field] = value
    return dataclasses.replace(settings or EngineSettings(), **changes)

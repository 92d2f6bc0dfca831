"""The event loops we create ourselves: uvloop's when installed (libuv in C costs less CPU per
request than asyncio's pure-Python loop), asyncio's when ``FLINK_LLM_EVENT_LOOP=asyncio``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: ``FLINK_LLM_EVENT_LOOP``: "auto" (uvloop when installed, else asyncio) or "asyncio".
EVENT_LOOP_ENV = "FLINK_LLM_EVENT_LOOP"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop for a thread or process of our own: uvloop's when available."""
    if os.environ.get(EVENT_LOOP_ENV, "auto").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` on ``new_event_loop()``."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(coroutine)
    loop = new_event_loop()  # Python 3.10: no loop_factory
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coroutine)
    finally:
        asyncio.set_event_loop(None)
        loop.close()

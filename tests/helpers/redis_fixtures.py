"""Pytest fixtures around ``helpers.redis_server``: a real Redis per test, stopped after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running ``redis-server`` on 127.0.0.1 without a password; stopped and removed after the test."""
    with RedisServer() as server:
        yield server

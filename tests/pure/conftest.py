"""The pure tier: functions and tables, no network and no JVM.

Every test here runs with sockets unable to connect or bind, so a test that reaches for a
server belongs in ``tests/loopback`` instead. An event loop's own socket pair still works.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a pure-tier test opened a network connection; move it to tests/loopback")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refuse)
    yield

"""The test tiers, one folder each, marked by folder so that any tier runs alone.

======== ================================================= =========================
folder   what runs                                          run it alone
======== ================================================= =========================
pure     pure functions and tables; no socket, no JVM       ``pytest -m pure``
loopback real servers on 127.0.0.1 (simulator, scripted);   ``pytest -m loopback``
         no JVM
flink    real Flink in a local mini-cluster (JVM)           ``pytest -m flink``
cluster  a real standalone Flink cluster from the wheel     ``pytest -m cluster``
compat   a real third-party server (llama.cpp), opt-in      ``make test-compat``
======== ================================================= =========================

``make test-fast`` runs ``pure`` and ``loopback``; ``make test`` every tier but ``compat``. A Flink
tier test fails, never skips, when Java is missing: CI must not pass without having run Flink.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["helpers.redis_fixtures"]

TIERS = ("pure", "loopback", "flink", "cluster", "compat")
_TESTS_DIR = Path(__file__).resolve().parent
_NEEDS_JAVA = {"flink", "cluster"}


def tier_of(path: Path) -> str | None:
    """The tier folder a test file sits in, or None for a file outside every tier."""
    try:
        first = Path(path).resolve().relative_to(_TESTS_DIR).parts[0]
    except (ValueError, IndexError):
        return None
    return first if first in TIERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test must sit in one of the tier folders {TIERS}")
        item.add_marker(getattr(pytest.mark, tier))


def _java_executable() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


@pytest.fixture(autouse=True)
def _java_for_flink_tiers(request: pytest.FixtureRequest) -> None:
    """Java must be there for the Flink tiers: fail (never skip) with a clear message."""
    if tier_of(request.node.path) in _NEEDS_JAVA and _java_executable() is None:
        pytest.fail("the Flink tests need Java 11+ (java on PATH or JAVA_HOME); none found", pytrace=False)

"""Fixtures of the Flink mini-cluster tier.

Local PyFlink runs its Python workers inside this (the test) process ("loopback" mode), so
environment variables set here reach the UDFs and a simulator in a thread would share their
GIL; each module therefore shares one ``SimulatorProcess`` (``simulator``), reset per test
(``sim``). One JVM (the py4j gateway) serves every job of the pytest process; each job starts
its own mini-cluster (6-8 s of a test's time, more on a loaded machine).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.flink_jobs import SIM_LATENCY_MS

from flink_llm_udf.simulator import SimulatorConfig, SimulatorProcess


@pytest.fixture(scope="module")
def flink_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Flink's logs go to a temporary directory (the root conftest has checked Java).

    ``FLINK_LOG_DIR`` counts when the gateway JVM starts (the first job of the process);
    without it local runs write into ``site-packages/pyflink/log``.
    """
    with pytest.MonkeyPatch.context() as patch:
        if "FLINK_LOG_DIR" not in os.environ:
            patch.setenv("FLINK_LOG_DIR", str(tmp_path_factory.mktemp("flink-log")))
        yield Path(os.environ["FLINK_LOG_DIR"])


@pytest.fixture(scope="module")
def simulator(flink_runtime: Path) -> Iterator[SimulatorProcess]:
    """One simulator subprocess per module, recording every request."""
    config = SimulatorConfig(latency_ms=SIM_LATENCY_MS, record_requests=True, record_limit=100_000)
    with SimulatorProcess(config) as running:
        yield running


@pytest.fixture
def sim(simulator: SimulatorProcess) -> SimulatorProcess:
    """The module's simulator with zeroed stats and no recorded requests."""
    simulator.reset()
    return simulator

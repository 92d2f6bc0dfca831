"""The loopback tier: real servers on 127.0.0.1 (the simulator, scripted raw-socket servers).

``each_http_client`` runs a test once per HTTP client the package ships, through
``FLINK_LLM_HTTP_CLIENT`` (which decides what ``EngineSettings(http_client="auto")`` uses), so
the engine suite holds for every client a user can get.
"""

from __future__ import annotations

import pytest

from flink_llm_udf._http import SHIPPED_HTTP_CLIENTS


@pytest.fixture(params=SHIPPED_HTTP_CLIENTS)
def each_http_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The HTTP client this run of the test uses: set as the default for ``http_client="auto"``."""
    monkeypatch.setenv("FLINK_LLM_HTTP_CLIENT", request.param)
    return str(request.param)

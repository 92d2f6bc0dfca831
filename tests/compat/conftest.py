"""The compat tier: the package against llama.cpp's ``llama-server``, a server no one here wrote.

Session fixtures build (once, cached outside the checkout: see ``llama_cpp.py``) and start three
servers on 127.0.0.1, each on a free port with the tiny generated model, and stop them at the end:

``chat_server``      chat completions: ``-c 2048 -np 4`` (four slots of 512 tokens each)
``embedding_server`` embeddings: ``--embeddings --pooling mean -kvu`` (a second instance, so the
                     chat server runs exactly as a chat deployment would)
``keyed_server``     chat behind ``--api-key``, for the authentication tests

Every test runs once per HTTP client the package ships (``FLINK_LLM_HTTP_CLIENT``, which
``EngineSettings(http_client="auto")`` follows), as the loopback tier does.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

import pytest
from compat.llama_cpp import LlamaServer, Toolchain, ensure_model, ensure_toolchain

from flink_llm_udf._http import SHIPPED_HTTP_CLIENTS

#: Four slots sharing 2048 tokens of KV cache: a request must fit one slot's 512 tokens.
CHAT_ARGS = ("-c", "2048", "-np", "4", "--threads", "2")
#: ``-kvu`` (one KV cache shared by the slots): measured with this build, separate per-slot caches
#: (the default with ``-np`` > 1) give a text a different vector when the server decodes it in one
#: batch with a text of another length (0.9541 instead of 0.9595 in one component), so a row's
#: vector would depend on its neighbours; with a unified cache, or one slot, it does not.
EMBEDDING_ARGS = ("--embeddings", "--pooling", "mean", "-c", "2048", "-np", "4", "-kvu", "--threads", "2")
KEYED_ARGS = ("-c", "1024", "-np", "2", "--threads", "2")


def _say(config: pytest.Config, message: str) -> None:
    """Print past pytest's capture (a first build runs for minutes: say what is happening)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(message, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n[compat] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def llama_toolchain(pytestconfig: pytest.Config) -> Toolchain:
    """llama-server from the cache, built first when the cache has none (several minutes, once)."""
    toolchain = ensure_toolchain(log=lambda message: _say(pytestconfig, message))
    _say(pytestconfig, f"llama-server {toolchain.version} from {toolchain.server_binary}")
    return toolchain


@pytest.fixture(scope="session")
def tiny_model(llama_toolchain: Toolchain, pytestconfig: pytest.Config) -> Path:
    """The tiny llama GGUF (random weights, fixed seed), made once and cached beside the build."""
    return ensure_model(llama_toolchain, log=lambda message: _say(pytestconfig, message))


def _serve(
    toolchain: Toolchain,
    model: Path,
    logs: Path,
    name: str,
    args: Sequence[str],
    config: pytest.Config,
) -> Iterator[LlamaServer]:
    server = LlamaServer(toolchain.server_binary, model, logs / f"llama-server-{name}.log", args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if config.stash.get(_FAILED_KEY, False):
            _say(config, f"{name} server log: {server.log_path}")


_FAILED_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember that a compat test failed, so the fixtures print where the server logs are."""
    report = yield
    if report.failed:
        item.config.stash[_FAILED_KEY] = True
    return report


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every server's log in this session (named in failures)."""
    return tmp_path_factory.mktemp("llama-server-logs")


@pytest.fixture(scope="session")
def chat_server(
    llama_toolchain: Toolchain, tiny_model: Path, server_logs: Path, pytestconfig: pytest.Config
) -> Iterator[LlamaServer]:
    """A chat llama-server on 127.0.0.1: four slots of 512 tokens."""
    yield from _serve(llama_toolchain, tiny_model, server_logs, "chat", CHAT_ARGS, pytestconfig)


@pytest.fixture(scope="session")
def embedding_server(
    llama_toolchain: Toolchain, tiny_model: Path, server_logs: Path, pytestconfig: pytest.Config
) -> Iterator[LlamaServer]:
    """An embeddings llama-server on 127.0.0.1 (mean pooling: one vector of the model's width)."""
    yield from _serve(llama_toolchain, tiny_model, server_logs, "embeddings", EMBEDDING_ARGS, pytestconfig)


@pytest.fixture(scope="session")
def server_api_key() -> str:
    """The key ``keyed_server`` accepts: random per session, never a real credential."""
    return "sk-compat-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
def keyed_server(
    llama_toolchain: Toolchain,
    tiny_model: Path,
    server_logs: Path,
    server_api_key: str,
    pytestconfig: pytest.Config,
) -> Iterator[LlamaServer]:
    """A chat llama-server on 127.0.0.1 that demands ``server_api_key`` (401 otherwise)."""
    args = (*KEYED_ARGS, "--api-key", server_api_key)
    yield from _serve(llama_toolchain, tiny_model, server_logs, "keyed", args, pytestconfig)


@pytest.fixture(autouse=True, params=SHIPPED_HTTP_CLIENTS)
def each_http_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with this HTTP client; and keep the caller's OpenAI settings out of it."""
    monkeypatch.setenv("FLINK_LLM_HTTP_CLIENT", request.param)
    for name in ("OPENAI_API_KEY", "OPENAI_API_KEY_FILE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return str(request.param)

"""Proxies and netrc credentials from the environment, resolved once per session.

The engine no longer sets aiohttp's ``trust_env`` (it re-read the environment and ~/.netrc in a
worker thread on every request); ``env_request_options`` must give each request what
``trust_env`` gave it. A loopback aiohttp server stands in for an HTTP proxy: a proxied request
arrives in absolute form, with the proxy's credentials if netrc holds them.
"""

from __future__ import annotations

import asyncio
import base64
import math
import socket
import threading

import pytest
from aiohttp import web

from flink_llm_udf import InvalidOptionError, OpenAICompatProvider, run_batch
from flink_llm_udf._http import (
    HTTP_CLIENT_ENV,
    SHIPPED_HTTP_CLIENTS,
    env_request_options,
    open_session,
    preferred_client,
    reply_of,
)
from flink_llm_udf.simulator import SimulatorThread

PROXY_ENV = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "NETRC",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in (*PROXY_ENV, "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # never the developer's ~/.netrc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeProxy:
    """Answers every request with a chat completion and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        # A proxied request line is in absolute form: raw_path holds the whole target URL.
        self.seen.append(
            (
                request.raw_path,
                request.headers.get("Proxy-Authorization"),
                request.headers.get("Authorization"),
            )
        )
        return web.json_response({"choices": [{"index": 0, "message": {"content": "via proxy"}}]})


@pytest.fixture
def proxy():
    fake = FakeProxy()
    port = _free_port()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_no_environment_no_options():
    assert env_request_options("http://api.example.com/v1/chat/completions") == {}


def test_http_proxy_from_the_environment_is_used(monkeypatch, proxy):
    monkeypatch.setenv("http_proxy", proxy.url)
    provider = OpenAICompatProvider(endpoint="http://api.example.invalid/v1", model="m")
    results = run_batch(provider, ["a", "b"], max_concurrency=2)
    assert [r.value for r in results] == ["via proxy", "via proxy"]
    assert [path for path, _, _ in proxy.seen] == ["http://api.example.invalid/v1/chat/completions"] * 2


def test_no_proxy_bypasses_the_proxy(monkeypatch, proxy):
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with SimulatorThread() as sim:
        provider = OpenAICompatProvider(endpoint=sim.base_url, model="sim-model")
        assert run_batch(provider, ["a"])[0].ok
        assert sim.stats()["requests_total"] == 1
    assert proxy.seen == []


@pytest.mark.filterwarnings("ignore:The '(proxy_)?auth' parameter is deprecated:DeprecationWarning")
def test_netrc_credentials_for_the_proxy_and_the_host(monkeypatch, tmp_path, proxy):
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine 127.0.0.1 login puser password ppass\n"
        "machine api.example.invalid login huser password hpass\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("http_proxy", proxy.url)
    provider = OpenAICompatProvider(endpoint="http://api.example.invalid/v1", model="m")
    assert run_batch(provider, ["a"])[0].value == "via proxy"
    _, proxy_auth, auth = proxy.seen[0]
    assert proxy_auth == "Basic " + base64.b64encode(b"puser:ppass").decode()
    assert auth == "Basic " + base64.b64encode(b"huser:hpass").decode()


def test_options_are_resolved_from_the_environment(monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine proxy.local login puser password ppass\n"
        "machine api.example.invalid login huser password hpass\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("http_proxy", "http://proxy.local:3128")
    options = env_request_options("http://api.example.invalid/v1/chat/completions")
    assert str(options["proxy"]) == "http://proxy.local:3128"
    assert options["auth"].login == "huser"
    assert options["proxy_auth"].login == "puser"
    monkeypatch.setenv("no_proxy", "api.example.invalid")
    assert "proxy" not in env_request_options("http://api.example.invalid/v1/embeddings")


def test_a_netrc_entry_for_the_api_host_does_not_clash_with_an_api_key(monkeypatch, tmp_path):
    """aiohttp refuses netrc auth plus an Authorization header: with a key, netrc is not consulted."""
    from flink_llm_udf import OpenAICompatProvider, run_batch
    from flink_llm_udf.simulator import SimulatorThread

    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login huser password hpass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert "auth" not in env_request_options("http://127.0.0.1:1/v1", sends_authorization=True)
    with SimulatorThread(api_key="sk-test-netrc-0123456789abcdef") as sim:
        provider = OpenAICompatProvider(
            endpoint=sim.base_url, model="m", api_key="sk-test-netrc-0123456789abcdef"
        )
        assert [r.value for r in run_batch(provider, ["a"])] == ["ANSWER[a]"]


@pytest.mark.parametrize(
    ("raw", "is_json", "payload"),
    [
        (b'{"a": [1, 2.5, "\xc3\xa9"]}', True, {"a": [1, 2.5, "é"]}),
        (b'{"a": 1, "a": 2}', True, {"a": 2}),
        (b"[]", True, []),
        (b"", False, None),
        (b"<html>busy</html>", False, None),
        (b'{"a": 1', False, None),
        (b'"\xff"', False, None),  # not UTF-8
    ],
    ids=["object", "repeated-key", "array", "empty", "html", "truncated", "not-utf8"],
)
def test_reply_body_is_parsed_as_json_when_it_is_json(raw, is_json, payload):
    reply = reply_of(200, {}, raw)
    assert (reply.status, reply.raw, reply.is_json, reply.payload) == (200, raw, is_json, payload)


def test_nan_and_infinity_in_a_reply_are_read_as_json_reads_them():
    # orjson refuses these extensions; the fallback keeps what json accepted before.
    reply = reply_of(200, {}, b'{"score": NaN, "top": Infinity}')
    assert reply.is_json and math.isnan(reply.payload["score"]) and reply.payload["top"] == math.inf


@pytest.mark.parametrize(
    ("setting", "preferred", "expected"),
    [
        ("auto", None, "BuiltinSession"),
        ("auto", "builtin", "BuiltinSession"),
        ("auto", "aiohttp", "AiohttpSession"),
        ("auto", " AIOHTTP ", "AiohttpSession"),
        ("builtin", "aiohttp", "BuiltinSession"),
        ("aiohttp", "builtin", "AiohttpSession"),
    ],
)
def test_the_client_follows_the_setting_then_the_environment(monkeypatch, setting, preferred, expected):
    if preferred is None:
        monkeypatch.delenv(HTTP_CLIENT_ENV, raising=False)
    else:
        monkeypatch.setenv(HTTP_CLIENT_ENV, preferred)

    async def opened() -> str:
        session = open_session("http://127.0.0.1:9/v1/chat/completions", (), 4, client=setting)
        try:
            return type(session).__name__
        finally:
            await session.aclose()

    assert asyncio.run(opened()) == expected


def test_an_unknown_preferred_client_names_the_variable(monkeypatch):
    monkeypatch.setenv(HTTP_CLIENT_ENV, "curl")
    with pytest.raises(InvalidOptionError, match=r"FLINK_LLM_HTTP_CLIENT='curl'.*builtin, aiohttp"):
        preferred_client()


@pytest.mark.parametrize("client", SHIPPED_HTTP_CLIENTS)
def test_url_credentials_are_refused_without_being_echoed(client):
    """``_wire.resolve_call`` turns them into a header first; a URL that still has them is refused."""

    async def opened() -> None:
        open_session("https://alice:pa55w0rd-secret@api.example.invalid/v1", (), 4, client=client)

    with pytest.raises(InvalidOptionError, match="credentials") as caught:
        asyncio.run(opened())
    assert "pa55w0rd" not in str(caught.value) and "alice" not in str(caught.value)


@pytest.mark.parametrize("client", SHIPPED_HTTP_CLIENTS)
@pytest.mark.parametrize("name", ["X Bad", "X-Bad:", "", "X-Bäd", "X-Bad\r\nX-Injected"])
def test_a_header_name_that_is_not_a_token_is_refused_at_open(client, name):
    async def opened() -> None:
        open_session("http://127.0.0.1:9/v1", ((name, "sk-secret-value-0123456789"),), 4, client=client)

    with pytest.raises(InvalidOptionError, match="header") as caught:
        asyncio.run(opened())
    assert "sk-secret-value" not in str(caught.value)


@pytest.mark.parametrize("client", SHIPPED_HTTP_CLIENTS)
@pytest.mark.parametrize("url", ["ftp://host/x", "http:///nohost", "not a url", "http://host:70000/v1"])
def test_an_unusable_url_is_refused_at_open(client, url):
    async def opened() -> None:
        open_session(url, (), 4, client=client)

    with pytest.raises(InvalidOptionError, match="URL"):
        asyncio.run(opened())

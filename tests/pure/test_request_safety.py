"""Values that cannot go into a request fail at construction or open, naming the option.

CR/LF in a key or header, an invalid port, a key with whitespace from the environment, URL
credentials beside a key: each is refused before the first request, and the refusal never
shows the secret itself.
"""

from __future__ import annotations

import pytest

from flink_llm_udf import ConfigurationError, InvalidOptionError, OpenAICompatProvider
from flink_llm_udf._wire import resolve_call

KEY = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize(
    "api_key",
    [f"{KEY}\n", f"{KEY}\r\nX-Injected: 1", f" {KEY}", f"{KEY}\t", "sk-\x00nul-0123456789"],
    ids=["trailing-newline", "crlf-injection", "leading-space", "trailing-tab", "nul"],
)
def test_a_key_that_cannot_be_a_header_is_refused_at_construction(api_key):
    with pytest.raises(
        InvalidOptionError, match="api_key=<redacted> is not allowed: must have no line"
    ) as info:
        OpenAICompatProvider(endpoint="http://127.0.0.1:1/v1", api_key=api_key)
    assert KEY[8:20] not in str(info.value)


@pytest.mark.parametrize(
    ("extra_header", "message"),
    [
        ('{"X-A": "ok\\r\\nX-B: injected"}', "header 'X-A' has a line break or control character"),
        ('{"X-A": ["fine", "bad\\n"]}', "header 'X-A' has a line break or control character"),
        ('{"Bad Name": "v"}', "header name 'Bad Name' is not a valid HTTP header name"),
        ('{"X\\r\\nY": "v"}', "is not a valid HTTP header name"),
    ],
)
def test_a_header_that_cannot_be_sent_is_refused_at_construction_naming_it(extra_header, message):
    with pytest.raises(InvalidOptionError, match="extra_header") as info:
        OpenAICompatProvider(endpoint="http://127.0.0.1:1/v1", extra_header=extra_header)
    assert message in str(info.value)
    assert "injected" not in str(info.value)  # header values are not echoed


def test_header_values_are_masked_in_errors_and_repr():
    secret_header = '{"api-key": "azure-secret-0123456789", "X-Trace": "on"}'
    provider = OpenAICompatProvider(endpoint="http://127.0.0.1:1/v1", extra_header=secret_header)
    assert "azure-secret" not in repr(provider)
    assert '"api-key": "***"' in repr(provider)
    with pytest.raises(InvalidOptionError) as info:
        OpenAICompatProvider(endpoint="http://127.0.0.1:1/v1", extra_header='{"api-key": "azure-secret\\n"}')
    assert "azure-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://127.0.0.1:70000/v1", "invalid port"),
        ("http://127.0.0.1:0/v1", "invalid port"),
        ("http://127.0.0.1:http/v1", "invalid port"),
        ("http://127.0.0.1:8000/v1\r\nHost: evil", "control characters"),
        ("ftp://h/v1", "http(s) URL"),
        ("http:///v1", "http(s) URL"),
    ],
)
def test_an_endpoint_that_cannot_be_reached_is_refused_at_construction(endpoint, reason):
    with pytest.raises(InvalidOptionError, match="endpoint") as info:
        OpenAICompatProvider(endpoint=endpoint)
    assert reason in str(info.value)


def test_an_endpoint_password_is_masked_in_errors_and_repr():
    provider = OpenAICompatProvider(endpoint="https://user:hunter2-secret@api.example/v1")
    assert "hunter2" not in repr(provider) and "user:***@api.example" in repr(provider)
    assert provider.to_options()["endpoint"] == "https://user:hunter2-secret@api.example/v1"  # round trip
    with pytest.raises(InvalidOptionError) as info:
        OpenAICompatProvider(endpoint="https://user:hunter2-secret@api.example:99999/v1")
    assert "hunter2" not in str(info.value) and "user:***@" in str(info.value)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OPENAI_API_KEY": f"{KEY}\n"}, "OPENAI_API_KEY must have no line breaks"),
        ({"OPENAI_API_KEY": f" {KEY}"}, "OPENAI_API_KEY must have no line breaks"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:70000/v1"}, "OPENAI_BASE_URL='http://127.0.0.1:70000/v1' has"),
        ({"OPENAI_BASE_URL": "http://u:pw-secret-1@127.0.0.1:99999/v1"}, "'http://u:***@127.0.0.1:99999/v1'"),
    ],
)
def test_the_environment_is_checked_at_open_naming_the_variable(environ, message):
    provider = OpenAICompatProvider(
        endpoint=None if "OPENAI_BASE_URL" in environ else "http://127.0.0.1:1/v1"
    )
    with pytest.raises(ConfigurationError) as info:
        resolve_call(provider, environ)
    assert message in str(info.value)
    assert KEY not in str(info.value) and "pw-secret" not in str(info.value)


def test_a_key_file_with_a_trailing_newline_is_fine(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    spec = resolve_call(
        OpenAICompatProvider(endpoint="http://127.0.0.1:1/v1"), {"OPENAI_API_KEY_FILE": str(key_file)}
    )
    assert ("Authorization", f"Bearer {KEY}") in spec.headers


def test_url_credentials_become_basic_auth_and_leave_the_url():
    spec = resolve_call(OpenAICompatProvider(endpoint="http://svc:p%40ss-word-1@127.0.0.1:8000/v1"), {})
    assert spec.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert ("Authorization", "Basic c3ZjOnBAc3Mtd29yZC0x") in spec.headers  # svc:p@ss-word-1
    assert "p@ss-word-1" in spec.redactor.secrets and "c3ZjOnBAc3Mtd29yZC0x" in spec.redactor.secrets


def test_url_credentials_and_a_key_together_are_refused_at_open():
    provider = OpenAICompatProvider(endpoint="http://svc:pw-0123456789@127.0.0.1:8000/v1", api_key=KEY)
    with pytest.raises(ConfigurationError, match="give one of them") as info:
        resolve_call(provider, {})
    assert "pw-0123456789" not in str(info.value) and KEY not in str(info.value)


def test_credential_headers_are_redacted_from_what_servers_echo():
    provider = OpenAICompatProvider(
        endpoint="http://127.0.0.1:1/v1",
        extra_header='{"api-key": "azure-0123456789", "X-Trace": "on-off-on-off"}',
    )
    spec = resolve_call(provider, {})
    assert spec.redactor.text("echo azure-0123456789 and on-off-on-off") == "echo *** and on-off-on-off"

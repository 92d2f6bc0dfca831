"""The OpenAI wire format: resolving a provider into a call, request bodies, response parsing."""

from __future__ import annotations

import pytest

from flink_llm_udf import ConfigurationError, MalformedResponseError, OpenAICompatProvider
from flink_llm_udf._wire import (
    Usage,
    build_chat_body,
    build_embeddings_body,
    error_message,
    parse_chat_choices,
    parse_embeddings,
    parse_usage,
    resolve_call,
)

KEY = "sk-proj-0123456789SECRETabcdefghijklmnopqrstuvwxyzWXYZ"


def spec_of(environ=None, **kwargs):
    return resolve_call(OpenAICompatProvider(**kwargs), {} if environ is None else environ)


def header_values(spec, name):
    return [v for k, v in spec.headers if k.lower() == name.lower()]


# --- endpoint and task --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint,task,url,resolved_task",
    [
        ("https://api.openai.com/v1", None, "https://api.openai.com/v1/chat/completions", "chat/completions"),
        (
            "https://api.openai.com/v1/",
            None,
            "https://api.openai.com/v1/chat/completions",
            "chat/completions",
        ),
        ("https://api.openai.com/v1", "embeddings", "https://api.openai.com/v1/embeddings", "embeddings"),
        (
            "https://api.openai.com/v1",
            "CHAT/COMPLETIONS",
            "https://api.openai.com/v1/chat/completions",
            "chat/completions",
        ),
        (
            "http://127.0.0.1:8000/v1/chat/completions",
            None,
            "http://127.0.0.1:8000/v1/chat/completions",
            "chat/completions",
        ),
        ("http://127.0.0.1:8000/v1/embeddings", None, "http://127.0.0.1:8000/v1/embeddings", "embeddings"),
        (
            "http://127.0.0.1:8000/v1/embeddings",
            "embeddings",
            "http://127.0.0.1:8000/v1/embeddings",
            "embeddings",
        ),
        (
            "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions",
            None,
            "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions",
            "chat/completions",
        ),
        (
            "https://h/openai/deployments/d/chat/completions?api-version=2024-02-01",
            None,
            "https://h/openai/deployments/d/chat/completions?api-version=2024-02-01",
            "chat/completions",
        ),
    ],
)
def test_endpoint_and_task_resolve_to_url(endpoint, task, url, resolved_task):
    spec = spec_of(endpoint=endpoint, task=task)
    assert spec.url == url
    assert spec.task == resolved_task


@pytest.mark.parametrize(
    "env_url,task,url",
    [
        ("http://envhost:9/v1", None, "http://envhost:9/v1/chat/completions"),
        ("http://envhost:9/v1", "embeddings", "http://envhost:9/v1/embeddings"),
        ("http://envhost:9/v1/embeddings", None, "http://envhost:9/v1/embeddings"),
    ],
)
def test_endpoint_falls_back_to_openai_base_url(env_url, task, url):
    spec = spec_of({"OPENAI_BASE_URL": env_url}, task=task)
    assert spec.url == url


def test_provider_endpoint_wins_over_environment():
    spec = spec_of({"OPENAI_BASE_URL": "http://env/v1"}, endpoint="http://mine/v1")
    assert spec.url == "http://mine/v1/chat/completions"


def test_task_contradicting_endpoint_from_environment_is_value_error():
    with pytest.raises(ValueError, match="task"):
        spec_of({"OPENAI_BASE_URL": "http://env/v1/embeddings"}, task="chat/completions")


@pytest.mark.parametrize("environ", [{}, {"OPENAI_BASE_URL": ""}, {"OPENAI_API_KEY": KEY}])
def test_no_endpoint_anywhere_is_configuration_error(environ):
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL") as info:
        spec_of(environ)
    assert KEY not in str(info.value)


def test_resolve_call_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-os-environ/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    spec = resolve_call(OpenAICompatProvider())
    assert spec.url == "http://from-os-environ/v1/chat/completions"
    assert spec.api_key == KEY


# --- API key ------------------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "openai.key"
    path.write_text("sk-from-file-0123456789abcdefXYZ\n")
    return str(path)


def test_provider_key_wins(key_file):
    spec = spec_of(
        {"OPENAI_API_KEY": "sk-env", "OPENAI_API_KEY_FILE": key_file}, endpoint="http://h/v1", api_key=KEY
    )
    assert header_values(spec, "Authorization") == [f"Bearer {KEY}"]


def test_env_key_wins_over_file(key_file):
    spec = spec_of({"OPENAI_API_KEY": "sk-env", "OPENAI_API_KEY_FILE": key_file}, endpoint="http://h/v1")
    assert header_values(spec, "Authorization") == ["Bearer sk-env"]


@pytest.mark.parametrize("env_key", [None, ""])
def test_key_file_is_read_and_stripped(key_file, env_key):
    environ = {"OPENAI_API_KEY_FILE": key_file}
    if env_key is not None:
        environ["OPENAI_API_KEY"] = env_key
    spec = spec_of(environ, endpoint="http://h/v1")
    assert spec.api_key == "sk-from-file-0123456789abcdefXYZ"
    assert header_values(spec, "Authorization") == ["Bearer sk-from-file-0123456789abcdefXYZ"]


def test_api_key_file_option_wins_over_environment(key_file):
    provider = OpenAICompatProvider(endpoint="http://h/v1", **{"api-key-file": key_file})
    spec = resolve_call(provider, {"OPENAI_API_KEY": "sk-env"})
    assert header_values(spec, "Authorization") == ["Bearer sk-from-file-0123456789abcdefXYZ"]
    assert "sk-from-file" not in repr(provider) and "sk-from-file" not in repr(spec)


def test_api_key_file_option_comes_from_sql_job_parameters(key_file):
    from flink_llm_udf.job_parameters import provider_from_lookup

    provider = provider_from_lookup({"ai.endpoint": "http://h/v1", "ai.api-key-file": key_file}.get)
    assert resolve_call(provider, {}).api_key == "sk-from-file-0123456789abcdefXYZ"


def test_unreadable_api_key_file_option_names_the_option(tmp_path):
    provider = OpenAICompatProvider(endpoint="http://h/v1", **{"api-key-file": str(tmp_path / "none")})
    with pytest.raises(ConfigurationError, match="api-key-file"):
        resolve_call(provider, {})


def test_key_file_is_read_at_open_not_at_construction(tmp_path):
    path = tmp_path / "later.key"
    provider = OpenAICompatProvider(endpoint="http://h/v1")
    path.write_text("sk-written-after-construction")
    spec = resolve_call(provider, {"OPENAI_API_KEY_FILE": str(path)})
    assert spec.api_key == "sk-written-after-construction"


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_unreadable_or_empty_key_file_is_configuration_error(tmp_path, content):
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY_FILE"):
        spec_of({"OPENAI_API_KEY_FILE": str(path)}, endpoint="http://h/v1")


def test_key_file_that_is_a_directory_is_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY_FILE"):
        spec_of({"OPENAI_API_KEY_FILE": str(tmp_path)}, endpoint="http://h/v1")


@pytest.mark.parametrize("environ", [{}, {"OPENAI_API_KEY": ""}, {"OPENAI_API_KEY_FILE": ""}])
def test_no_key_means_no_authorization_header(environ):
    spec = spec_of(environ, endpoint="http://localhost:11434/v1")
    assert header_values(spec, "Authorization") == []
    assert spec.api_key is None
    assert header_values(spec, "Content-Type") == ["application/json"]


@pytest.mark.parametrize(
    "environ,kwargs",
    [
        ({}, {"api_key": KEY}),
        ({"OPENAI_API_KEY": KEY}, {}),
    ],
)
def test_call_spec_repr_hides_the_key(environ, kwargs):
    spec = spec_of(environ, endpoint="http://h/v1", **kwargs)
    assert spec.masked_key == "sk-…WXYZ"
    assert ("Authorization", f"Bearer {KEY}") in spec.headers  # the wire needs it ...
    assert KEY not in repr(spec) and KEY not in str(spec)  # ... a log line must not show it


# --- headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra_header,expected",
    [
        ('{"X-A": "1"}', [("X-A", "1")]),
        ('{"X-A": ["1", "2", "3"]}', [("X-A", "1"), ("X-A", "2"), ("X-A", "3")]),
        (
            '{"X-Num": 5, "X-Float": 1.5, "X-Bool": true, "X-False": false}',
            [("X-Num", "5"), ("X-Float", "1.5"), ("X-Bool", "true"), ("X-False", "false")],
        ),
        ('{"X-Mixed": [1, true, "s"]}', [("X-Mixed", "1"), ("X-Mixed", "true"), ("X-Mixed", "s")]),
        ('{"X-Empty": []}', []),
        ("{}", []),
    ],
)
def test_extra_header_entries_become_headers(extra_header, expected):
    spec = spec_of(endpoint="http://h/v1", extra_header=extra_header)
    extra = [(k, v) for k, v in spec.headers if k not in ("Content-Type", "Authorization")]
    assert extra == expected


# --- chat body ----------------------------------------------------------------------------------

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


@pytest.mark.parametrize(
    "kwargs,messages",
    [
        ({}, [SYSTEM, {"role": "user", "content": "hi"}]),
        ({"system_prompt": ""}, [{"role": "user", "content": "hi"}]),
        (
            {"system_prompt": "Be terse."},
            [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        ),
        (
            {"user_prompt": "Translate."},
            [SYSTEM, {"role": "user", "content": "hi"}, {"role": "user", "content": "Translate."}],
        ),
        ({"user_prompt": ""}, [SYSTEM, {"role": "user", "content": "hi"}]),
        (
            {"system_prompt": "", "user_prompt": "Q"},
            [{"role": "user", "content": "hi"}, {"role": "user", "content": "Q"}],
        ),
        (
            {"content_type": "IMAGE_URL"},
            [SYSTEM, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "hi"}}]}],
        ),
        (
            {"content_type": "image_url", "user_prompt": "Describe."},
            [
                SYSTEM,
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "hi"}}]},
                {"role": "user", "content": "Describe."},
            ],
        ),
    ],
)
def test_chat_messages(kwargs, messages):
    body = build_chat_body(spec_of(endpoint="http://h/v1", **kwargs), "hi")
    assert body["messages"] == messages


@pytest.mark.parametrize(
    "kwargs,fields",
    [
        ({}, {}),
        ({"model": "m"}, {"model": "m"}),
        ({"temperature": 0.7}, {"temperature": 0.7}),
        ({"top_p": 0.5}, {"top_p": 0.5}),
        ({"max_tokens": 10}, {"max_tokens": 10}),
        ({"presence_penalty": -1}, {"presence_penalty": -1.0}),
        ({"n": 3}, {"n": 3}),
        ({"seed": 42}, {"seed": 42}),
        ({"response_format": "JSON_OBJECT"}, {"response_format": {"type": "json_object"}}),
        ({"response_format": "text"}, {"response_format": {"type": "text"}}),
        ({"stop": "a,b"}, {"stop": ["a", "b"]}),
        ({"stop": 'a,"b,c", d'}, {"stop": ["a", "b,c", " d"]}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": '"\n"'}, {"stop": ["\n"]}),
        ({"stop": " a , b "}, {"stop": [" a ", " b "]}),
        ({"dimension": 8}, {}),
        ({"extra_body": '{"top_k": 5, "enable_thinking": false}'}, {"top_k": 5, "enable_thinking": False}),
        ({"extra_body": '{"temperature": 0.1}', "temperature": 0.9}, {"temperature": 0.1}),
    ],
)
def test_chat_body_fields(kwargs, fields):
    body = build_chat_body(spec_of(endpoint="http://h/v1", **kwargs), "hi")
    assert {k: v for k, v in body.items() if k != "messages"} == fields


def test_chat_body_per_call_model_override():
    spec = spec_of(endpoint="http://h/v1", model="default-model")
    assert build_chat_body(spec, "x")["model"] == "default-model"
    assert build_chat_body(spec, "x", model="row-model")["model"] == "row-model"
    assert build_chat_body(spec, "x")["model"] == "default-model"  # the spec is not mutated
    assert build_chat_body(spec_of(endpoint="http://h/v1"), "x", model="only")["model"] == "only"


def test_chat_body_is_fresh_per_row():
    spec = spec_of(endpoint="http://h/v1", extra_body='{"a": 1}')
    first = build_chat_body(spec, "one")
    first["a"] = 2
    assert build_chat_body(spec, "two") == {"a": 1, "messages": [SYSTEM, {"role": "user", "content": "two"}]}


# --- embeddings body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,texts,body",
    [
        ({}, "hello", {"input": "hello", "encoding_format": "float"}),
        ({"model": "e"}, "hello", {"model": "e", "input": "hello", "encoding_format": "float"}),
        ({"dimension": 256}, "x", {"input": "x", "encoding_format": "float", "dimensions": 256}),
        ({"model": "e"}, ["a", "b"], {"model": "e", "input": ["a", "b"], "encoding_format": "float"}),
        (
            {"temperature": 0.5, "max_tokens": 3, "stop": "x", "n": 2},
            "x",
            {"input": "x", "encoding_format": "float"},
        ),
        ({"extra_body": '{"user": "u1"}'}, "x", {"input": "x", "encoding_format": "float", "user": "u1"}),
    ],
)
def test_embeddings_body(kwargs, texts, body):
    spec = spec_of(endpoint="http://h/v1/embeddings", **kwargs)
    assert build_embeddings_body(spec, texts) == body


def test_embeddings_body_model_override():
    spec = spec_of(endpoint="http://h/v1", task="embeddings", model="e1")
    assert build_embeddings_body(spec, "x", model="e2")["model"] == "e2"


# --- response parsing -----------------------------------------------------------------------------


def choice(index, content):
    return {"index": index, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}


@pytest.mark.parametrize(
    "payload,expected",
    [
        ({"choices": [choice(0, "a")]}, ("a",)),
        ({"choices": [choice(0, "a"), choice(1, "b"), choice(2, "c")]}, ("a", "b", "c")),
        ({"choices": [choice(2, "c"), choice(0, "a"), choice(1, "b")]}, ("a", "b", "c")),
        ({"choices": [{"message": {"content": "no index"}}]}, ("no index",)),
        ({"choices": [choice(0, None)]}, ("",)),
        ({"choices": [choice(0, "")]}, ("",)),
    ],
)
def test_parse_chat_choices(payload, expected):
    assert parse_chat_choices(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {},
        {"choices": []},
        {"choices": "x"},
        {"choices": [None]},
        {"choices": [{"index": 0}]},
        {"choices": [{"index": 0, "message": "x"}]},
        {"choices": [{"index": 0, "message": {}}]},
        {"choices": [{"index": 0, "message": {"content": 5}}]},
        {"choices": [{"index": "0", "message": {"content": "a"}}, {"index": 1, "message": {"content": "b"}}]},
        {
            "choices": [
                {"index": None, "message": {"content": "a"}},
                {"index": 1, "message": {"content": "b"}},
            ]
        },
        {"choices": [choice(0, "a"), "junk"]},
        {"error": {"message": "x"}},
    ],
)
def test_parse_chat_choices_malformed(payload):
    with pytest.raises(MalformedResponseError) as info:
        parse_chat_choices(payload)
    assert info.value.retryable


def item(index, vector):
    return {"object": "embedding", "index": index, "embedding": vector}


@pytest.mark.parametrize(
    "payload,expected_count,vectors",
    [
        ({"data": [item(0, [0.1, 0.2])]}, 1, [[0.1, 0.2]]),
        ({"data": [item(0, [1, 2])]}, 1, [[1.0, 2.0]]),
        ({"data": [item(1, [1.0]), item(0, [0.0]), item(2, [2.0])]}, 3, [[0.0], [1.0], [2.0]]),
        ({"data": [{"embedding": [5.0]}, {"embedding": [6.0]}]}, 2, [[5.0], [6.0]]),
        ({"data": [item(0, [])]}, 1, [[]]),
    ],
)
def test_parse_embeddings_orders_by_index(payload, expected_count, vectors):
    result = parse_embeddings(payload, expected_count)
    assert result == vectors
    assert all(isinstance(x, float) for v in result for x in v)


@pytest.mark.parametrize(
    "payload,expected_count",
    [
        (None, 1),
        ([], 1),
        ({}, 1),
        ({"data": None}, 1),
        ({"data": []}, 1),
        ({"data": [item(0, [1.0])]}, 2),
        ({"data": [item(0, [1.0]), item(1, [1.0])]}, 1),
        ({"data": [item(0, [1.0]), item(0, [2.0])]}, 2),
        ({"data": [item(1, [1.0])]}, 1),
        ({"data": [item(-1, [1.0])]}, 1),
        ({"data": [item("0", [1.0])]}, 1),
        ({"data": [item(0, None)]}, 1),
        ({"data": [item(0, "1,2")]}, 1),
        ({"data": [item(0, ["x"])]}, 1),
        ({"data": [item(0, [None])]}, 1),
        ({"data": [item(0, [{"a": 1}])]}, 1),
        ({"data": ["junk"]}, 1),
    ],
)
def test_parse_embeddings_malformed(payload, expected_count):
    with pytest.raises(MalformedResponseError) as info:
        parse_embeddings(payload, expected_count)
    assert info.value.retryable


@pytest.mark.parametrize(
    "payload,usage",
    [
        ({}, None),
        ({"usage": None}, None),
        ({"usage": "x"}, None),
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}, Usage(3, 4, 7)),
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}, Usage(3, 4, 7)),
        ({"usage": {"prompt_tokens": 5, "total_tokens": 5}}, Usage(5, 0, 5)),
        ({"usage": {"prompt_tokens": "3", "completion_tokens": True}}, Usage(0, 0, 0)),
        ({"usage": {}}, Usage(0, 0, 0)),
    ],
)
def test_parse_usage(payload, usage):
    assert parse_usage(payload) == usage


@pytest.mark.parametrize(
    "payload,raw,message",
    [
        (
            {"error": {"message": "Invalid model", "code": "model_not_found"}},
            b"",
            "Invalid model (code model_not_found)",
        ),
        ({"error": {"message": "Rate limited"}}, b"", "Rate limited"),
        ({"error": "plain"}, b"", "plain"),
        (None, b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (None, b"", "empty body"),
        (None, b"x" * 1000, "x" * 300),
        (None, b"\xff\xfe bad utf8", "\ufffd\ufffd bad utf8"),
    ],
)
def test_error_message(payload, raw, message):
    assert error_message(payload, raw) == message

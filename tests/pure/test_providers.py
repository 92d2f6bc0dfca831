"""OpenAICompatProvider against the contract in the spec's option table."""

from __future__ import annotations

import copy
import inspect
import math
import pickle

import pytest

from flink_llm_udf import InvalidOptionError, InvalidOptionTypeError, OpenAICompatProvider, Provider
from flink_llm_udf._provider import DEFAULT_SYSTEM_PROMPT, mask_secret

KEY = "sk-proj-0123456789SECRETabcdefghijklmnopqrstuvwxyzWXYZ"

# keyword, option key, default — the spec's table, in the constructor's order
SPEC_TABLE = [
    ("endpoint", "endpoint", None),
    ("api_key", "api-key", None),
    ("task", "task", None),
    ("model", "model", None),
    ("system_prompt", "system-prompt", "You are a helpful assistant."),
    ("user_prompt", "user-prompt", None),
    ("temperature", "temperature", None),
    ("top_p", "top-p", None),
    ("max_tokens", "max-tokens", None),
    ("stop", "stop", None),
    ("presence_penalty", "presence-penalty", None),
    ("n", "n", None),
    ("seed", "seed", None),
    ("content_type", "content-type", "TEXT"),
    ("response_format", "response-format", None),
    ("dimension", "dimension", None),
    ("max_context_size", "max-context-size", None),
    ("context_overflow_action", "context-overflow-action", "truncated-tail"),
    ("error_handling_strategy", "error-handling-strategy", "RETRY"),
    ("retry_num", "retry-num", 100),
    ("retry_backoff_strategy", "retry-backoff-strategy", "FIXED"),
    ("retry_backoff_base_interval", "retry-backoff-base-interval", "1s"),
    ("retry_fallback_strategy", "retry-fallback-strategy", "FAILOVER"),
    ("extra_header", "extra-header", None),
    ("extra_body", "extra-body", None),
]
KEY_OF = {keyword: key for keyword, key, _ in SPEC_TABLE}

ENUMS = {
    "task": ["chat/completions", "embeddings"],
    "content_type": ["TEXT", "IMAGE_URL"],
    "response_format": ["text", "json_object"],
    "context_overflow_action": [
        "truncated-tail",
        "truncated-tail-log",
        "truncated-head",
        "truncated-head-log",
        "skipped",
        "skipped-log",
    ],
    "error_handling_strategy": ["RETRY", "FAILOVER", "IGNORE"],
    "retry_backoff_strategy": ["FIXED", "EXPONENTIAL"],
    "retry_fallback_strategy": ["FAILOVER", "IGNORE"],
}
ENUM_CASES = [(kw, v) for kw, values in ENUMS.items() for v in values]


# --- signature --------------------------------------------------------------------------------


def test_signature_matches_spec_table():
    params = list(inspect.signature(OpenAICompatProvider).parameters.values())
    named = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert [(p.name, p.default) for p in named] == [(kw, default) for kw, _, default in SPEC_TABLE]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in named)
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert params[-1].name == "extra_options"


#: The constructor's signature on the seed's reference page, verbatim (names, order, types, defaults).
SEED_SIGNATURE = (
    "(*, endpoint: str | None = None, api_key: str | None = None, task: str | None = None, "
    "model: str | None = None, system_prompt: str = 'You are a helpful assistant.', "
    "user_prompt: str | None = None, temperature: float | None = None, top_p: float | None = None, "
    "max_tokens: int | None = None, stop: str | None = None, presence_penalty: float | None = None, "
    "n: int | None = None, seed: int | None = None, content_type: str = 'TEXT', "
    "response_format: str | None = None, dimension: int | None = None, max_context_size: int | None = None, "
    "context_overflow_action: str = 'truncated-tail', error_handling_strategy: str = 'RETRY', "
    "retry_num: int = 100, retry_backoff_strategy: str = 'FIXED', retry_backoff_base_interval: str = '1s', "
    "retry_fallback_strategy: str = 'FAILOVER', extra_header: str | None = None, "
    "extra_body: str | None = None, **extra_options: Any)"
)


def test_init_signature_is_the_seeds_exactly():
    signature = inspect.signature(OpenAICompatProvider.__init__, eval_str=True)
    without_self = signature.replace(
        parameters=[p for name, p in signature.parameters.items() if name != "self"],
        return_annotation=inspect.Signature.empty,
    )
    assert str(without_self).replace("typing.Any", "Any") == SEED_SIGNATURE


def test_positional_arguments_are_rejected():
    with pytest.raises(TypeError):
        OpenAICompatProvider("http://localhost/v1")  # type: ignore[misc]


@pytest.mark.parametrize("keyword,key,default", SPEC_TABLE)
def test_default_attribute_and_option(keyword, key, default):
    provider = OpenAICompatProvider()
    assert getattr(provider, keyword) == default
    if default is None:
        assert key not in provider.to_options()
    else:
        assert provider.to_options()[key] == str(default)


def test_default_options_exactly():
    assert OpenAICompatProvider().to_options() == {
        "system-prompt": DEFAULT_SYSTEM_PROMPT,
        "content-type": "TEXT",
        "context-overflow-action": "truncated-tail",
        "error-handling-strategy": "RETRY",
        "retry-num": "100",
        "retry-backoff-strategy": "FIXED",
        "retry-backoff-base-interval": "1s",
        "retry-fallback-strategy": "FAILOVER",
    }


def test_provider_name_and_model_key():
    provider = OpenAICompatProvider()
    assert isinstance(provider, Provider)
    assert provider.provider_name() == "openai-compat"
    assert provider.model_option_key() == "model"


# --- valid values and their renderings ------------------------------------------------------------


@pytest.mark.parametrize(
    "keyword,value,rendered",
    [
        ("endpoint", "https://api.openai.com/v1", "https://api.openai.com/v1"),
        (
            "endpoint",
            "http://127.0.0.1:8000/v1/chat/completions",
            "http://127.0.0.1:8000/v1/chat/completions",
        ),
        ("endpoint", "http://localhost:11434/v1/embeddings", "http://localhost:11434/v1/embeddings"),
        ("api_key", KEY, KEY),
        ("api_key", "x", "x"),
        ("model", "gpt-4o-mini", "gpt-4o-mini"),
        ("model", "", ""),
        ("system_prompt", "", ""),
        ("system_prompt", "Be terse.", "Be terse."),
        ("user_prompt", "Translate to French.", "Translate to French."),
        ("user_prompt", "", ""),
        ("temperature", 0.7, "0.7"),
        ("temperature", 0.0, "0.0"),
        ("temperature", 1, "1.0"),
        ("temperature", -3.5, "-3.5"),
        ("temperature", 0.1 + 0.2, repr(0.1 + 0.2)),
        ("top_p", 0, "0.0"),
        ("top_p", 0.95, "0.95"),
        ("top_p", 1.0, "1.0"),
        ("max_tokens", 1, "1"),
        ("max_tokens", 4096, "4096"),
        ("stop", "a,b", "a,b"),
        ("stop", 'a,"b,c", d', 'a,"b,c", d'),
        ("presence_penalty", -2, "-2.0"),
        ("presence_penalty", 2.0, "2.0"),
        ("presence_penalty", 0.5, "0.5"),
        ("n", 1, "1"),
        ("n", 3, "3"),
        ("seed", 0, "0"),
        ("seed", -7, "-7"),
        ("seed", 2**63, str(2**63)),
        ("response_format", "json_object", "json_object"),
        ("dimension", 1, "1"),
        ("dimension", 1536, "1536"),
        ("max_context_size", 1, "1"),
        ("max_context_size", 8192, "8192"),
        ("retry_num", 0, "0"),
        ("retry_num", 3, "3"),
        ("retry_backoff_base_interval", "500 ms", "500 ms"),
        ("retry_backoff_base_interval", "2 min", "2 min"),
        ("retry_backoff_base_interval", "1h", "1h"),
        ("retry_backoff_base_interval", "250", "250"),
        ("extra_header", '{"X-A": "1"}', '{"X-A": "1"}'),
        ("extra_header", '{"X-A": ["1", 2, true, 1.5]}', '{"X-A": ["1", 2, true, 1.5]}'),
        ("extra_header", "{}", "{}"),
        ("extra_body", '{"top_k": 5, "nested": {"a": [1]}}', '{"top_k": 5, "nested": {"a": [1]}}'),
    ],
)
def test_valid_value_is_rendered(keyword, value, rendered):
    provider = OpenAICompatProvider(**{keyword: value})
    assert provider.to_options()[KEY_OF[keyword]] == rendered
    assert all(isinstance(v, str) for v in provider.to_options().values())


@pytest.mark.parametrize("keyword,canonical", ENUM_CASES)
@pytest.mark.parametrize("spelling", [str, str.lower, str.upper, str.title])
def test_enums_are_case_insensitive_and_rendered_canonical(keyword, canonical, spelling):
    provider = OpenAICompatProvider(**{keyword: spelling(canonical)})
    assert getattr(provider, keyword) == canonical
    assert provider.to_options()[KEY_OF[keyword]] == canonical


# --- invalid types ------------------------------------------------------------------------------

BAD_TYPES = [
    ("endpoint", 1),
    ("endpoint", b"http://h/v1"),
    ("api_key", 12345),
    ("task", 1),
    ("model", 4),
    ("system_prompt", None),
    ("system_prompt", 1),
    ("user_prompt", ["x"]),
    ("temperature", True),
    ("temperature", False),
    ("temperature", "0.7"),
    ("temperature", [0.7]),
    ("top_p", True),
    ("top_p", "1"),
    ("max_tokens", True),
    ("max_tokens", 1.0),
    ("max_tokens", "10"),
    ("stop", ["a", "b"]),
    ("stop", 1),
    ("presence_penalty", True),
    ("presence_penalty", "0"),
    ("n", True),
    ("n", 2.0),
    ("seed", False),
    ("seed", 1.5),
    ("seed", "1"),
    ("content_type", 1),
    ("content_type", None),
    ("response_format", 1),
    ("dimension", True),
    ("dimension", 3.0),
    ("max_context_size", True),
    ("max_context_size", "100"),
    ("context_overflow_action", None),
    ("context_overflow_action", 1),
    ("error_handling_strategy", None),
    ("error_handling_strategy", 1),
    ("retry_num", True),
    ("retry_num", 1.0),
    ("retry_num", None),
    ("retry_num", "3"),
    ("retry_backoff_strategy", None),
    ("retry_backoff_strategy", 2),
    ("retry_backoff_base_interval", 1),
    ("retry_backoff_base_interval", 1.0),
    ("retry_backoff_base_interval", None),
    ("retry_fallback_strategy", None),
    ("retry_fallback_strategy", True),
    ("extra_header", {"X-A": "1"}),
    ("extra_body", {"a": 1}),
]


@pytest.mark.parametrize("keyword,value", BAD_TYPES)
def test_wrong_type_is_type_error_naming_keyword(keyword, value):
    with pytest.raises(TypeError, match=keyword) as info:
        OpenAICompatProvider(**{keyword: value})
    assert isinstance(info.value, InvalidOptionTypeError)


@pytest.mark.parametrize(
    "keyword,value",
    [(kw, 42) for kw in sorted(ENUMS)]
    + [
        ("content_type", None),
        ("context_overflow_action", None),
        ("error_handling_strategy", None),
        ("retry_backoff_strategy", None),
        ("retry_fallback_strategy", None),
    ],
)
def test_enum_type_error_names_allowed_values(keyword, value):
    with pytest.raises(TypeError, match=keyword) as info:
        OpenAICompatProvider(**{keyword: value})
    for allowed in ENUMS[keyword]:
        assert allowed in str(info.value)


@pytest.mark.parametrize(
    "keyword,expected",
    [
        ("temperature", "float"),
        ("top_p", "float"),
        ("presence_penalty", "float"),
        ("max_tokens", "int"),
        ("n", "int"),
        ("seed", "int"),
        ("dimension", "int"),
        ("max_context_size", "int"),
        ("retry_num", "int"),
        ("model", "string"),
    ],
)
def test_type_error_names_expected_type(keyword, expected):
    with pytest.raises(TypeError, match=expected):
        OpenAICompatProvider(**{keyword: object()})


# --- invalid values -----------------------------------------------------------------------------

BAD_VALUES = [
    ("endpoint", "", "http"),
    ("endpoint", "api.openai.com/v1", "http"),
    ("endpoint", "localhost:8000/v1", "http"),
    ("endpoint", "ftp://example.com/v1", "http"),
    ("endpoint", "http://", "http"),
    ("api_key", "", "non-empty"),
    ("temperature", math.nan, "finite"),
    ("temperature", math.inf, "finite"),
    ("temperature", -math.inf, "finite"),
    ("top_p", -0.01, "0.0 and 1.0"),
    ("top_p", 1.01, "0.0 and 1.0"),
    ("top_p", math.nan, "finite"),
    ("max_tokens", 0, ">= 1"),
    ("max_tokens", -5, ">= 1"),
    ("stop", 'a,"b', "CSV"),
    ("stop", '"a"b', "CSV"),
    ("presence_penalty", -2.01, "-2.0 and 2.0"),
    ("presence_penalty", 3, "-2.0 and 2.0"),
    ("n", 0, ">= 1"),
    ("dimension", 0, ">= 1"),
    ("max_context_size", 0, ">= 1"),
    ("retry_num", -1, ">= 0"),
    ("retry_backoff_base_interval", "", "duration"),
    ("retry_backoff_base_interval", "soon", "duration"),
    ("retry_backoff_base_interval", "1 fortnight", "unit"),
    ("retry_backoff_base_interval", "-1s", "duration"),
    ("retry_backoff_base_interval", "1.5s", "duration"),
    ("extra_header", "not json", "JSON object"),
    ("extra_header", '["X-A"]', "JSON object"),
    ("extra_header", '{"X-A": {"nested": 1}}', "X-A"),
    ("extra_header", '{"X-A": null}', "X-A"),
    ("extra_header", '{"X-A": [["1"]]}', "X-A"),
    ("extra_body", "{", "JSON object"),
    ("extra_body", "[1, 2]", "JSON object"),
    ("extra_body", '"text"', "JSON object"),
]


@pytest.mark.parametrize("keyword,value,hint", BAD_VALUES)
def test_wrong_value_is_value_error_naming_keyword_and_rule(keyword, value, hint):
    with pytest.raises(ValueError) as info:
        OpenAICompatProvider(**{keyword: value})
    assert isinstance(info.value, InvalidOptionError)
    assert keyword in str(info.value)
    assert hint in str(info.value)


@pytest.mark.parametrize("keyword", sorted(ENUMS))
@pytest.mark.parametrize("value", ["", "bogus", "RETRY_NOW"])
def test_wrong_enum_value_names_keyword_and_allowed_values(keyword, value):
    with pytest.raises(ValueError) as info:
        OpenAICompatProvider(**{keyword: value})
    message = str(info.value)
    assert keyword in message
    for allowed in ENUMS[keyword]:
        assert allowed in message


def test_retry_is_not_a_fallback():
    with pytest.raises(ValueError, match="retry_fallback_strategy"):
        OpenAICompatProvider(retry_fallback_strategy="retry")


# --- endpoint and task ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint,task",
    [
        ("https://h/v1/chat/completions", "embeddings"),
        ("https://h/v1/chat/completions/", "EMBEDDINGS"),
        ("https://h/v1/embeddings", "chat/completions"),
        ("https://h/openai/deployments/d/embeddings?api-version=2024-02-01", "chat/completions"),
    ],
)
def test_task_contradicting_endpoint_is_value_error(endpoint, task):
    with pytest.raises(ValueError, match="task") as info:
        OpenAICompatProvider(endpoint=endpoint, task=task)
    assert endpoint in str(info.value)


@pytest.mark.parametrize(
    "endpoint,task",
    [
        ("https://h/v1/chat/completions", "chat/completions"),
        ("https://h/v1/embeddings", "Embeddings"),
        ("https://h/v1", "embeddings"),
        ("https://h/v1", "chat/completions"),
        ("https://h/v1", None),
    ],
)
def test_task_agreeing_with_endpoint_is_accepted(endpoint, task):
    OpenAICompatProvider(endpoint=endpoint, task=task)


# --- to_options / from_options ----------------------------------------------------------------


def test_none_is_left_out_and_extra_options_pass_unchanged():
    provider = OpenAICompatProvider(
        model="m", temperature=None, **{"custom.key": "Some Value", "Upper-Case": " x "}
    )
    options = provider.to_options()
    assert "temperature" not in options
    assert options["custom.key"] == "Some Value"
    assert options["Upper-Case"] == " x "
    assert provider.extra_options == {"custom.key": "Some Value", "Upper-Case": " x "}


def test_extra_option_duplicating_a_named_key_is_rejected():
    with pytest.raises(ValueError, match="top_p"):
        OpenAICompatProvider(**{"top-p": "0.5"})


def test_extra_option_must_be_a_string():
    with pytest.raises(TypeError, match="foo"):
        OpenAICompatProvider(foo=1)


def test_to_options_is_a_fresh_dict():
    provider = OpenAICompatProvider(model="m")
    options = provider.to_options()
    options["model"] = "changed"
    options["new"] = "x"
    assert provider.to_options()["model"] == "m"
    assert "new" not in provider.to_options()


CONFIGURATIONS = [
    {},
    {"endpoint": "https://api.openai.com/v1", "api_key": KEY, "model": "gpt-4o-mini"},
    {"endpoint": "http://localhost:8000/v1/embeddings", "dimension": 256, "model": "e"},
    {"task": "EMBEDDINGS", "dimension": 3},
    {"temperature": 0.7, "top_p": 0.9, "max_tokens": 128, "presence_penalty": -1.5, "n": 2, "seed": 42},
    {"temperature": 0.1 + 0.2, "top_p": 1e-9, "presence_penalty": 2},
    {"temperature": 1e-7, "seed": -(2**40)},
    {"stop": 'a,"b,c", d', "user_prompt": "", "system_prompt": ""},
    {"system_prompt": "Line one\nline two, with a comma", "user_prompt": "Ünïcode ✓ 中文"},
    {"content_type": "image_url", "response_format": "JSON_OBJECT"},
    {"max_context_size": 10, "context_overflow_action": "SKIPPED-LOG"},
    {"error_handling_strategy": "ignore", "retry_num": 0},
    {
        "retry_num": 5,
        "retry_backoff_strategy": "exponential",
        "retry_backoff_base_interval": "500 ms",
        "retry_fallback_strategy": "ignore",
    },
    {"extra_header": '{"X-A": ["1", "2"], "X-B": true}', "extra_body": '{"top_k": 1}'},
    {"model": "m", "custom-option": "v", "another.option": ""},
]


@pytest.mark.parametrize("kwargs", CONFIGURATIONS)
def test_from_options_inverts_to_options(kwargs):
    provider = OpenAICompatProvider(**kwargs)
    rebuilt = OpenAICompatProvider.from_options(provider.to_options())
    assert rebuilt == provider
    assert rebuilt.to_options() == provider.to_options()
    assert hash(rebuilt) == hash(provider)


@pytest.mark.parametrize(
    "options,keyword,value",
    [
        ({"retry-num": "3"}, "retry_num", 3),
        ({"temperature": "0.7"}, "temperature", 0.7),
        ({"temperature": "1"}, "temperature", 1.0),
        ({"top-p": " 0.5 "}, "top_p", 0.5),
        ({"max-tokens": "16"}, "max_tokens", 16),
        ({"error-handling-strategy": "ignore"}, "error_handling_strategy", "IGNORE"),
        ({"context-overflow-action": "Truncated-Head"}, "context_overflow_action", "truncated-head"),
        ({"api-key": KEY}, "api_key", KEY),
    ],
)
def test_from_options_parses_strings(options, keyword, value):
    assert getattr(OpenAICompatProvider.from_options(options), keyword) == value


@pytest.mark.parametrize(
    "options,error,fragment",
    [
        ({"retry-num": "three"}, ValueError, "retry-num"),
        ({"retry-num": "-1"}, ValueError, "retry_num"),
        ({"seed": "1.5"}, ValueError, "seed"),
        ({"temperature": "warm"}, ValueError, "temperature"),
        ({"temperature": "nan"}, ValueError, "temperature"),
        ({"top-p": "2"}, ValueError, "top_p"),
        ({"task": "images"}, ValueError, "task"),
        ({"max-tokens": 5}, TypeError, "max-tokens"),
    ],
)
def test_from_options_validates(options, error, fragment):
    with pytest.raises(error, match=fragment):
        OpenAICompatProvider.from_options(options)


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret,masked",
    [
        (None, None),
        ("short", "***"),
        ("sk-0123456789abcdef", "***"),
        ("sk-0123456789abcdefghij", "sk-…ghij"),
        (KEY, "sk-…WXYZ"),
    ],
)
def test_mask_secret(secret, masked):
    assert mask_secret(secret) == masked


@pytest.mark.parametrize("key", [KEY, "short-key", "sk-" + "z" * 60])
def test_repr_and_str_mask_the_key(key):
    provider = OpenAICompatProvider(endpoint="https://h/v1", api_key=key, model="m")
    for text in (repr(provider), str(provider), f"{provider}", repr([provider])):
        assert key not in text
        assert "api_key=" in text
    masked = repr(provider).split("api_key=")[1].split(",")[0].strip("'")
    assert len(masked) <= len("sk-…abcd")
    assert "model='m'" in repr(provider)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key": 12345678901234567890},
        {"api_key": ""},
        {"api_key": KEY, "task": "embeddings", "endpoint": "https://h/v1/chat/completions"},
        {"api_key": KEY, "temperature": "hot"},
        {"api_key": KEY, "retry_num": -1},
        {"api_key": KEY, "foo": 1},
    ],
)
def test_exceptions_never_contain_the_key(kwargs):
    with pytest.raises((TypeError, ValueError)) as info:
        OpenAICompatProvider(**kwargs)
    assert KEY not in str(info.value)
    assert "12345678901234567890" not in str(info.value)


@pytest.mark.parametrize("raw", [KEY.encode(), 12345678901234567890, [KEY]])
def test_from_options_exceptions_never_contain_the_key(raw):
    with pytest.raises(TypeError, match="api-key") as info:
        OpenAICompatProvider.from_options({"api-key": raw})
    assert KEY not in str(info.value) and "12345678901234567890" not in str(info.value)


# --- value semantics ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", CONFIGURATIONS)
def test_pickle_and_copy_round_trip(kwargs):
    provider = OpenAICompatProvider(**kwargs)
    for clone in (pickle.loads(pickle.dumps(provider)), copy.copy(provider), copy.deepcopy(provider)):
        assert clone == provider
        assert clone.to_options() == provider.to_options()
        assert repr(clone) == repr(provider)


@pytest.mark.parametrize("name", ["model", "temperature", "api_key", "new_attribute", "_values"])
def test_immutable(name):
    provider = OpenAICompatProvider(model="m")
    with pytest.raises(AttributeError):
        setattr(provider, name, "x")
    assert provider.model == "m"


def test_extra_options_property_is_a_copy():
    provider = OpenAICompatProvider(foo="bar")
    provider.extra_options["foo"] = "baz"
    assert provider.to_options()["foo"] == "bar"


def test_equality_and_hash():
    a = OpenAICompatProvider(model="m", content_type="text")
    b = OpenAICompatProvider(model="m", content_type="TEXT")
    c = OpenAICompatProvider(model="n")
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2


def test_replace_validates_and_keeps_the_rest():
    provider = OpenAICompatProvider(model="m", temperature=0.5, foo="bar")
    changed = provider.replace(temperature=0.9)
    assert changed.temperature == 0.9 and changed.model == "m" and changed.extra_options == {"foo": "bar"}
    assert provider.temperature == 0.5
    with pytest.raises(ValueError, match="top_p"):
        provider.replace(top_p=5)


def test_unknown_attribute_is_attribute_error():
    with pytest.raises(AttributeError):
        OpenAICompatProvider().no_such_option  # noqa: B018

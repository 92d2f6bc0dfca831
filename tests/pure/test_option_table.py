"""The option table drives the provider, the job parameters and the README's "Provider options" table."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Literal, get_args

import pytest

from flink_llm_udf import EngineSettings, InvalidOptionError, InvalidOptionTypeError, OpenAICompatProvider
from flink_llm_udf._options import (
    OPTIONS,
    OPTIONS_BY_KEY,
    TASK_CHAT,
    TASK_EMBEDDINGS,
    Task,
    check_signature,
    render_options_table,
)
from flink_llm_udf._results import FAILED, IGNORED, NULL_INPUT, OK, SKIPPED, Outcome
from flink_llm_udf.job_parameters import (
    ENGINE_KEYS,
    ENGINE_OPTIONS,
    PROVIDER_KEYS,
    EngineKey,
    provider_from_lookup,
    settings_from_lookup,
)

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- provider-options:start -->", "<!-- provider-options:end -->"

_PYTHON_TYPES: dict[str, Any] = {"string": str, "int": int, "float": float}


# --- the table itself -----------------------------------------------------------------------------


def test_keywords_and_keys_are_unique_and_follow_flinks_spelling():
    assert len({o.keyword for o in OPTIONS}) == len({o.key for o in OPTIONS}) == len(OPTIONS) == 25
    assert all(o.key == o.keyword.replace("_", "-") for o in OPTIONS)
    assert {o.key: o for o in OPTIONS} == OPTIONS_BY_KEY


def test_enum_defaults_are_allowed_values_and_other_kinds_have_no_allowed_values():
    for option in OPTIONS:
        if option.kind == "enum":
            assert option.allowed, option.keyword
            assert option.default is None or option.default in option.allowed, option.keyword
        else:
            assert option.allowed == (), option.keyword


def test_task_constants_are_the_task_literal():
    assert get_args(Task) == (TASK_CHAT, TASK_EMBEDDINGS)


def test_attribute_annotations_agree_with_the_table():
    hints = typing.get_type_hints(OpenAICompatProvider)
    for option in OPTIONS:
        expected = Literal[option.allowed] if option.kind == "enum" else _PYTHON_TYPES[option.kind]
        if option.default is None:
            expected = expected | None
        assert hints[option.keyword] == expected, option.keyword


def test_provider_has_no_instance_dict_and_no_getattr_fallback():
    provider = OpenAICompatProvider()
    assert not hasattr(provider, "__dict__")
    assert "__getattr__" not in vars(OpenAICompatProvider)


# --- the signature check ----------------------------------------------------------------------------


def test_the_constructor_passes_the_signature_check():
    check_signature(OpenAICompatProvider.__init__)


def _with_parameters(parameters: list[inspect.Parameter]) -> Any:
    def function(*args: Any, **kwargs: Any) -> None:
        pass

    function.__signature__ = inspect.Signature(parameters)
    return function


def _seed_parameters() -> list[inspect.Parameter]:
    parameters = [
        inspect.Parameter(o.keyword, inspect.Parameter.KEYWORD_ONLY, default=o.default) for o in OPTIONS
    ]
    return [*parameters, inspect.Parameter("extra_options", inspect.Parameter.VAR_KEYWORD)]


def test_signature_check_accepts_the_tables_signature():
    check_signature(_with_parameters(_seed_parameters()))


@pytest.mark.parametrize(
    "drift",
    [
        pytest.param(lambda ps: [ps[1], ps[0], *ps[2:]], id="order"),
        pytest.param(lambda ps: [ps[0].replace(default="http://h/v1"), *ps[1:]], id="default"),
        pytest.param(
            lambda ps: [ps[0].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD), *ps[1:]], id="kind"
        ),
        pytest.param(lambda ps: [*ps[:3], *ps[4:]], id="missing"),
        pytest.param(lambda ps: ps[:-1], id="no-extra-options"),
        pytest.param(lambda ps: [ps[0].replace(name="url"), *ps[1:]], id="name"),
    ],
)
def test_signature_check_rejects_drift(drift):
    with pytest.raises(TypeError, match="option table"):
        check_signature(_with_parameters(drift(_seed_parameters())))


# --- validation from the rows ---------------------------------------------------------------------


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.default is not None], ids=lambda o: o.keyword)
def test_none_for_an_option_with_a_default_names_keyword_and_default(option):
    with pytest.raises(InvalidOptionTypeError) as info:
        OpenAICompatProvider(**{option.keyword: None})
    assert option.keyword in str(info.value)
    assert repr(option.default) in str(info.value)
    for allowed in option.allowed:
        assert allowed in str(info.value)


@pytest.mark.parametrize(
    "option", [o for o in OPTIONS if o.kind in ("int", "float")], ids=lambda o: o.keyword
)
def test_from_options_parses_numbers_by_kind(option):
    value = 1 if option.low is None or option.low <= 1 else int(option.low)
    provider = OpenAICompatProvider.from_options({option.key: str(value)})
    parsed = getattr(provider, option.keyword)
    assert type(parsed) is _PYTHON_TYPES[option.kind] and parsed == value


def test_an_int_too_large_for_a_float_is_not_a_finite_temperature():
    with pytest.raises(InvalidOptionError, match="finite"):
        OpenAICompatProvider(temperature=10**400)


def test_bounds_message_shows_the_value_as_given():
    with pytest.raises(
        InvalidOptionError, match=r"top_p=2 is not allowed: must be a float between 0\.0 and 1\.0"
    ):
        OpenAICompatProvider(top_p=2)


def test_deleting_an_option_is_refused():
    provider = OpenAICompatProvider(model="m")
    with pytest.raises(AttributeError):
        del provider.model


# --- README -------------------------------------------------------------------------------------


def test_readme_shows_the_rendered_table():
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"README.md has no {START} ... {END} block"
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == render_options_table(), (
        "README.md's provider options differ from the table; paste `python -m flink_llm_udf._options`"
    )


def test_rendered_table_has_a_row_per_option_plus_extra_options():
    lines = render_options_table().splitlines()
    assert len(lines) == 2 + len(OPTIONS) + 1
    assert [line.split(" | ")[0].removeprefix("| ") for line in lines[2:-1]] == [o.keyword for o in OPTIONS]
    assert lines[-1].startswith("| **extra_options |")


def test_module_entry_point_prints_the_table():
    printed = subprocess.run(
        [sys.executable, "-m", "flink_llm_udf._options"], capture_output=True, text=True, check=True
    ).stdout
    assert printed == render_options_table() + "\n"


# --- job parameters -------------------------------------------------------------------------------


def test_provider_keys_are_the_tables_plus_the_key_file():
    assert (*(o.key for o in OPTIONS), "api-key-file") == PROVIDER_KEYS


def test_every_provider_key_is_read_under_the_prefix():
    options = {
        "endpoint": "http://h/v1",
        "max-tokens": "7",
        "top-p": "0.5",
        "error-handling-strategy": "ignore",
        "api-key-file": "/k",
    }
    provider = provider_from_lookup({"ai." + key: value for key, value in options.items()}.get)
    assert provider.max_tokens == 7 and provider.top_p == 0.5 and provider.error_handling_strategy == "IGNORE"
    assert provider.extra_options == {"api-key-file": "/k"}


def test_engine_keys_come_from_the_settings_fields():
    assert ENGINE_KEYS == {
        "max-concurrency": "max_concurrency",
        "request-timeout": "request_timeout_s",
        "row-deadline": "row_deadline_s",
        "embedding-rows-per-request": "embedding_rows_per_request",
        "batch-deadline": "batch_deadline_s",
        "http-client": "http_client",
        "max-reply-bytes": "max_reply_bytes",
        "tls-ca-file": "tls_ca_file",
        "context-tokenizer": "context_tokenizer",
        "requests-per-minute": "requests_per_minute",
        "tokens-per-minute": "tokens_per_minute",
        "completion-tokens-estimate": "completion_tokens_estimate",
        "adaptive-concurrency": "adaptive_concurrency",
        "rate-limit-headers": "rate_limit_headers",
        "prompt-template": "prompt_template",
        "structured-output": "structured_output",
        "invalid-output-retries": "invalid_output_retries",
        "dedup": "dedup",
        "cache": "cache",
        "cache-ttl": "cache_ttl_s",
        "cache-max-entries": "cache_max_entries",
        "cache-password-file": "cache_password_file",
        "prices": "prices",
        "token-budget": "token_budget",
        "cost-budget": "cost_budget",
        "embedding-pack-wait": "embedding_pack_wait_s",
    }
    assert [o.field for o in ENGINE_OPTIONS] == [f.name for f in dataclasses.fields(EngineSettings)]


def test_engine_settings_parse_by_field():
    settings = settings_from_lookup(
        {
            "ai.max-concurrency": "3",
            "ai.request-timeout": "30s",
            "ai.row-deadline": "none",
            "ai.embedding-rows-per-request": "8",
            "ai.batch-deadline": "2 min",
            "ai.http-client": " AIOHTTP ",
        }.get
    )
    assert settings == EngineSettings(
        max_concurrency=3,
        request_timeout_s=30.0,
        row_deadline_s=None,
        embedding_rows_per_request=8,
        batch_deadline_s=120.0,
        http_client="aiohttp",
    )


def test_engine_settings_keep_the_defaults_given():
    base = EngineSettings(max_concurrency=4)
    assert settings_from_lookup({"ai.row-deadline": "0"}.get, defaults=base) == dataclasses.replace(
        base, row_deadline_s=None
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ai.max-concurrency": "0"}, "option 'ai.max-concurrency'='0' is not allowed: must be an int >= 1"),
        ({"ai.max-concurrency": "x"}, "option 'ai.max-concurrency'='x' is not allowed: must be an int >= 1"),
        (
            {"ai.request-timeout": "0"},
            "option 'ai.request-timeout'='0' is not allowed: must be a number of seconds",
        ),
        ({"ai.request-timeout": "none"}, "option 'ai.request-timeout'='none' is not allowed"),
        ({"ai.row-deadline": "-1s"}, "option 'ai.row-deadline'='-1s' is not allowed: not a duration"),
        ({"ai.http-client": "curl"}, "option 'ai.http-client'='curl' is not allowed: must be one of"),
    ],
)
def test_bad_engine_settings_name_the_key_and_value(raw, message):
    with pytest.raises(InvalidOptionError) as info:
        settings_from_lookup(raw.get)
    assert str(info.value).startswith(message)


def test_bad_engine_setting_names_where_it_came_from():
    expected = r"option 'ai\.max-concurrency'='0' \(from the 'ai\.\*' configuration\) is not allowed"
    with pytest.raises(InvalidOptionError, match=expected):
        settings_from_lookup({"ai.max-concurrency": "0"}.get, source="ai.")


def test_an_engine_field_of_an_unknown_kind_has_no_key():
    @dataclasses.dataclass
    class Odd:
        ratio: float = 0.5

    with pytest.raises(TypeError, match="ratio"):
        EngineKey.of(dataclasses.fields(Odd)[0])


# --- outcomes -------------------------------------------------------------------------------------


def test_outcome_literal_is_the_outcome_constants():
    assert set(get_args(Outcome)) == {OK, NULL_INPUT, SKIPPED, IGNORED, FAILED}
    assert (OK, NULL_INPUT, SKIPPED, IGNORED, FAILED) == ("ok", "null_input", "skipped", "ignored", "failed")

"""``run_batch`` takes ``settings=`` and any ``EngineSettings`` field as a keyword."""

from __future__ import annotations

import pytest

from flink_llm_udf import EngineSettings, InvalidOptionError
from flink_llm_udf._batch import settings_with


def test_no_settings_and_no_keywords_give_the_defaults():
    assert settings_with(None, {}) == EngineSettings()


def test_keywords_win_over_the_settings_object_and_old_names_still_work():
    base = EngineSettings(max_concurrency=8, request_timeout_s=5.0)
    chosen = settings_with(base, {"max_concurrency": 64, "row_deadline": 30.0, "batch_deadline": 9.0})
    assert chosen == EngineSettings(
        max_concurrency=64, request_timeout_s=5.0, row_deadline_s=30.0, batch_deadline_s=9.0
    )
    assert settings_with(None, {"request_timeout": 2.0}).request_timeout_s == 2.0


def test_an_unknown_keyword_names_itself_and_the_fields():
    with pytest.raises(TypeError, match=r"'max_concurency'.*not an EngineSettings field.*max_concurrency"):
        settings_with(None, {"max_concurency": 4})


def test_keyword_values_are_validated_like_the_settings():
    with pytest.raises(InvalidOptionError, match="max_concurrency=0"):
        settings_with(None, {"max_concurrency": 0})

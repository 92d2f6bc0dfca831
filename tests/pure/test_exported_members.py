"""``flink_llm_udf.__all__`` lists exactly the public names the package exports, and each resolves."""

from __future__ import annotations

import types

import flink_llm_udf


def test_all_is_exactly_the_public_names():
    public = {
        name
        for name, value in vars(flink_llm_udf).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(flink_llm_udf.__all__) == public


def test_all_has_no_duplicates_and_every_name_resolves():
    assert len(flink_llm_udf.__all__) == len(set(flink_llm_udf.__all__))
    for name in flink_llm_udf.__all__:
        assert getattr(flink_llm_udf, name) is not None


def test_exported_objects_belong_to_the_package():
    for name in flink_llm_udf.__all__:
        value = getattr(flink_llm_udf, name)
        module = getattr(value, "__module__", None)
        if module is not None:
            assert module.startswith("flink_llm_udf."), name


def test_exception_tree_has_one_root():
    from flink_llm_udf import FlinkLLMError

    errors = [
        getattr(flink_llm_udf, n)
        for n in flink_llm_udf.__all__
        if isinstance(getattr(flink_llm_udf, n), type)
        and issubclass(getattr(flink_llm_udf, n), BaseException)
    ]
    assert errors and all(issubclass(e, FlinkLLMError) for e in errors)
    assert issubclass(flink_llm_udf.InvalidOptionError, ValueError)
    assert issubclass(flink_llm_udf.InvalidOptionTypeError, TypeError)


def test_star_import_gives_all():
    namespace: dict = {}
    exec("from flink_llm_udf import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(flink_llm_udf.__all__)

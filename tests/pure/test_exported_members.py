"""Each public package's ``__all__`` lists exactly the public names it exports, and each resolves."""

from __future__ import annotations

import importlib
import types

import pytest

import flink_llm_udf

PUBLIC_PACKAGES = [
    "flink_llm_udf",
    "flink_llm_udf.flink",
    "flink_llm_udf.sql",
    "flink_llm_udf.simulator",
]


def _imported_from_outside(value: object) -> bool:
    """A class or function another package defines (an import, not an export)."""
    return isinstance(value, (type, types.FunctionType)) and not value.__module__.startswith("flink_llm_udf")


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_all_is_exactly_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not _imported_from_outside(value)
        and name != "annotations"  # from __future__ import annotations
    }
    assert set(module.__all__) == public


@pytest.mark.parametrize("package", [*PUBLIC_PACKAGES, "flink_llm_udf.job_parameters"])
def test_all_has_no_duplicates_and_every_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_exported_objects_belong_to_the_package(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if isinstance(value, (type, types.FunctionType)):
            assert value.__module__.startswith("flink_llm_udf."), name


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

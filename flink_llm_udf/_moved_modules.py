"""Old import paths of modules that moved in 0.2.0 keep working, as aliases of the new modules.

``import flink_llm_udf.engine`` (or a pickled UDF that names it) gives the very module object
``flink_llm_udf._engine``, so patching through either name patches both. Only the names in
``MOVED_MODULES`` (and the submodules of a moved package) are aliased; nothing else is touched.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

_P = "flink_llm_udf"

#: old module path -> where it lives now. A moved package takes its submodules with it.
MOVED_MODULES: dict[str, str] = {
    f"{_P}.providers": f"{_P}._provider",
    f"{_P}.protocol": f"{_P}._wire",
    f"{_P}.errors": f"{_P}._errors",
    f"{_P}.results": f"{_P}._results",
    f"{_P}.retry": f"{_P}._retry",
    f"{_P}.tokens": f"{_P}._tokens",
    f"{_P}.durations": f"{_P}._durations",
    f"{_P}.engine": f"{_P}._engine",
    f"{_P}.runner": f"{_P}._batch",
    f"{_P}.metrics": f"{_P}._observers",
    f"{_P}.slots": f"{_P}._slots",
    f"{_P}.event_loops": f"{_P}._event_loops",
    f"{_P}.config": f"{_P}.job_parameters",
    f"{_P}.http11": f"{_P}._http._builtin",
    f"{_P}.transport": f"{_P}._http",
    f"{_P}.cli": f"{_P}.tools.cli",
    f"{_P}.demo": f"{_P}.tools.demo",
    f"{_P}.cluster": f"{_P}.tools.cluster",
    f"{_P}.sql_runner": f"{_P}.tools.sql_file",
    f"{_P}.bench": f"{_P}.tools.bench",
    f"{_P}.flink.async_function": f"{_P}.flink._async_function",
    f"{_P}.flink.async_scalar": f"{_P}.flink._async_scalar",
    f"{_P}.flink.async_submit": f"{_P}.flink._batched_submit",
    f"{_P}.flink.context": f"{_P}.flink._function_setup",
    f"{_P}.flink.flink39532": f"{_P}.flink._async_row_copy",
    f"{_P}.flink.metrics": f"{_P}.flink._gauges",
    f"{_P}.flink.pandas_udf": f"{_P}.flink._pandas_udf",
    f"{_P}.flink.register": f"{_P}.flink._register",
    f"{_P}.flink.settings": f"{_P}.flink._tuning",
    f"{_P}.simulator.cli": f"{_P}.simulator._cli",
    f"{_P}.simulator.config": f"{_P}.simulator._behaviour",
    f"{_P}.simulator.context": f"{_P}.simulator._context_window",
    f"{_P}.simulator.control": f"{_P}.simulator._background",
    f"{_P}.simulator.directives": f"{_P}.simulator._directives",
    f"{_P}.simulator.faults": f"{_P}.simulator._faults",
    f"{_P}.simulator.limits": f"{_P}.simulator._limits",
    f"{_P}.simulator.protocol": f"{_P}.simulator._bodies",
    f"{_P}.simulator.replies": f"{_P}.simulator._replies",
    f"{_P}.simulator.server": f"{_P}.simulator._server",
}


def current_name(old: str) -> str | None:
    """Where the module once called ``old`` lives now, or None if it never moved."""
    if old in MOVED_MODULES:
        return MOVED_MODULES[old]
    package, _, rest = old.rpartition(".")
    while package:
        if package in MOVED_MODULES:
            return f"{MOVED_MODULES[package]}.{rest}"
        package, _, head = package.rpartition(".")
        rest = f"{head}.{rest}"
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module that now holds its code (no second copy)."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self._target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set the alias's spec on the shared module object; the
        # module keeps its own, so reloads and ``python -m`` see where it really lives.
        module.__spec__ = self._own_spec

    # ``python -m OLD.NAME`` (runpy) asks the loader whether it is a package and for its code.
    def is_package(self, fullname: str) -> bool:
        return self._target_spec().submodule_search_locations is not None

    def get_code(self, fullname: str) -> CodeType | None:
        spec = self._target_spec()
        get_code = getattr(spec.loader, "get_code", None)
        return None if get_code is None else get_code(self._target)

    def _target_spec(self) -> importlib.machinery.ModuleSpec:
        spec = importlib.util.find_spec(self._target)
        if spec is None:  # the table names a module that does not exist: a bug of ours
            raise ImportError(f"{self._target} (the new home of a moved module) is missing")
        return spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """A meta path finder answering only for the old names of moved modules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_P + "."):
            return None
        new = current_name(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once per interpreter.

    First, so that a submodule of a moved package (``flink_llm_udf.bench.child``) is the new
    module, not a second copy the path finder would load from the package's ``__path__``.
    """
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())

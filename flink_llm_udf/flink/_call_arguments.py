"""A SQL call's trailing arguments, read once per distinct value: a model, per-call options, a
schema or labels. Literals arrive once per batch; a column repeats few values, so each distinct
value is parsed once and a bad one becomes that row's error, never the batch's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._batch import BlockingEngine
from .._call_options import CallOptions, parse_call_options
from .._call_plan import OutputSpec, output_spec
from .._errors import FlinkLLMError, RowFailedError
from .._results import FAILED, NULL_INPUT, RowResult

#: What a function's second argument holds: a model override, an output schema or labels.
SecondArgument = Literal["model", "schema", "labels"]


@dataclass(frozen=True, slots=True)
class RowCall:
    """One row's call: its model, options and structured output, or why it cannot be made."""

    model: str | None = None
    options: CallOptions | None = None
    output: OutputSpec | None = None
    problem: str | None = None


class CallArguments:
    """Reads ``(second, options)`` arguments into ``RowCall``s, memoizing each distinct value."""

    def __init__(self, second: SecondArgument = "model", default_output: OutputSpec | None = None) -> None:
        self._second = second
        self._default_output = default_output
        self._options: dict[Any, CallOptions | str | None] = {}
        self._outputs: dict[Any, OutputSpec | str | None] = {}

    @property
    def default_output(self) -> OutputSpec | None:
        """The structured output rows get when their call names none (a function's own labels)."""
        return self._default_output

    @property
    def plain(self) -> bool:
        """Whether rows without trailing arguments need no reading (a plain model function)."""
        return self._second == "model" or self._default_output is not None

    def row(self, second: Any = None, options: Any = None) -> RowCall:
        """The call for one row's trailing arguments (None: not given, or SQL NULL)."""
        call_options = _memo(self._options, options, parse_call_options)
        if isinstance(call_options, str):
            return RowCall(problem=f"its per-call options cannot be used: {call_options}")
        model, output = None, self._default_output
        if self._second == "model":
            if second is not None and not isinstance(second, str):
                return RowCall(problem=f"its model is {type(second).__name__}, not a string")
            model = second
        elif second is not None:
            read = (lambda s: output_spec(schema=s)) if self._second == "schema" else _labels_output
            found = _memo(self._outputs, second, read)
            if isinstance(found, str):
                return RowCall(problem=f"its {self._second} cannot be used: {found}")
            output = found
        if self._second != "model" and output is None:
            return RowCall(problem=f"it has no {self._second} (the argument is NULL)")
        return RowCall(model, call_options, output)


def _labels_output(labels: Any) -> OutputSpec | None:
    return output_spec(labels=list(labels) if not isinstance(labels, str) else labels)


def _memo(cache: dict[Any, Any], value: Any, read: Callable[[Any], Any]) -> Any:
    """``read(value)`` once per distinct value; an error is kept as its message."""
    if value is None:
        return None
    key = _hashable(value)
    try:
        return cache[key]
    except KeyError:
        pass
    try:
        found = read(value)
    except (FlinkLLMError, ValueError, TypeError) as exc:
        found = str(exc)
    if len(cache) < 1024:
        cache[key] = found
    return found


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # a NumPy array (an ARRAY column in a Pandas batch)
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def run_calls(
    engine: BlockingEngine, texts: list[Any], calls: list[RowCall], *, raise_on_failover: bool = True
) -> list[RowResult]:
    """A batch's results: rows whose arguments could not be read get their own error, the rest
    go to the engine together (one ``run_batch``)."""
    sendable = [index for index, call in enumerate(calls) if call.problem is None]
    results: list[RowResult | None] = [None] * len(texts)
    if sendable:
        answered = engine.run_batch(
            [texts[i] for i in sendable],
            [calls[i].model for i in sendable],
            options=[calls[i].options for i in sendable],
            output=[calls[i].output for i in sendable],
            raise_on_failover=raise_on_failover,
        )
        for index, result in zip(sendable, answered, strict=True):
            results[index] = result
    for index, call in enumerate(calls):
        if call.problem is not None:
            if texts[index] is None:
                results[index] = RowResult(None, NULL_INPUT)
            else:
                results[index] = failed = engine.engine.unsent(call.problem)
                engine.engine.observer.row_done(failed)
                if raise_on_failover and failed.outcome == FAILED:
                    raise RowFailedError(index, failed.error or "", attempts=0, status=None)
    return [result for result in results if result is not None]

"""``LLMAsyncFunction`` for ``AsyncDataStream.unordered_wait`` / ``ordered_wait``.

Each input record becomes one output Row per choice carrying the key, the input text, the value
and the row's outcome. Error handling happens inside ``async_invoke``: Flink fails the job on any
exception or operator timeout, so under IGNORE a failed row becomes an error record instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from pyflink.common import Row, Time, Types
from pyflink.common.typeinfo import TypeInformation
from pyflink.datastream import (
    AsyncDataStream,
    AsyncFunction,
    DataStream,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.table.types import DataType

from .._call_plan import OutputSpec, output_spec
from .._engine import LLMEngine
from .._engine_settings import EngineSettings
from .._errors import RowFailedError
from .._provider import TASK_CHAT, OpenAICompatProvider
from .._results import FAILED, IGNORED, RowResult
from ..job_parameters import DEFAULT_PREFIX
from ._batched_submit import install_batched_submit
from ._call_arguments import CallArguments
from ._function_setup import (
    PicklesWithoutEngine,
    Prefixes,
    declared_settings,
    resolve_configuration,
    subtasks_of,
)
from ._gauges import FlinkMetrics
from ._structured_types import ResultType
from ._tuning import ASYNC_SLOTS_PER_REQUEST, apply_to_stream_environment

OUTPUT_FIELDS = [
    "key",
    "input",
    "value",
    "choice",
    "error",
    "status",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cached",
    "cost",
]


def output_type(task: str = TASK_CHAT, value_type: TypeInformation | None = None) -> TypeInformation:
    """The Row type ``LLMAsyncFunction`` emits for ``task`` (value STRING or FLOAT array, or the
    structured-output ROW given as ``value_type``)."""
    if value_type is None:
        value_type = Types.STRING() if task == TASK_CHAT else Types.PRIMITIVE_ARRAY(Types.FLOAT())
    return Types.ROW_NAMED(
        OUTPUT_FIELDS,
        [
            Types.STRING(),
            Types.STRING(),
            value_type,
            Types.INT(),
            Types.STRING(),
            Types.INT(),
            Types.INT(),
            Types.LONG(),
            Types.LONG(),
            Types.BOOLEAN(),
            Types.DOUBLE(),
        ],
    )


def _default_text(record: Any) -> str | None:
    if record is None or isinstance(record, str):
        return record
    return record[0]  # a Row or tuple: its first field


class LLMAsyncFunction(PicklesWithoutEngine, AsyncFunction):
    """Calls the provider for each record; one output Row per choice (see ``OUTPUT_FIELDS``).

    ``text_of`` picks the text from a record (default: the record if it is a string, else its
    first field; with a prompt template it may return a mapping of the template's fields);
    ``key_of`` gives a key carried to the output (default: none); ``model_of`` a per-record
    model override; ``options_of`` per-record options (a mapping or JSON object text, as
    ``run_batch(options=…)``). ``result_type`` (a ROW ``DataType`` or ``'ROW<…>'`` string) asks
    for typed structured output: the ``value`` field is then that ROW, validated; ``labels``
    makes the value exactly one of them. Under FAILOVER a failed row raises ``RowFailedError``.
    """

    def __init__(
        self,
        provider: OpenAICompatProvider | None = None,
        settings: EngineSettings | None = None,
        *,
        text_of: Callable[[Any], str | None] = _default_text,
        key_of: Callable[[Any], Any] | None = None,
        model_of: Callable[[Any], str | None] | None = None,
        options_of: Callable[[Any], Any] | None = None,
        result_type: DataType | str | None = None,
        labels: str | Sequence[str] | None = None,
        prefix: Prefixes = DEFAULT_PREFIX,
    ) -> None:
        self._provider = provider
        self._settings = settings
        self._text_of = text_of
        self._key_of = key_of
        self._model_of = model_of
        self._options_of = options_of
        self._result = None if result_type is None else ResultType(result_type)
        default = None if labels is None else output_spec(labels=labels)
        if self._result is not None:  # a reply that cannot become that ROW is asked again
            default = OutputSpec.of(self._result.schema, check=self._result.value)
        self._arguments = CallArguments("model", default)
        self._prefix = prefix
        self._engine: LLMEngine | None = None
        self.metrics: FlinkMetrics | None = None
        self._rows = 0

    @property
    def settings(self) -> EngineSettings:
        return self._settings or EngineSettings()

    def open(self, runtime_context: RuntimeContext) -> None:
        install_batched_submit()
        provider, settings = resolve_configuration(
            runtime_context, self._provider, self._settings, self._prefix
        )
        self.metrics = FlinkMetrics(runtime_context.get_metrics_group())
        self._engine = LLMEngine(
            provider, settings, observer=self.metrics, subtasks=subtasks_of(runtime_context)
        )

    async def async_invoke(self, value: Any) -> list[Row]:
        if self._engine is None:
            raise RuntimeError("the function is not open: Flink calls open() before async_invoke()")
        index = self._rows
        self._rows += 1
        text = self._text_of(value)
        model = None if self._model_of is None else self._model_of(value)
        options = None if self._options_of is None else self._options_of(value)
        call = self._arguments.row(model, options)
        if call.problem is not None and text is not None:
            result = self._engine.unsent(call.problem)
            self._engine.observer.row_done(result)
        else:
            output = call.output if call.problem is None else None
            result = await self._engine.call_row(text, model=call.model, options=call.options, output=output)
        if result.outcome == FAILED:
            raise RowFailedError(
                index, result.error or "unknown error", attempts=result.attempts, status=result.status
            )
        return self._rows_for(value, text, result)

    def timeout(self, value: Any) -> list[Row]:
        """Flink's operator timeout fired: an error record under IGNORE, else a failure."""
        error = "the Flink operator timeout fired before the row finished"
        if self._engine is not None and self._engine.spec.retry.final_action == "IGNORE":
            return self._rows_for(value, self._text_of(value), RowResult(None, IGNORED, error=error))
        raise TimeoutError(f"{error} (strategy FAILOVER); raise the timeout or use IGNORE")

    def _rows_for(self, record: Any, text: object, result: RowResult) -> list[Row]:
        key = None if self._key_of is None else _as_str(self._key_of(record))
        text = _as_str(text)  # the STRING field must hold what came in, even if it could not be sent
        usage = result.usage
        prompt = None if usage is None else usage.prompt_tokens
        completion = None if usage is None else usage.completion_tokens
        choices = result.choices if len(result.choices) > 1 else (result.value,)
        if self._result is not None:  # one validated answer per row
            try:
                choices = (self._result.value(result.value),)
            except (ValueError, TypeError, ArithmeticError, KeyError) as exc:  # e.g. a stale cache entry
                error = f"the answer does not fit the result type: {exc}"
                if self._engine is not None and self._engine.spec.retry.final_action == "FAILOVER":
                    raise RowFailedError(-1, error, attempts=result.attempts, status=result.status) from None
                choices = (None,)
                result = dataclasses.replace(result, value=None, outcome=IGNORED, error=error)
        return [
            Row(
                key,
                text,
                value,
                position,
                result.error,
                result.status,
                result.attempts,
                prompt if position == 0 else None,
                completion if position == 0 else None,
                result.cached,
                result.cost if position == 0 else None,
            )
            for position, value in enumerate(choices)
        ]

    def output_type(self, task: str = TASK_CHAT) -> TypeInformation:
        """The Row type this function emits (``output_type`` with its structured value, if any)."""
        return output_type(task, None if self._result is None else self._result.type_info)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close_from_outside()
            self._engine = None


def _as_str(value: Any) -> str | None:
    """``value`` as a STRING field can carry it: ``str()`` of it, a lone surrogate escaped."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def use_this_python_locally(env: StreamExecutionEnvironment) -> None:
    """In a local mini-cluster, run the Python workers with this interpreter.

    PyFlink's TableEnvironment does this itself; its StreamExecutionEnvironment does not, so a
    local DataStream job would start ``python`` from PATH, which may lack PyFlink. A configured
    ``python.executable`` and cluster submissions are left alone.
    """
    import sys

    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import get_j_env_configuration, is_local_deployment

    config = get_j_env_configuration(env._j_stream_execution_environment)
    key = get_gateway().jvm.org.apache.flink.python.PythonOptions.PYTHON_EXECUTABLE.key()
    if not config.containsKey(key) and is_local_deployment(config):
        env.set_python_executable(sys.executable)


def apply_llm(
    stream: DataStream,
    function: LLMAsyncFunction,
    *,
    ordered: bool = False,
    capacity: int | None = None,
    timeout_s: float | None = None,
    task: str = TASK_CHAT,
    apply_settings: bool = True,
) -> DataStream:
    """Apply ``function`` to ``stream`` with settings that suit LLM calls.

    ``capacity`` defaults to 16 x the engine's ``max_concurrency``: Flink's queue holds rows that
    wait for a request slot, back off before a retry, or (ordered) wait behind a slow row, while
    the engine's request slots still bound requests in flight: the function's settings, else
    ``ai.max-concurrency`` from the environment's job parameters. ``timeout_s`` defaults to 0:
    no per-record Flink timer (each costs a thread), since the engine already bounds every
    request and every row's retry budget (``row_deadline_s``), so a slow row ends as an error
    record under IGNORE. Pass a number to add Flink's own timeout on top;
    ``LLMAsyncFunction.timeout`` then also yields an error record under IGNORE.

    ``apply_settings`` sets the Python bundle settings of ``recommended_settings`` on the
    stream's environment where the user has not (they apply to every Python operator of the
    job): without them each bundle of Flink's default 1,000 rows drains the request slots, and
    a quiet stream's rows wait up to two seconds for their bundle.
    """
    use_this_python_locally(stream.get_execution_environment())
    settings = declared_settings(_job_parameters_of(stream), function._settings, function._prefix)
    if apply_settings:
        apply_to_stream_environment(stream.get_execution_environment(), settings.max_concurrency)
    capacity = capacity or ASYNC_SLOTS_PER_REQUEST * settings.max_concurrency
    timeout = Time.milliseconds(int(1000 * (timeout_s or 0)))
    wait = AsyncDataStream.ordered_wait if ordered else AsyncDataStream.unordered_wait
    return wait(stream, function, timeout, capacity, function.output_type(task))


def _job_parameters_of(stream: DataStream) -> dict[str, str]:
    try:
        config = stream._j_data_stream.getExecutionEnvironment().getConfig()
        return dict(config.getGlobalJobParameters().toMap())
    except Exception:
        return {}

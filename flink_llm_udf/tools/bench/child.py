"""One bench case in a fresh process: ``python -m flink_llm_udf.tools.bench.child SPEC_JSON``.

A fresh process per case keeps the measurements apart: its own JVM (the local mini-cluster),
its own Python worker (which runs inside this process in local "loopback" mode) and its own
``ru_maxrss``. Progress goes to stdout as JSON lines prefixed with ``@bench``:
``submit`` (just before the job, or the engine run, starts; for a Flink job with the tuning
keys it was configured with) and ``done`` (with this process's
CPU time, peak RSS, and the per-row latencies of a latency case) or ``error``.

A cache-cpu case (an engine CPU case with ``cache_pass``) runs the engine with the result cache
the parent named (``cache_url``: "memory" or the URL of the redis-server it started) and says,
per measured pass, how many requests the engine sent and how many rows the cache answered.

A quota case runs at its ``parallelism`` (the engine alone: that many engines, one thread each,
as subtasks of one job) and collects its output, so ``done`` says how many rows got a value.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .plan import (
    CHAT,
    DS_ORDERED,
    DS_UNORDERED,
    ENGINE,
    ENGINE_CPU,
    HIT,
    LATENCY,
    NAIVE,
    PANDAS,
    QUOTA,
    QUOTA_MAX_TOKENS,
    QUOTA_ON,
    README,
    SQL_ASYNC,
    Case,
)

if TYPE_CHECKING:  # imported where used: the child imports only what its case needs
    from pyflink.common import Configuration, Row
    from pyflink.datastream import DataStream, StreamExecutionEnvironment
    from pyflink.table import TableEnvironment
    from pyflink.table.udf import UserDefinedScalarFunctionWrapper

    from flink_llm_udf._engine_settings import EngineSettings
    from flink_llm_udf._provider import OpenAICompatProvider
    from flink_llm_udf.flink import LLMAsyncFunction

PREFIX = "@bench "
MODEL = {CHAT: "sim-model", "embeddings": "sim-embed"}
_TEXT = ": the parcel arrived on time and the blender works well, but the lid is loose."
TEXT_SQL = f"CONCAT('Summarise review #', CAST(id AS STRING), '{_TEXT}')"
# Latency cases stamp each row where datagen makes it (a random TIMESTAMP_LTZ with no "past"
# is the generation time) and carry it as a UTC string: PyFlink cannot hand over an Instant.
STAMP_SQL = "DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss.SSS')"
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def text_of(i: int) -> str:
    """The prompt of row ``i`` (the same text the SQL sources build)."""
    return f"Summarise review #{i}{_TEXT}"


def emit(event: str, **fields: Any) -> None:
    """Print one progress event for the parent (a ``PREFIX`` line of JSON)."""
    print(PREFIX + json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the case in ``spec`` (``case``, ``base_url``, ``flink_conf``); return the done fields."""
    case = Case(**spec["case"])
    if case.entry == ENGINE:
        return _run_engine(case, spec)
    return _run_flink(case, spec)


def _api_task(case: Case) -> str:
    from flink_llm_udf._provider import TASK_CHAT, TASK_EMBEDDINGS

    return TASK_CHAT if case.task == CHAT else TASK_EMBEDDINGS


#: The retry backoff of quota cases: short, so a retry waits for the server's Retry-After (or
#: the gate's pause), not for the default 1 s.
QUOTA_BACKOFF = "50ms"


def provider_for(case: Case, base_url: str) -> OpenAICompatProvider:
    """The provider a case's engine calls ``base_url`` with.

    A quota case's requests carry ``max_tokens`` (so the engine's token estimate and the
    simulator's charge agree on the completion) and run under RETRY with a short backoff; a row
    whose retries are all spent comes back NULL (fallback IGNORE) rather than failing the job,
    so that failed rows are counted, not hidden behind a failed case.
    """
    from flink_llm_udf._provider import OpenAICompatProvider

    if case.kind == QUOTA:
        return OpenAICompatProvider(
            endpoint=base_url,
            model=MODEL[case.task],
            task=_api_task(case),
            max_tokens=QUOTA_MAX_TOKENS,
            error_handling_strategy="RETRY",
            retry_backoff_base_interval=QUOTA_BACKOFF,
            retry_fallback_strategy="IGNORE",
        )
    return OpenAICompatProvider(endpoint=base_url, model=MODEL[case.task], task=_api_task(case))


def engine_settings(case: Case) -> EngineSettings:
    """The case's engine settings. Quota cases: the job-wide quota under ``QUOTA_ON``; the
    control has no limits and ignores the rate-limit headers (the 429 pause and adaptive
    concurrency stay: they are always on)."""
    from flink_llm_udf._engine_settings import EngineSettings

    if case.kind != QUOTA:
        settings = EngineSettings(
            max_concurrency=case.concurrency, embedding_rows_per_request=case.rows_per_request
        )
        if case.pack_wait_ms is None:  # the engine's default wait
            return settings
        return replace(settings, embedding_pack_wait_s=case.pack_wait_ms / 1000.0)
    if case.setup == QUOTA_ON:
        return EngineSettings(
            max_concurrency=case.concurrency,
            requests_per_minute=case.quota_rpm,
            tokens_per_minute=case.quota_tpm,
        )
    return EngineSettings(max_concurrency=case.concurrency, rate_limit_headers=False)


# --- the engine alone ------------------------------------------------------------------------
ENGINE_CPU_RUNS = 3


def _run_engine(case: Case, spec: dict[str, Any]) -> dict[str, Any]:
    from flink_llm_udf._batch import BlockingEngine

    if case.parallelism > 1:
        return _run_engine_subtasks(case, spec)
    if case.kind == ENGINE_CPU and case.cache_pass is not None:
        return _run_cache_cpu(case, spec)
    texts = [text_of(i) for i in range(1, case.rows + 1)]
    with BlockingEngine(provider_for(case, spec["base_url"]), engine_settings(case)) as engine:
        extra: dict[str, Any] = {}
        if case.kind == ENGINE_CPU:
            engine.run_batch(texts[:500])  # warm: connections open, code paths hot
        emit("submit")
        runs = []  # engine CPU: the median of three runs (CPU time varies from run to run)
        for _ in range(ENGINE_CPU_RUNS if case.kind == ENGINE_CPU else 1):
            cpu, wall = time.process_time(), time.perf_counter()
            results = engine.run_batch(texts, raise_on_failover=False)
            runs.append((time.process_time() - cpu, time.perf_counter() - wall))
        if case.kind == ENGINE_CPU:
            cpu, wall = sorted(runs)[len(runs) // 2]
            extra = {
                "run_batch_cpu_s": cpu,
                "run_batch_wall_s": wall,
                "run_batch_cpu_s_all": [round(c, 4) for c, _ in runs],
            }
    return {"rows_ok": sum(r.ok for r in results), **extra}


#: Rows each cache-cpu case runs before it measures (connections open, code paths hot).
CACHE_WARM_ROWS = 500


def _cache_spec(case: Case, spec: dict[str, Any]) -> str | None:
    """The ``cache`` setting of a cache-cpu case: None, "memory", or the parent's redis URL."""
    if spec.get("cache_error"):
        raise RuntimeError(f"case {case.name!r} has no cache to run with: {spec['cache_error']}")
    if case.cache is None:
        return None
    url = spec.get("cache_url")
    if not url:
        raise RuntimeError(f"case {case.name!r}: the parent gave no cache_url for cache {case.cache!r}")
    return str(url)


def _cpu_s_of(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 without one."""
    if pid is None:
        return 0.0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _run_cache_cpu(case: Case, spec: dict[str, Any]) -> dict[str, Any]:
    """The engine's CPU per row with the case's cache, on a miss or on a hit.

    Miss (and no cache): ``CACHE_WARM_ROWS`` rows to warm up, then ``ENGINE_CPU_RUNS`` runs of
    ``case.rows`` rows never seen before (each looked up, sent and stored). Hit: one pass over
    the rows fills the cache (misses), a pass over ``CACHE_WARM_ROWS`` of them warms the hit
    path, then every measured run goes over the same rows again: all answered by the cache.
    Reports the median run's CPU and wall time, and for each measured run the requests the
    engine sent (attempts) and the rows the cache answered; with ``cache_pid`` (the parent's
    redis-server) also that process's CPU seconds during each run (not the engine's).
    """
    from flink_llm_udf._batch import BlockingEngine
    from flink_llm_udf._results import RowResult

    settings = replace(engine_settings(case), cache=_cache_spec(case, spec))
    n, warm = case.rows, CACHE_WARM_ROWS
    pid = spec.get("cache_pid")
    hit = case.cache_pass == HIT

    def texts(first: int, count: int) -> list[str]:
        return [text_of(i) for i in range(first, first + count)]

    unmeasured = 0  # requests sent outside the measured runs

    def unmeasured_pass(engine: BlockingEngine, rows: list[str]) -> None:
        nonlocal unmeasured
        results: list[RowResult] = engine.run_batch(rows, raise_on_failover=False)
        unmeasured += sum(r.attempts for r in results)

    with BlockingEngine(provider_for(case, spec["base_url"]), settings) as engine:
        if hit:
            unmeasured_pass(engine, texts(warm + 1, n))  # fills the cache
            unmeasured_pass(engine, texts(warm + 1, warm))  # hits: the hit path warm
        else:
            unmeasured_pass(engine, texts(1, warm))
        emit("submit")
        runs, passes = [], []
        for run_index in range(ENGINE_CPU_RUNS):
            rows = texts(warm + 1 if hit else warm + 1 + run_index * n, n)
            server, cpu, wall = _cpu_s_of(pid), time.process_time(), time.perf_counter()
            results = engine.run_batch(rows, raise_on_failover=False)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            runs.append((cpu, wall, _cpu_s_of(pid) - server))
            passes.append(
                {
                    "rows_ok": sum(r.ok for r in results),
                    "requests": sum(r.attempts for r in results),
                    "cached": sum(r.cached for r in results),
                }
            )
    cpu, wall, server = sorted(runs)[len(runs) // 2]
    return {
        "rows_ok": min(p["rows_ok"] for p in passes),
        "run_batch_cpu_s": cpu,
        "run_batch_wall_s": wall,
        "run_batch_cpu_s_all": [round(c, 4) for c, _, _ in runs],
        "cache_server_cpu_s": server if pid is not None else None,
        "measured_passes": passes,
        "unmeasured_requests": unmeasured,
    }


def _run_engine_subtasks(case: Case, spec: dict[str, Any]) -> dict[str, Any]:
    """``case.parallelism`` engines at once, one thread each, as the subtasks of one job: each
    knows the number of subtasks (its share of a job-wide quota) and runs its share of the rows."""
    import threading

    from flink_llm_udf._batch import BlockingEngine
    from flink_llm_udf._results import RowResult

    n = case.parallelism
    texts = [text_of(i) for i in range(1, case.rows + 1)]
    provider, settings = provider_for(case, spec["base_url"]), engine_settings(case)
    engines = [BlockingEngine(provider, settings, subtasks=n) for _ in range(n)]
    results: list[list[RowResult]] = [[] for _ in range(n)]
    errors: list[BaseException] = []

    def subtask(index: int) -> None:
        try:
            results[index] = engines[index].run_batch(texts[index::n], raise_on_failover=False)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=subtask, args=(i,), name=f"subtask-{i}") for i in range(n)]
    try:
        emit("submit")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for engine in engines:
            engine.close()
    if errors:
        raise errors[0]
    rows = [r for part in results for r in part]
    return {"rows_ok": sum(r.ok for r in rows), "rows_seen": len(rows)}


# --- Flink jobs ------------------------------------------------------------------------------
def plumbing_conf(parallelism: int = 1) -> dict[str, str]:
    """The configuration every Flink case needs to run here, whatever its setup.

    PyFlink's DataStream side does not set python.executable for a local run: Flink would run
    ``python`` from PATH (maybe without pyflink) to locate its scripts, even in loopback mode.
    The time zone makes the latency stamps UTC.
    """
    return {
        "parallelism.default": str(parallelism),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "table.local-time-zone": "UTC",
    }


def flink_conf(case: Case, spec: dict[str, Any]) -> dict[str, str]:
    """The job configuration of a Flink case: the plumbing, plus (tuned) ``recommended_settings``
    and the run's ``--set`` options; a README case gets the plumbing alone, so that what the
    product itself applies is all it runs with."""
    from flink_llm_udf.flink._tuning import recommended_settings

    conf = plumbing_conf(case.parallelism)
    if case.setup == README:
        return conf
    conf.update(recommended_settings(case.concurrency))
    for key, value in (spec.get("flink_conf") or {}).items():
        conf[key] = per_concurrency(value, case.concurrency)
    return conf


def per_concurrency(value: str, concurrency: int) -> str:
    """``"160*C"`` becomes 160 times the case's concurrency; other values stay as they are."""
    factor, sep, name = value.partition("*")
    if sep and name.strip() == "C":
        try:
            return str(int(float(factor) * concurrency))
        except ValueError:
            pass
    return value


def _configuration(conf: dict[str, str]) -> Configuration:
    from pyflink.common import Configuration

    configuration = Configuration()
    for key, value in conf.items():
        configuration.set_string(key, value)
    return configuration


def _source_ddl(case: Case) -> str:
    rate = int(case.rows_per_second or 10_000_000)  # datagen's default rate would cap a case
    ts = ", ts TIMESTAMP_LTZ(3)" if case.kind == LATENCY else ""
    ts_opts = ", 'fields.ts.kind' = 'random', 'fields.ts.max-past' = '0 ms'" if ts else ""
    return (
        f"CREATE TEMPORARY TABLE src (id BIGINT{ts}) WITH ('connector' = 'datagen', "
        f"'fields.id.kind' = 'sequence', 'fields.id.start' = '1', "
        f"'fields.id.end' = '{case.rows}', 'rows-per-second' = '{rate}'{ts_opts})"
    )


def _run_flink(case: Case, spec: dict[str, Any]) -> dict[str, Any]:
    if case.setup == README and (case.task != CHAT or case.entry == NAIVE):
        raise ValueError(f"no README setup for case {case.name!r}: README cases are chat on our entry points")
    conf = flink_conf(case, spec)
    if case.entry in (DS_UNORDERED, DS_ORDERED):
        return _run_datastream(case, spec, conf)
    return _run_table(case, spec, conf)


def _table_function(case: Case, spec: dict[str, Any]) -> UserDefinedScalarFunctionWrapper:
    from flink_llm_udf.flink import (
        ai_complete_async_udf,
        ai_complete_udf,
        ai_embed_async_udf,
        ai_embed_udf,
    )

    from .naive import naive_complete_udf

    provider, settings = provider_for(case, spec["base_url"]), engine_settings(case)
    if case.entry == NAIVE:
        return naive_complete_udf(spec["base_url"], MODEL[CHAT])
    if case.entry == SQL_ASYNC:
        if case.task == CHAT:
            return ai_complete_async_udf(provider, settings)
        return ai_embed_async_udf(provider, settings)
    if case.entry == PANDAS:
        return ai_complete_udf(provider, settings) if case.task == CHAT else ai_embed_udf(provider, settings)
    raise ValueError(f"no table function for entry {case.entry!r}")


def _readme_table_function(case: Case, spec: dict[str, Any], t_env: TableEnvironment) -> str:
    """Register the case's function the way README.md does; return the name to call.

    Pandas UDF: ``register_functions`` (which applies the recommended settings where unset).
    Async SQL: pure SQL: ``CREATE TEMPORARY FUNCTION``, the job parameters, and the README's
    ``SET`` block (``sql_set_statements``), each ``SET`` applied as the SQL client applies it.
    """
    from flink_llm_udf.flink import register_functions
    from flink_llm_udf.flink._tuning import sql_set_statements
    from flink_llm_udf.job_parameters import job_parameters_value
    from flink_llm_udf.tools.sql_file.statements import parse_set, split_statements

    if case.entry == PANDAS:
        register_functions(t_env, provider_for(case, spec["base_url"]), settings=engine_settings(case))
        return "ai_complete"
    if case.entry == SQL_ASYNC:
        name = "ai_complete_async"
        t_env.execute_sql(f"CREATE TEMPORARY FUNCTION {name} AS 'flink_llm_udf.sql.{name}' LANGUAGE PYTHON")
        parameters = {
            "ai.endpoint": spec["base_url"],
            "ai.model": MODEL[case.task],
            "ai.max-concurrency": case.concurrency,
        }
        config = t_env.get_config()
        config.set("pipeline.global-job-parameters", job_parameters_value(parameters))
        for statement in split_statements(sql_set_statements(case.concurrency)):
            parsed = parse_set(statement.text)
            if parsed is None or parsed[1] is None or parsed[2] is None:
                raise ValueError(f"sql_set_statements gave a statement that is not a SET: {statement.text!r}")
            config.set(parsed[1], parsed[2])
        return name
    raise ValueError(f"no README table function for entry {case.entry!r}")


def _tuning_keys() -> tuple[str, ...]:
    from flink_llm_udf.flink._tuning import FLINK_DEFAULTS

    return tuple(FLINK_DEFAULTS)


def _table_settings(t_env: TableEnvironment) -> dict[str, str | None]:
    """The tuning keys as the job is submitted with them (None: Flink's default), so a record
    shows what a README case ran with, whoever set it."""
    config = t_env.get_config()
    return {key: config.get(key, None) for key in _tuning_keys()}


def _stream_settings(env: StreamExecutionEnvironment) -> dict[str, str | None]:
    """As ``_table_settings``, from a StreamExecutionEnvironment's configuration."""
    from pyflink.util.java_utils import get_j_env_configuration

    config = get_j_env_configuration(env._j_stream_execution_environment)
    return {key: config.getString(key, None) for key in _tuning_keys()}


def _run_table(case: Case, spec: dict[str, Any], conf: dict[str, str]) -> dict[str, Any]:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    settings = (
        EnvironmentSettings.new_instance()
        .in_streaming_mode()
        .with_configuration(_configuration(conf))
        .build()
    )
    t_env = TableEnvironment.create(settings)
    if case.setup == README:
        name = _readme_table_function(case, spec, t_env)
    else:
        name = "llm"
        t_env.create_temporary_function(name, _table_function(case, spec))
    t_env.execute_sql(_source_ddl(case))
    if case.kind == LATENCY:
        table = t_env.sql_query(f"SELECT {STAMP_SQL} AS ts, {name}({TEXT_SQL}) AS v FROM src")
        emit("submit", flink_settings=_table_settings(t_env))
        return _collect_latencies(table.execute().collect(), lambda row: (row[0], row[1]))
    if case.kind == QUOTA:
        table = t_env.sql_query(f"SELECT {name}({TEXT_SQL}) AS v FROM src")
        emit("submit", flink_settings=_table_settings(t_env))
        return _count_values(table.execute().collect(), lambda row: row[0])
    value_type = "STRING" if case.task == CHAT else "ARRAY<FLOAT>"
    t_env.execute_sql(f"CREATE TEMPORARY TABLE sink (v {value_type}) WITH ('connector' = 'blackhole')")
    emit("submit", flink_settings=_table_settings(t_env))
    t_env.execute_sql(f"INSERT INTO sink SELECT {name}({TEXT_SQL}) FROM src").wait()
    return {}


def _run_datastream(case: Case, spec: dict[str, Any], conf: dict[str, str]) -> dict[str, Any]:
    from pyflink.common import Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.datastream.connectors import Sink
    from pyflink.java_gateway import get_gateway

    from flink_llm_udf.flink import LLMAsyncFunction

    env = StreamExecutionEnvironment.get_execution_environment(_configuration(conf))
    env.set_parallelism(case.parallelism)
    provider, settings = provider_for(case, spec["base_url"]), engine_settings(case)
    if case.kind == LATENCY:
        from pyflink.table import StreamTableEnvironment

        t_env = StreamTableEnvironment.create(env)
        t_env.execute_sql(_source_ddl(case))
        rows = t_env.to_data_stream(t_env.sql_query(f"SELECT id, {STAMP_SQL} AS ts FROM src"))
        function = LLMAsyncFunction(provider, settings, text_of=_row_text, key_of=_row_stamp)
        out = _apply_llm(case, spec, rows, function)
        emit("submit", flink_settings=_stream_settings(env))
        return _collect_latencies(out.execute_and_collect(), lambda row: (row[0], row[2]))
    texts = env.from_collection([text_of(i) for i in range(1, case.rows + 1)], type_info=Types.STRING())
    out = _apply_llm(case, spec, texts, LLMAsyncFunction(provider, settings))
    if case.kind == QUOTA:  # the output row's third field is the value (None: the row failed)
        emit("submit", flink_settings=_stream_settings(env))
        return _count_values(out.execute_and_collect(), lambda row: row[2])
    discard = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
    out.sink_to(Sink(discard))
    emit("submit", flink_settings=_stream_settings(env))
    env.execute(f"bench {case.name}")
    return {}


def _apply_llm(
    case: Case, spec: dict[str, Any], stream: DataStream, function: LLMAsyncFunction
) -> DataStream:
    """``apply_llm`` as the case calls it: README cases exactly as README.md does (no capacity);
    tuned ones with the run's ``--ds-capacity`` and the case's task."""
    from flink_llm_udf.flink import apply_llm

    ordered = case.entry == DS_ORDERED
    if case.setup == README:
        return apply_llm(stream, function, ordered=ordered)
    capacity = spec.get("ds_capacity")
    capacity = int(per_concurrency(capacity, case.concurrency)) if capacity else None
    return apply_llm(stream, function, ordered=ordered, capacity=capacity, task=_api_task(case))


def _row_text(row: Row) -> str:
    return text_of(row[0])


def _row_stamp(row: Row) -> str:
    return row[1]


def _epoch_s(stamp: str) -> float:
    """Seconds since the epoch of a ``STAMP_SQL`` string (UTC)."""
    return dt.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=dt.timezone.utc).timestamp()


def _collect_latencies(
    iterator: AbstractContextManager[Iterator[Row]], stamp_and_value: Callable[[Row], tuple[str, Any]]
) -> dict[str, Any]:
    """Arrival time minus generation stamp of every collected row; counts rows without a value."""
    latencies_ms: list[float] = []
    rows_ok = 0
    with iterator as rows:
        for row in rows:
            arrived = time.time()
            stamp, value = stamp_and_value(row)
            latencies_ms.append(1000.0 * (arrived - _epoch_s(stamp)))
            rows_ok += value is not None
    return {"latencies_ms": latencies_ms, "rows_ok": rows_ok}


def _count_values(
    iterator: AbstractContextManager[Iterator[Row]], value_of: Callable[[Row], Any]
) -> dict[str, Any]:
    """Rows collected and rows with a value (a failed row comes back NULL under IGNORE)."""
    rows_seen = rows_ok = 0
    with iterator as rows:
        for row in rows:
            rows_seen += 1
            rows_ok += value_of(row) is not None
    return {"rows_ok": rows_ok, "rows_seen": rows_seen}


def _summary(exc: BaseException) -> str:
    """First line of the error plus the root cause of a Java exception (its last "Caused by")."""
    text = str(exc)
    causes = [line.strip() for line in text.splitlines() if line.strip().startswith("Caused by:")]
    head = text.strip().splitlines()[0] if text.strip() else ""
    return (f"{type(exc).__name__}: {head}" + (f" ... {causes[-1]}" if causes else ""))[:1000]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    try:
        fields = run(spec)
    except BaseException as exc:
        traceback.print_exc()  # the whole story goes to the case's log
        emit("error", message=_summary(exc))
        return 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    emit("done", cpu_s=usage.ru_utime + usage.ru_stime, maxrss_kb=usage.ru_maxrss, pid=os.getpid(), **fields)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What one bench run measures: a list of ``Case`` values, built by pure functions.

A case is one child process (one Flink job, or one engine run outside Flink). Row counts are
chosen so a case spends roughly ``target_s`` seconds in steady state at the physical limit
``C / L`` (Little's law), with a floor so the 10 %-90 % window still holds enough samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

# Entry points, in the order they are run and reported.
PANDAS = "pandas_udf"  # ai_complete_udf / ai_embed_udf (vectorized)
DS_UNORDERED = "datastream_unordered"  # LLMAsyncFunction via apply_llm(ordered=False)
DS_ORDERED = "datastream_ordered"  # LLMAsyncFunction via apply_llm(ordered=True)
SQL_ASYNC = "sql_async"  # ai_complete_async_udf (AsyncScalarFunction)
NAIVE = "naive_udf"  # one blocking urllib request per row (the baseline)
ENGINE = "engine"  # BlockingEngine.run_batch, no Flink
ENTRY_POINTS = (PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC, NAIVE, ENGINE)
FLINK_ENTRY_POINTS = frozenset({PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC, NAIVE})

# Kinds of measurement.
THROUGHPUT = "throughput"  # rows/s in steady state, CPU per row, peak memory
LATENCY = "latency"  # end-to-end latency per row at a low, rate-limited input rate
ENGINE_CPU = "engine_cpu"  # process CPU around run_batch, the endpoint answering at once

# What a case talks to.
SIMULATOR = "simulator"  # the simulator (every case but one)
REPLAY = "replay"  # one recorded simulator reply, replayed: never the bottleneck (replay.py)

CHAT = "chat"
EMBEDDINGS = "embeddings"

# How a Flink case's job is configured.
TUNED = "tuned"  # recommended_settings(C) (and any --set) in the job configuration
README = "readme"  # the job built as README.md writes it: nothing of recommended_settings added by the bench
#: The entry points a full run also measures as the README writes them (throughput and latency).
README_ENTRY_POINTS = (PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC)


@dataclass(frozen=True, slots=True)
class Case:
    """One measurement. ``name`` is unique within a run and names its log file."""

    name: str
    kind: str
    entry: str
    concurrency: int = 64
    rows: int = 1_000
    task: str = CHAT
    rows_per_request: int = 1
    tail_fraction: float = 0.0
    tail_multiplier: float = 10.0
    rows_per_second: float | None = None  # rate-limited source (latency cases)
    latency_ms: float | None = None  # simulator latency for this case (None: the run's L)
    endpoint: str = SIMULATOR
    setup: str = TUNED  # TUNED or README (Flink cases; the engine and the baseline are always TUNED)

    def to_dict(self) -> dict:
        return asdict(self)


def rows_for(
    concurrency: int,
    latency_ms: float,
    *,
    target_s: float,
    minimum: int,
    rows_per_request: int = 1,
    maximum: int = 60_000,
) -> int:
    """Rows that keep an entry at the limit ``C / L`` busy for about ``target_s`` seconds."""
    limit = concurrency * rows_per_request * 1000.0 / latency_ms
    return int(max(minimum, min(maximum, round(limit * target_s, -2))))


#: Arrow batches a Pandas UDF case spans: the steady window (10-90 % of the requests) must hold
#: several batch ends, each of which waits for the batch's slowest row; with fewer rows than
#: one batch the window would see no batch end at all and overstate throughput.
PANDAS_BATCHES = 6
PANDAS_BATCHES_QUICK = 2


def pandas_rows(
    rows: int, concurrency: int, quick: bool, batch_size: Callable[[int], int] | None = None
) -> int:
    """Rows for a Pandas UDF case: at least ``PANDAS_BATCHES`` Arrow batches.

    ``batch_size(C)`` is the Arrow batch size the case runs with (default: the shipped one).
    """
    from flink_llm_udf.flink._tuning import pandas_batch_size

    batches = PANDAS_BATCHES_QUICK if quick else PANDAS_BATCHES
    return max(rows, batches * (batch_size or pandas_batch_size)(concurrency))


def build_plan(
    *,
    quick: bool,
    latency_ms: float = 100.0,
    concurrencies: tuple[int, ...] | None = None,
    entries: tuple[str, ...] | None = None,
    batch_size: Callable[[int], int] | None = None,
) -> list[Case]:
    """The cases of a full run (C = 16, 64, 256) or a ``quick`` one (C = 64, fewer rows).

    Every entry point appears at least once in both. The baseline runs once (it has no
    concurrency); the embeddings, tail and latency cases run at one concurrency. In a full run
    each plain throughput case and each latency case of ``README_ENTRY_POINTS`` is followed by
    its ``README`` twin (``pandas_udf-readme-c64``): the same job built as README.md writes it,
    so the run shows what users get beside what the shipped settings reach.
    """
    levels = concurrencies or ((64,) if quick else (16, 64, 256))
    target_s, minimum = (4.0, 1_000) if quick else (10.0, 2_000)
    wanted = set(entries or ENTRY_POINTS)
    cases: list[Case] = []

    def add(case: Case, *, twin: bool = False) -> None:
        if case.entry in wanted:
            cases.append(case)
            if twin and not quick and case.entry in README_ENTRY_POINTS:
                cases.append(readme_twin(case))

    add(Case(f"{NAIVE}", THROUGHPUT, NAIVE, concurrency=1, rows=30 if quick else 60))
    for c in levels:
        rows = rows_for(c, latency_ms, target_s=target_s, minimum=minimum)
        for entry in (PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC, ENGINE):
            add(
                Case(
                    f"{entry}-c{c}",
                    THROUGHPUT,
                    entry,
                    concurrency=c,
                    rows=pandas_rows(rows, c, quick, batch_size) if entry == PANDAS else rows,
                ),
                twin=True,
            )

    mid = 64 if 64 in levels else levels[len(levels) // 2]
    # Embeddings with and without multi-row requests: the engine both ways; the Pandas UDF (the
    # batch path, where grouping applies) both ways in a full run, grouped only in a quick one.
    group = 16
    for entry, ks in ((ENGINE, (1, group)), (PANDAS, (group,) if quick else (1, group))):
        for k in ks:
            rows = rows_for(
                mid,
                latency_ms,
                target_s=target_s,
                minimum=minimum,
                rows_per_request=k,
                maximum=20_000 if quick else 60_000,
            )
            add(
                Case(
                    f"{entry}-embed-k{k}-c{mid}",
                    THROUGHPUT,
                    entry,
                    concurrency=mid,
                    rows=rows,
                    task=EMBEDDINGS,
                    rows_per_request=k,
                )
            )

    if not quick:
        # A 1 % tail of 10x slower rows: what it costs the batch barrier (Pandas) and ordering.
        for c in tuple(x for x in levels if x >= 64) or (mid,):
            rows = rows_for(c, latency_ms, target_s=target_s, minimum=minimum)
            for entry in (PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC):
                add(
                    Case(
                        f"{entry}-tail-c{c}",
                        THROUGHPUT,
                        entry,
                        concurrency=c,
                        rows=pandas_rows(rows, c, quick, batch_size) if entry == PANDAS else rows,
                        tail_fraction=0.01,
                    )
                )

    # End-to-end latency at a low input rate (a rate-limited datagen source, collected). A full
    # run's 200 rows make p99 the third-highest latency rather than the highest.
    rate = 5.0
    latency_entries = (PANDAS,) if quick else (PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC)
    for entry in latency_entries:
        add(
            Case(
                f"{entry}-latency",
                LATENCY,
                entry,
                concurrency=mid,
                rows=int(rate * (5 if quick else 40)),
                rows_per_second=rate,
            ),
            twin=True,
        )

    # The engine's CPU per row with an endpoint that answers at once: the replay endpoint (the
    # engine is the bottleneck: its own CPU), and the 0 ms simulator (the simulator is the
    # bottleneck: the engine also pays a wake-up per reply).
    for name, endpoint in (("engine-cpu", REPLAY), ("engine-cpu-simulator", SIMULATOR)):
        add(
            Case(
                name,
                ENGINE_CPU,
                ENGINE,
                concurrency=64,
                rows=2_000 if quick else 10_000,
                latency_ms=0.0,
                endpoint=endpoint,
            )
        )
    return cases


def readme_twin(case: Case) -> Case:
    """``case`` as README.md writes the job: same rows and plumbing, ``-readme`` in its name."""
    head, sep, tail = case.name.partition("-")
    return replace(case, name=f"{head}-{README}{sep}{tail}", setup=README)


def with_rows_scaled(cases: list[Case], factor: float) -> list[Case]:
    """The same plan with every throughput case's row count scaled (at least 10 rows)."""
    return [replace(c, rows=max(10, int(c.rows * factor))) if c.kind == THROUGHPUT else c for c in cases]

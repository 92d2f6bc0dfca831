"""What one bench run measures: a list of ``Case`` values, built by pure functions.

A case is one child process (one Flink job, or one engine run outside Flink). Row counts are
chosen so a case spends roughly ``target_s`` seconds in steady state at the physical limit
``C / L`` (Little's law), with a floor so the 10 %-90 % window still holds enough samples.

Quota cases (``QUOTA``, full runs only) are the exception: the simulator enforces a hosted API's
quota, scaled to a short "minute" (``QUOTA_WINDOW_S``), and the limit is the quota's rate, not
``C / L``; each entry point runs with the quota given to the job (``QUOTA_ON``) and without
(``QUOTA_OFF``, the control), so the gain of the quota gate is a measured ratio.

The pay-once cases (full runs; ``--only embed-pack`` / ``--only cache-cpu`` run them alone):
``embed-pack`` runs the async row paths on embeddings one row per request and packed
(``EMBED_PACK_K`` rows per request), the same rows, alternating, ``EMBED_PACK_REPEATS`` times;
``cache-cpu`` measures the engine's CPU per row as ``engine-cpu`` does, without a cache and with
the memory or Redis cache on a miss (unique rows) and on a hit (a second pass over the same rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

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
QUOTA = "quota"  # rows/s, 429s and retries against a simulator enforcing a hosted API's quota

# What a case talks to.
SIMULATOR = "simulator"  # the simulator (every case but one)
REPLAY = "replay"  # one recorded simulator reply, replayed: never the bottleneck (replay.py)

CHAT = "chat"
EMBEDDINGS = "embeddings"

# How a Flink case's job is configured.
TUNED = "tuned"  # recommended_settings(C) (and any --set) in the job configuration
README = "readme"  # the job built as README.md writes it: nothing of recommended_settings added by the bench
QUOTA_ON = "quota"  # tuned, and the job given the quota: EngineSettings(requests_per_minute=..., ...)
QUOTA_OFF = "quota-off"  # tuned, no limits and no calibration from the headers (the control)
#: The entry points a full run also measures as the README writes them (throughput and latency).
README_ENTRY_POINTS = (PANDAS, DS_UNORDERED, DS_ORDERED, SQL_ASYNC)

# --- the quota cases (issue 12) ---------------------------------------------------------------
#: The entry points a full run measures against a quota, in order (each with both setups).
QUOTA_ENTRY_POINTS = (PANDAS, SQL_ASYNC, DS_UNORDERED, ENGINE)
#: The hosted API's quota, job-wide: requests and tokens per minute.
QUOTA_RPM = 600
QUOTA_TPM = 60_000
#: The simulator's "minute", scaled down: it holds QUOTA_RPM * w / 60 requests (60 at 6 s),
#: the same rate, so the control exhausts it within a second and then runs at the quota's rate.
QUOTA_WINDOW_S = 6.0
#: ``max_tokens`` of every request, and the completion tokens the simulator charges without it:
#: the engine's estimate and the simulator's charge then agree on the completion.
QUOTA_MAX_TOKENS = 16
#: Rows of a quota case: about 50 s at the quota's 10 rows/s (40 s in the steady window).
QUOTA_ROWS = 500
QUOTA_LATENCY_MS = 100.0  # the simulator's latency in quota cases, whatever the run's L
QUOTA_PARALLELISM = 2
QUOTA_CONCURRENCY = 64

# --- paying once: packed embeddings on the row path, the result cache (issue "Pay once") -------
EMBED_PACK = "embed-pack"
#: The async row paths whose embeddings the engine packs (``Packer``), in the order they run.
EMBED_PACK_ENTRY_POINTS = (SQL_ASYNC, DS_UNORDERED)
#: Rows per request when packed (``embedding_rows_per_request``), against one.
EMBED_PACK_K = 16
#: How long a row waits for company (``embedding_pack_wait_s``), in ms.
EMBED_PACK_WAIT_MS = 5.0
#: Each pair (one row per request, packed) runs this many times, pairs alternating.
EMBED_PACK_REPEATS = 3
#: Rows of every embed-pack case (the same for both): about 19 s at the unpacked limit at
#: C = 64, L = 100 ms, and still a few seconds of steady state for the packed case.
EMBED_PACK_ROWS = 12_000
CACHE_CPU = "cache-cpu"
MEMORY = "memory"
REDIS = "redis"  # a redis-server the bench starts on 127.0.0.1 (redis_server.py)
MISS = "miss"  # every measured row unique: each is looked up, sent, and stored
HIT = "hit"  # the measured rows were answered (and stored) by an earlier pass: no request
#: The cache-cpu cases, (cache, pass) in the order they run: no cache first, the baseline.
CACHE_CPU_VARIANTS: tuple[tuple[str | None, str], ...] = (
    (None, MISS),
    (MEMORY, MISS),
    (MEMORY, HIT),
    (REDIS, MISS),
    (REDIS, HIT),
)
#: Rounds of the cache-cpu cases (each round runs every variant once, in order).
CACHE_CPU_REPEATS = 3


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
    parallelism: int = 1  # Flink parallelism; the engine runs this many engines as subtasks
    # The endpoint's quota (job-wide, per minute; QUOTA cases): the simulator enforces it, and
    # under QUOTA_ON the job is given it too. ``quota_window_s`` is the simulator's "minute".
    quota_rpm: int | None = None
    quota_tpm: int | None = None
    quota_window_s: float = 60.0
    # Paying once. ``pack_wait_ms``: the engine's ``embedding_pack_wait_s`` in ms (None: its
    # default). ``cache``: None, MEMORY or REDIS; ``cache_pass``: MISS or HIT in a cache-cpu
    # case (None in every other case).
    pack_wait_ms: float | None = None
    cache: str | None = None
    cache_pass: str | None = None
    repeat: int = 0  # the round of a case run several times, alternating with others (0: once)

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

    if not quick:  # the pay-once cases: what packing and the cache buy, measured side by side
        for case in embed_pack_cases(mid):
            add(case)
        for case in cache_cpu_cases():
            add(case)

    if not quick:  # a quota case lasts a minute whatever the machine: not in the quick run
        for entry in QUOTA_ENTRY_POINTS:
            for case in quota_cases(entry):
                add(case)
    return cases


def embed_pack_cases(concurrency: int = 64, repeats: int = EMBED_PACK_REPEATS) -> list[Case]:
    """Embeddings on the async row paths, one row per request and ``EMBED_PACK_K`` per request.

    The same rows each time; each entry point's pair (``k1`` then ``k16``) runs right after the
    other and the pairs alternate over ``repeats`` rounds (``-r1``, ``-r2``...), so a ratio is
    taken between runs that saw the same conditions.
    """
    cases = []
    for repeat in range(1, repeats + 1):
        for entry in EMBED_PACK_ENTRY_POINTS:
            for k in (1, EMBED_PACK_K):
                cases.append(
                    Case(
                        f"{entry}-{EMBED_PACK}-k{k}-c{concurrency}-r{repeat}",
                        THROUGHPUT,
                        entry,
                        concurrency=concurrency,
                        rows=EMBED_PACK_ROWS,
                        task=EMBEDDINGS,
                        rows_per_request=k,
                        pack_wait_ms=EMBED_PACK_WAIT_MS,
                        repeat=repeat,
                    )
                )
    return cases


def cache_cpu_cases(rows: int = 10_000, repeats: int = CACHE_CPU_REPEATS) -> list[Case]:
    """The engine's CPU per row as ``engine-cpu`` measures it (replay endpoint, C = 64), without
    a cache and with each cache on a miss and on a hit (``cache-cpu-none-r1``,
    ``cache-cpu-memory-miss-r1``, ``cache-cpu-memory-hit-r1``, ``cache-cpu-redis-miss-r1``...),
    every variant once per round, ``repeats`` rounds: a variant's cost over no cache is taken
    within a round."""
    return [
        Case(
            f"{CACHE_CPU}-{cache or 'none'}" + ("" if cache is None else f"-{cache_pass}") + f"-r{repeat}",
            ENGINE_CPU,
            ENGINE,
            concurrency=64,
            rows=rows,
            latency_ms=0.0,
            endpoint=REPLAY,
            cache=cache,
            cache_pass=cache_pass,
            repeat=repeat,
        )
        for repeat in range(1, repeats + 1)
        for cache, cache_pass in CACHE_CPU_VARIANTS
    ]


def quota_cases(entry: str) -> tuple[Case, Case]:
    """``entry`` against the quota: given the limits (``NAME-quota``), then the control
    (``NAME-quota-off``), one right after the other so both see the same conditions."""
    on = Case(
        f"{entry}-{QUOTA_ON}",
        QUOTA,
        entry,
        concurrency=QUOTA_CONCURRENCY,
        rows=QUOTA_ROWS,
        latency_ms=QUOTA_LATENCY_MS,
        setup=QUOTA_ON,
        parallelism=QUOTA_PARALLELISM,
        quota_rpm=QUOTA_RPM,
        quota_tpm=QUOTA_TPM,
        quota_window_s=QUOTA_WINDOW_S,
    )
    return on, replace(on, name=f"{entry}-{QUOTA_OFF}", setup=QUOTA_OFF)


def quota_rows_per_s(case: Case, tokens_per_request: float | None = None) -> float | None:
    """Rows per second the case's quota allows (one row per request), or None without a quota.

    The requests-per-minute quota's rate, or the tokens-per-minute one's where requests of
    ``tokens_per_request`` (as the simulator charged them) make it the tighter of the two.
    """
    rates = [] if case.quota_rpm is None else [case.quota_rpm / 60.0]
    if case.quota_tpm is not None and tokens_per_request:
        rates.append(case.quota_tpm / 60.0 / tokens_per_request)
    return min(rates) if rates else None


def simulator_settings(case: Case, latency_ms: float) -> dict[str, Any]:
    """The simulator's runtime options for ``case`` (applied before it, then the stats reset).

    A quota case's simulator holds the quota scaled to its window (``quota_rpm * w / 60``
    requests per ``w`` seconds: the same rate); every other case runs with no quota at all.
    """
    settings: dict[str, Any] = {
        "latency_ms": latency_ms,
        "tail_fraction": case.tail_fraction,
        "tail_multiplier": case.tail_multiplier,
        "quota_rpm": None,
        "quota_tpm": None,
        "quota_window_s": 60.0,
    }
    if case.kind == QUOTA:
        scale = case.quota_window_s / 60.0
        settings.update(
            quota_rpm=None if case.quota_rpm is None else max(1, round(case.quota_rpm * scale)),
            quota_tpm=None if case.quota_tpm is None else max(1, round(case.quota_tpm * scale)),
            quota_window_s=case.quota_window_s,
            quota_default_max_tokens=QUOTA_MAX_TOKENS,
        )
    return settings


def readme_twin(case: Case) -> Case:
    """``case`` as README.md writes the job: same rows and plumbing, ``-readme`` in its name."""
    head, sep, tail = case.name.partition("-")
    return replace(case, name=f"{head}-{README}{sep}{tail}", setup=README)


def with_rows_scaled(cases: list[Case], factor: float) -> list[Case]:
    """The same plan with every throughput case's row count scaled (at least 10 rows)."""
    return [replace(c, rows=max(10, int(c.rows * factor))) if c.kind == THROUGHPUT else c for c in cases]

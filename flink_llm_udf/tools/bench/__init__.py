"""``flink-llm bench``: every entry point against the simulator, in steady state.

``flink-llm bench --quick --out DIR`` (or ``python -m flink_llm_udf.tools.bench``) starts the
simulator at a fixed latency, runs each case in its own child process (a Flink mini-cluster
job, or the engine alone) while sampling the simulator's request counter and the child's CPU
and memory from outside, and writes ``bench.json``, ``bench.png`` and ``bench.txt``.

Modules: ``plan`` (which cases), ``child`` (runs one case), ``naive`` (the baseline UDF),
``measure`` (runs and samples a child), ``stats`` (steady-state arithmetic), ``report``
(records, targets, table), ``pay_once`` (the packed-embeddings and result-cache summaries),
``replay`` and ``redis_server`` (the endpoints and the Redis some cases need), ``plot`` (the
PNG), ``cli`` (the command).
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the bench with command-line ``argv``; 0 when every case succeeded."""
    from .cli import main as run  # imported here so `-m flink_llm_udf.tools.bench.child` stays light

    return run(argv)

"""The bench's PNG: rows/s against concurrency, one line per entry point, the limit drawn.

An entry point measured as README.md writes it too gets a second, dashed line in its colour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plan import ENTRY_POINTS, NAIVE, README, THROUGHPUT


def plot(records: list[dict[str, Any]], latency_ms: float, path: Path, title: str = "") -> Path:
    """Write the plot of the plain chat throughput records (no tail, one row per request)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    plain = [
        r
        for r in records
        if r["ok"]
        and r["kind"] == THROUGHPUT
        and r["task"] == "chat"
        and r["tail_fraction"] == 0
        and r["rows_per_request"] == 1
    ]
    levels = sorted({r["concurrency"] for r in plain if r["entry"] != NAIVE}) or [64]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    span = [min(levels) / 1.5, max(levels) * 1.5]
    ax.plot(
        span,
        [c * 1000.0 / latency_ms for c in span],
        "k--",
        linewidth=1,
        label=f"limit C / L (L = {latency_ms:g} ms)",
    )
    markers = iter("osD^vP")  # distinct markers: entries often sit on the same point
    for entry in ENTRY_POINTS:
        mine = [r for r in plain if r["entry"] == entry]
        points = sorted((r["concurrency"], r["rows_per_s"]) for r in mine if r.get("setup") != README)
        readme = sorted((r["concurrency"], r["rows_per_s"]) for r in mine if r.get("setup") == README)
        if not points:
            continue
        if entry == NAIVE:  # no concurrency: one rate at every level
            ax.plot(span, [points[0][1]] * 2, ":", color="grey", label="naive baseline (1 request at a time)")
            continue
        xs, ys = zip(*points, strict=True)
        marker = next(markers)
        (line,) = ax.plot(xs, ys, marker=marker, linestyle="-", markerfacecolor="none", label=entry)
        if readme:
            xs, ys = zip(*readme, strict=True)
            ax.plot(
                xs, ys, marker=marker, linestyle="--", color=line.get_color(), label=f"{entry}, as README"
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("max concurrency C (requests in flight per subtask)")
    ax.set_ylabel("rows/s, steady state")
    ax.set_title(title or "flink-llm bench: throughput at parallelism 1")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path

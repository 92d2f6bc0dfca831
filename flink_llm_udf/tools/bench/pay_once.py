"""The pay-once cases in the report: packed embeddings against one row per request, and the cache.

``embed-pack`` records are throughput records (rows/s in steady state, the simulator's request
count); each packed case is paired with the one-row-per-request case of the same entry point and
round, and the ratio of their rows/s is taken pair by pair (the median over the rounds is the
figure to quote). ``cache-cpu`` records are engine CPU records with what each measured pass sent
and what the cache answered; a hit pass must send no request at all (``cache_problem``).
"""

from __future__ import annotations

import statistics
from typing import Any

from .plan import EMBED_PACK, ENGINE_CPU, HIT, THROUGHPUT, Case


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --- the cache ------------------------------------------------------------------------------
def cache_fields(case: Case, done: dict[str, Any], endpoint_requests: int) -> dict[str, Any]:
    """What a cache-cpu case adds to its engine CPU record.

    ``requests_per_pass`` / ``cached_per_pass``: the requests the engine sent (attempts) and the
    rows the cache answered in each measured run; ``endpoint_requests``: every request the
    endpoint got during the case, warm-up and fill passes included (``unmeasured_requests`` of
    them were sent outside the measured runs); ``cache_server_cpu_us_per_row``: the
    redis-server's CPU in the median run, per row (not counted in ``cpu_us_per_row``).
    """
    passes = done.get("measured_passes") or []
    server = done.get("cache_server_cpu_s")
    return {
        "requests_per_pass": [int(p["requests"]) for p in passes],
        "cached_per_pass": [int(p["cached"]) for p in passes],
        "unmeasured_requests": int(done.get("unmeasured_requests", 0)),
        "endpoint_requests": endpoint_requests,
        "cache_server_cpu_us_per_row": None if server is None else _round(1e6 * server / case.rows, 1),
    }


def cache_problem(case: Case, fields: dict[str, Any]) -> str | None:
    """Why a cache-cpu record is wrong, or None: a hit pass sent a request or a row missed the
    cache, or the endpoint got requests beyond those sent outside the measured runs; a miss pass
    had a row answered by the cache."""
    sent, cached = fields["requests_per_pass"], fields["cached_per_pass"]
    if not sent:
        return "no measured pass reported"
    if case.cache_pass == HIT:
        if any(sent) or any(n != case.rows for n in cached):
            return (
                f"a hit pass was not free: requests per pass {sent}, "
                f"rows from the cache {cached} of {case.rows}"
            )
        extra = fields["endpoint_requests"] - fields["unmeasured_requests"]
        if extra:
            return f"the endpoint got {extra} request(s) during the hit passes (expected 0)"
    elif any(cached):
        return f"a miss pass had rows answered by the cache: {cached}"
    return None


def cache_cpu_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == ENGINE_CPU and r.get("cache_pass") is not None]


def _median(values: list[float]) -> float | None:
    return _round(statistics.median(values), 2) if values else None


def cache_cpu_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cache variant (no cache, memory miss, memory hit...), in the order run: each round's
    CPU per row, rows/s and CPU over the no-cache case of the same round (``over_none_us``: the
    cache's own cost per row, on a miss its overhead), the medians over the rounds, and the
    requests sent and rows answered by the cache over every measured pass."""
    cases = cache_cpu_records(records)
    none = {r.get("repeat"): r["cpu_us_per_row"] for r in cases if r["ok"] and r.get("cache") is None}
    variants: dict[tuple[Any, Any], dict[str, Any]] = {}
    for r in cases:
        variant = variants.setdefault(
            (r.get("cache"), r["cache_pass"]),
            {
                "variant": str(r["name"]).removesuffix(f"-r{r.get('repeat')}"),
                "cache": r.get("cache"),
                "cache_pass": r["cache_pass"],
                "rows": r["rows"],
                "rounds": [],
            },
        )
        one: dict[str, Any] = {"name": r["name"], "ok": r["ok"], "error": r["error"]}
        if r["ok"]:
            base = none.get(r.get("repeat"))
            one.update(
                {
                    key: r.get(key)
                    for key in (
                        "cpu_us_per_row",
                        "cpu_us_per_row_runs",
                        "rows_per_s",
                        "requests_per_pass",
                        "cached_per_pass",
                        "cache_server_cpu_us_per_row",
                    )
                },
                over_none_us=None if base is None else _round(r["cpu_us_per_row"] - base, 1),
            )
        variant["rounds"].append(one)
    for variant in variants.values():
        ok = [one for one in variant["rounds"] if one["ok"]]

        def values(key: str, rounds: list[dict[str, Any]] = ok) -> list[float]:
            return [one[key] for one in rounds if one.get(key) is not None]

        variant["median"] = {
            key: _median(values(key))
            for key in ("cpu_us_per_row", "over_none_us", "rows_per_s", "cache_server_cpu_us_per_row")
        }
        variant["requests_measured"] = sum(sum(one["requests_per_pass"]) for one in ok)
        variant["rows_from_cache"] = sum(sum(one["cached_per_pass"]) for one in ok)
        variant["rows_measured"] = sum(len(one["requests_per_pass"]) * variant["rows"] for one in ok)
        variant["failed_rounds"] = len(variant["rounds"]) - len(ok)
    return list(variants.values())


def cache_cpu_table(records: list[dict[str, Any]]) -> str:
    """The cache-cpu variants as a text table (medians over the rounds); "" if none ran."""
    summary = cache_cpu_summary(records)
    if not summary:
        return ""
    first = cache_cpu_records(records)[0]
    lines = [
        f"Result cache: engine CPU per row (replay endpoint, C = {first['concurrency']}, "
        f"{first['rows']:,} rows per run, each case the median of its runs), the median over "
        f"the rounds; '- none': over no cache in the same round; redis-server CPU beside, not in it",
        f"{'variant':<22} {'us/row':>7} {'- none':>7} {'rounds (us/row)':<20} {'rows/s':>8} "
        f"{'requests':>9} {'from cache':>21} {'redis us/row':>12}",
    ]
    for v in summary:
        m = v["median"]
        rounds = ", ".join(f"{one['cpu_us_per_row']:.1f}" if one["ok"] else "FAILED" for one in v["rounds"])
        if m["cpu_us_per_row"] is None:
            error = next(one["error"] for one in v["rounds"])
            lines.append(f"{v['variant']:<22} FAILED: {error}")
            continue

        def cell(value: float | None, spec: str) -> str:
            return "" if value is None else format(value, spec)

        cached = f"{v['rows_from_cache']:,} of {v['rows_measured']:,}"
        lines.append(
            f"{v['variant']:<22} {m['cpu_us_per_row']:7.1f} {cell(m['over_none_us'], '+.1f'):>7} "
            f"{rounds:<20} {cell(m['rows_per_s'], '.0f'):>8} {v['requests_measured']:9,d} "
            f"{cached:>21} "
            f"{cell(m['cache_server_cpu_us_per_row'], '.1f'):>12}"
        )
    return "\n".join(lines)


# --- packed embeddings ----------------------------------------------------------------------
def _side(r: dict[str, Any]) -> dict[str, Any]:
    if not r["ok"]:
        return {"name": r["name"], "ok": False, "error": r["error"]}
    requests = r.get("requests") or 0
    return {
        "name": r["name"],
        "ok": True,
        "rows_per_s": r["rows_per_s"],
        "ratio_to_limit": r["ratio_to_limit"],
        "requests": requests,
        "rows_per_request": _round(r["rows"] / requests, 2) if requests else None,
        "cpu_us_per_row_python": (r.get("cpu_us_per_row") or {}).get("python"),
    }


def packed_over_single(single: float | None, packed: float | None) -> float | None:
    """Packed rows/s over one-row-per-request rows/s; None if either is missing or zero."""
    if not single or packed is None:
        return None
    return packed / single


def embed_pack_summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per entry point: each round's pair (one row per request, packed) and their ratio, and the
    median of each over the rounds. A pair with a failed side has no ratio."""
    cases = [r for r in records if r["kind"] == THROUGHPUT and EMBED_PACK in str(r["name"])]
    pairs: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for r in cases:
        pairs.setdefault((r["entry"], r.get("repeat", 0)), {})[int(r["rows_per_request"])] = r
    entries: dict[str, dict[str, Any]] = {}
    for (_, repeat), sides in pairs.items():
        single, packed = sides.get(1), next((v for k, v in sides.items() if k > 1), None)
        any_side = single or packed
        assert any_side is not None  # every key came from a record
        entry = entries.setdefault(
            any_side["entry"],
            {
                "entry": any_side["entry"],
                "concurrency": any_side["concurrency"],
                "rows": any_side["rows"],
                "latency_ms": any_side["latency_ms"],
                "rows_per_request": None if packed is None else packed["rows_per_request"],
                "pack_wait_ms": any_side.get("pack_wait_ms"),
                "pairs": [],
            },
        )
        one = None if single is None else _side(single)
        many = None if packed is None else _side(packed)
        value = None
        if one is not None and many is not None and one["ok"] and many["ok"]:
            value = packed_over_single(one["rows_per_s"], many["rows_per_s"])
        entry["pairs"].append({"repeat": repeat, "single": one, "packed": many, "ratio": _round(value, 2)})
    for entry in entries.values():
        entry["median"] = _medians(entry["pairs"])
    return list(entries.values())


def _medians(pairs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median rows/s of each side and the median of the pair ratios (over pairs with one)."""
    median = _median

    def rates(side: str) -> list[float]:
        return [p[side]["rows_per_s"] for p in pairs if p[side] is not None and p[side]["ok"]]

    return {
        "single_rows_per_s": median(rates("single")),
        "packed_rows_per_s": median(rates("packed")),
        "ratio": median([p["ratio"] for p in pairs if p["ratio"] is not None]),
    }


def _cells(side: dict[str, Any] | None) -> str:
    if side is None:
        return f"{'(not run)':<33}"
    if not side["ok"]:
        return f"{'FAILED: ' + str(side['error']):<33.33}"
    return (
        f"{side['rows_per_s']:8.1f} ({side['ratio_to_limit']:.2f}) {side['requests']:6d} "
        f"{side['rows_per_request'] or 0:5.1f} {side['cpu_us_per_row_python'] or 0:4.0f}"
    )


def embed_pack_table(records: list[dict[str, Any]]) -> str:
    """The embed-pack pairs as a text table; "" if none ran."""
    summary = embed_pack_summary(records)
    if not summary:
        return ""
    head = summary[0]
    k = head["rows_per_request"] or "k"
    cols = f"{'rows/s (÷limit)':>15} {'req':>6} {'r/req':>5} {'py us':>4}"
    lines = [
        f"Packed embeddings on the async row paths: C = {head['concurrency']}, "
        f"L = {head['latency_ms']:g} ms per request whatever its inputs, {head['rows']:,} rows, "
        f"pack wait {head['pack_wait_ms']} ms (py us: Python CPU per row)",
        f"{'entry / round':<34} {'one row per request':<33} | {f'{k} rows per request':<33} | {'ratio':>5}",
        f"{'':<34} {cols} | {cols} |",
    ]
    for entry in summary:
        for pair in entry["pairs"]:
            ratio, label = pair["ratio"], f"{entry['entry']} r{pair['repeat']}"
            lines.append(
                f"{label:<34} {_cells(pair['single'])} | {_cells(pair['packed'])} | "
                f"{'' if ratio is None else f'{ratio:.2f}':>5}"
            )
        m = entry["median"]
        single, packed, ratio = m["single_rows_per_s"], m["packed_rows_per_s"], m["ratio"]
        lines.append(
            f"{entry['entry'] + ' median':<34} {'' if single is None else f'{single:8.1f}':<33} | "
            f"{'' if packed is None else f'{packed:8.1f}':<33} | {'' if ratio is None else f'{ratio:.2f}':>5}"
        )
    return "\n".join(lines)


__all__ = [
    "cache_cpu_summary",
    "cache_cpu_table",
    "cache_fields",
    "cache_problem",
    "embed_pack_summary",
    "embed_pack_table",
    "packed_over_single",
]

"""Statistics over the samples, and the Markdown tables."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _bench_measure import BACKENDS, FLOOR, GRACEFUL

GOAL_RATIO = 1.05


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and range of ``values``; NaNs are ignored."""
    xs = sorted(v for v in values if not math.isnan(v))
    if not xs:
        return {"count": 0}
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else xs * 3
    return {
        "count": len(xs),
        "median": statistics.median(xs),
        "q1": q1,
        "q3": q3,
        "min": xs[0],
        "max": xs[-1],
    }


def _pick(samples: list[dict[str, Any]], key: str, **where: Any) -> list[float]:
    return [s[key] for s in samples if all(s[k] == v for k, v in where.items())]


def summarize_exit(
    samples: list[dict[str, Any]], task_counts: Sequence[int]
) -> list[dict[str, Any]]:
    rows = []
    for backend in BACKENDS:
        for n_tasks in task_counts:
            row: dict[str, Any] = {"backend": backend, "tasks": n_tasks}
            for contender in (GRACEFUL, FLOOR):
                where = {"backend": backend, "tasks": n_tasks, "contender": contender}
                row[contender] = {
                    "total": summarize(_pick(samples, "total", **where)),
                    "in_run": summarize(_pick(samples, "in_run", **where)),
                }
            _add_ratio(row, "total")
            rows.append(row)
    return rows


def summarize_probe(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for backend in BACKENDS:
        for contender in (GRACEFUL, FLOOR):
            where = {"backend": backend, "contender": contender}
            row: dict[str, Any] = dict(where)
            for key in ("total", "in_run", "collect", "garbage"):
                row[key] = summarize(_pick(samples, key, **where))
            rows.append(row)
    return rows


def summarize_pairs(
    samples: list[dict[str, Any]], per_backend: dict[str, dict[str, list[float]]] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for backend in BACKENDS:
        row: dict[str, Any] = {"backend": backend}
        for contender in (GRACEFUL, FLOOR):
            if per_backend is None:
                values = _pick(samples, "total", backend=backend, contender=contender)
            else:
                values = per_backend.get(backend, {}).get(contender, [])
            row[contender] = {"total": summarize(values)}
        _add_ratio(row, "total")
        rows.append(row)
    return rows


def _add_ratio(row: dict[str, Any], key: str) -> None:
    ours, floor = row[GRACEFUL][key], row[FLOOR][key]
    if ours["count"] and floor["count"]:
        row["ratio"] = ours["median"] / floor["median"]
        row["difference"] = ours["median"] - floor["median"]
    else:
        row["ratio"] = row["difference"] = math.nan


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _cell(stats: dict[str, float], scale: float = 1e3, digits: int = 1) -> str:
    if not stats["count"]:
        return "n/a"
    median, q1, q3 = (stats[k] * scale for k in ("median", "q1", "q3"))
    return f"{median:.{digits}f} ({q1:.{digits}f}-{q3:.{digits}f})"


def _verdict(ratio: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    return "yes" if ratio <= GOAL_RATIO else "no"


def markdown_report(results: dict[str, Any]) -> str:
    lines = [
        "### Signal-to-exit latency",
        "",
        "From `os.kill(SIGTERM)` until the child is reaped; median (interquartile range) in "
        f"ms, n samples per contender. Goal: ratio ≤ {GOAL_RATIO}x.",
        "",
        f"| backend | tasks | n | {GRACEFUL} ms | {FLOOR} ms | ratio | difference ms "
        f"| ≤ {GOAL_RATIO}x |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in results["exit_latency"]["summary"]:
        ours, floor = row[GRACEFUL]["total"], row[FLOOR]["total"]
        lines.append(
            f"| {row['backend']} | {row['tasks']:,} | {min(ours['count'], floor['count'])} "
            f"| {_cell(ours)} | {_cell(floor)} | {row['ratio']:.2f} "
            f"| {_ms(row['difference'])} | {_verdict(row['ratio'])} |"
        )
    lines += [
        "",
        "### Where the exit time goes",
        "",
        "Median ms from the signal until run() (or anyio.run()) returned in the child, and "
        "from then until the child was reaped (interpreter teardown and process exit).",
        "",
        f"| backend | tasks | {GRACEFUL}: in run() | {GRACEFUL}: after | "
        f"{FLOOR}: in anyio.run() | {FLOOR}: after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["exit_latency"]["summary"]:
        cells = []
        for contender in (GRACEFUL, FLOOR):
            total, in_run = row[contender]["total"], row[contender]["in_run"]
            if total["count"] and in_run["count"]:
                after = total["median"] - in_run["median"]
                cells += [_ms(in_run["median"]), _ms(after)]
            else:
                cells += ["n/a", "n/a"]
        lines.append(f"| {row['backend']} | {row['tasks']:,} | " + " | ".join(cells) + " |")
    lines += _probe_table(results["gc_probe"])
    lines += _pair_table(
        "Start-up, whole process",
        "Wall time of `python -c` running a trivial `async def main(): pass`; median "
        "(interquartile range) in ms.",
        results["startup"]["summary"],
        unit="ms",
        scale=1e3,
        digits=1,
    )
    lines += _pair_table(
        "Start-up, in process",
        "One call of run() or anyio.run() with a trivial main, repeated in one process; "
        "median (interquartile range) in µs per call.",
        results["inprocess"]["summary"],
        unit="µs",
        scale=1e6,
        digits=0,
    )
    return "\n".join(lines) + "\n"


def _probe_table(probe: dict[str, Any]) -> list[str]:
    if not probe["samples"]:
        return []
    tasks = probe["samples"][0]["tasks"]
    lines = [
        "",
        "### Garbage left for the interpreter (diagnostic)",
        "",
        f"A separate pass at {tasks:,} tasks whose child runs gc.collect() right after the "
        "runner returns; medians. The explicit collection replaces the one the interpreter "
        "would run during teardown, so these exits are not the measurement above.",
        "",
        "| backend | contender | n | in runner ms | gc.collect() ms | objects collected "
        "| rest until reaped ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in probe["summary"]:
        total, in_run, collect = row["total"], row["in_run"], row["collect"]
        if not total["count"]:
            continue
        rest = total["median"] - in_run["median"] - collect["median"]
        lines.append(
            f"| {row['backend']} | {row['contender']} | {total['count']} "
            f"| {_ms(in_run['median'])} | {_ms(collect['median'])} "
            f"| {row['garbage']['median']:,.0f} | {_ms(rest)} |"
        )
    return lines


def _pair_table(
    title: str, caption: str, rows: list[dict[str, Any]], *, unit: str, scale: float, digits: int
) -> list[str]:
    lines = [
        "",
        f"### {title}",
        "",
        caption,
        "",
        f"| backend | n | {GRACEFUL} {unit} | {FLOOR} {unit} | ratio | difference {unit} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, floor = row[GRACEFUL]["total"], row[FLOOR]["total"]
        lines.append(
            f"| {row['backend']} | {min(ours['count'], floor['count'])} "
            f"| {_cell(ours, scale, digits)} | {_cell(floor, scale, digits)} "
            f"| {row['ratio']:.2f} | {row['difference'] * scale:.{digits}f} |"
        )
    return lines


def no_nan(value: Any) -> Any:
    # JSON has no NaN; a missing measurement is written as null.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


def progress(message: str) -> None:
    """A progress line on stderr, so that stdout carries only the report."""
    print(message, file=sys.stderr, flush=True)


def publish(
    results: dict[str, Any], report: str, json_path: Path, markdown_path: Path | None
) -> int:
    """Print the report, write the JSON (and the Markdown), and return the exit status."""
    print(report)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(
        json.dumps(no_nan(results), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    if markdown_path:
        markdown_path.write_text(report, encoding="utf-8")
    progress(f"wrote {json_path} after {results['runtime_s']:.0f} s")
    errors = results["errors"]
    if errors:
        progress(f"{len(errors)} error(s); see 'errors' in {json_path}")
        return 1
    return 0

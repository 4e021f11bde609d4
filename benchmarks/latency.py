"""Signal-to-exit latency, the garbage it leaves, peak memory, and exit statuses.

A suite of ``python -m benchmarks run``; ``python -m benchmarks run --only latency`` runs
only it.

1. Exit latency: from os.kill(SIGTERM) until the parent has reaped the child, for a child
   idling in 1 to 100,000 tasks, for every contender (``_bench_contenders.py``) and both
   workloads (tasks in an anyio task group, plain asyncio tasks; ``_child_workloads.py``).
   Every sample also records the child's exit status (checked against the contender's),
   its CPU time and its peak RSS, from wait4(): the peak memory table comes from the
   largest task count.
2. Garbage probe (a diagnostic): the same exits at one task count, with a gc.collect()
   in the child right after its runner returns, to show how much cyclic garbage the
   shutdown leaves for the interpreter's teardown.
3. Exit statuses: one idle child per contender and backend, including variants that are
   not timed (asyncio.run without catching CancelledError, aiomisc.run()).

Contenders are interleaved: every repetition visits every cell (the slow 100,000-task
cells only every few repetitions) and runs every contender of the cell back to back, in
an order that rotates from repetition to repetition, so slow drift of a shared machine
hits them alike. A baseline's twins (``run --baseline REV``) are contenders like the others;
the exit latency and the peak memory are compared with theirs, the garbage probe (a
diagnostic) and the exit statuses only listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _bench_baseline
from ._bench_contenders import (
    ASYNCIO_FAMILY,
    FLOOR,
    GRACEFUL,
    OURS,
    Contender,
    Envs,
    cells,
    rotated,
)
from ._bench_measure import SHARED_CLOCK, BenchError, exit_latency, exit_status
from ._bench_report import (
    GOAL_RATIO,
    cell,
    fmt,
    median,
    ms,
    pick,
    progress,
    ratio,
    section,
    summarize,
    table,
    verdict,
)


@dataclass(frozen=True)
class Settings:
    repeat: int  # repetitions of each cell with up to 10,000 tasks
    task_counts: tuple[int, ...]
    big_stride: int  # cells above 10,000 tasks run in every big_stride-th repetition only
    probe_tasks: int
    probe_repeat: int


# --- the schedule -------------------------------------------------------------------------


def run_exit_latency(
    settings: Settings,
    contenders: Sequence[Contender],
    envs: Envs,
    errors: list[dict[str, Any]],
    *,
    collect: bool = False,
) -> list[dict[str, Any]]:
    name = "garbage probe" if collect else "exit latency"
    repeat = settings.probe_repeat if collect else settings.repeat
    counts = (settings.probe_tasks,) if collect else settings.task_counts
    samples: list[dict[str, Any]] = []
    for rep in range(repeat):
        progress(f"{name}: repetition {rep + 1}/{repeat}")
        for n_tasks in counts:
            if n_tasks > 10_000 and rep % settings.big_stride != 0:
                continue
            for backend, workload, runs in cells(contenders):
                for contender in rotated(runs, rep):
                    where = {
                        "backend": backend,
                        "workload": workload,
                        "tasks": n_tasks,
                        "contender": contender.name,
                    }
                    try:
                        sample = exit_latency(
                            contender,
                            backend,
                            workload,
                            n_tasks,
                            envs.of(contender),
                            collect=collect,
                        )
                    except BenchError as exc:
                        errors.append({"benchmark": name, **where, "error": str(exc)})
                        progress(f"  ERROR {where}: {exc}")
                        continue
                    samples.append({**where, "rep": rep, **sample})
    return samples


def run_exit_statuses(
    contenders: Sequence[Contender], envs: Envs, errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    progress("exit statuses: one idle child per contender and backend")
    found = []
    for contender in contenders:
        for backend in contender.backends:
            workload = "asyncio" if backend in ASYNCIO_FAMILY else "anyio"
            where = {"contender": contender.name, "backend": backend, "workload": workload}
            try:
                result = exit_status(contender, backend, workload, envs.of(contender))
            except BenchError as exc:
                errors.append({"benchmark": "exit status", **where, "error": str(exc)})
                progress(f"  ERROR {where}: {exc}")
                continue
            found.append(
                {
                    **where,
                    **result,
                    "expected": contender.status,
                    "timed": not contender.status_only,
                    "description": contender.description,
                }
            )
    return found


# --- statistics ---------------------------------------------------------------------------

KEYS = ("total", "in_run", "maxrss_kib", "cpu", "collect", "garbage")


def summarize_cells(
    samples: list[dict[str, Any]], contenders: Sequence[Contender], task_counts: Sequence[int]
) -> list[dict[str, Any]]:
    """One row per backend, workload and task count; every contender's statistics."""
    rows = []
    for backend, workload, runs in cells(contenders):
        for n_tasks in task_counts:
            where = {"backend": backend, "workload": workload, "tasks": n_tasks}
            stats = {
                c.name: {
                    key: summarize(pick(samples, key, **where, contender=c.name)) for key in KEYS
                }
                for c in runs
            }
            if not any(s["total"]["count"] for s in stats.values()):
                continue
            row: dict[str, Any] = {**where, "contenders": stats}
            if GRACEFUL in stats and FLOOR in stats:
                ours, floor = stats[GRACEFUL]["total"], stats[FLOOR]["total"]
                row["ratio_to_floor"] = ratio(ours, floor)
                row["difference_to_floor"] = median(ours) - median(floor)
            # Neither graceful_async's variants nor their baseline twins are alternatives.
            alternatives = {c.name for c in runs if c.original not in (*OURS, FLOOR)}
            others = {
                name: s["total"]
                for name, s in stats.items()
                if name in alternatives and s["total"]["count"]
            }
            if GRACEFUL in stats and others:
                best = min(others, key=lambda name: median(others[name]))
                row["fastest_alternative"] = best
                row["ratio_to_fastest_alternative"] = ratio(stats[GRACEFUL]["total"], others[best])
            rows.append(row)
    return rows


# --- the report ---------------------------------------------------------------------------


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row["contenders"]))


def _where(row: dict[str, Any]) -> list[str]:
    return [row["backend"], row["workload"], f"{row['tasks']:,}"]


def markdown(results: dict[str, Any]) -> list[str]:
    rows = results["exit_latency"]["summary"]
    if not rows:
        return _status_table(results["exit_status"])
    lines = section(
        "Signal-to-exit latency against the floor",
        "From `os.kill(SIGTERM)` until the child is reaped; median (interquartile range) "
        "in ms over n samples per contender. *anyio* is the workload of tasks in an anyio "
        "task group, *asyncio* that of plain asyncio tasks. Goal: ratio ≤ "
        f"{GOAL_RATIO}x.",
        table(
            [
                "backend",
                "workload",
                "tasks",
                "n",
                f"{GRACEFUL} ms",
                f"{FLOOR} ms",
                "ratio",
                "difference ms",
                f"≤ {GOAL_RATIO}x",
            ],
            "lllrrrrrc",
            (
                [
                    *_where(row),
                    str(row["contenders"][GRACEFUL]["total"]["count"]),
                    cell(row["contenders"][GRACEFUL]["total"]),
                    cell(row["contenders"][FLOOR]["total"]),
                    fmt(row["ratio_to_floor"]),
                    ms(row["difference_to_floor"]),
                    verdict(
                        None
                        if math.isnan(row["ratio_to_floor"])
                        else row["ratio_to_floor"] <= GOAL_RATIO
                    ),
                ]
                for row in rows
                if "ratio_to_floor" in row
            ),
        ),
    )
    lines += _alternatives_table(rows, _bench_baseline.pairs(results["contenders"]))
    lines += _split_table(rows)
    lines += _probe_table(results["gc_probe"])
    lines += _memory_table(results["memory"])
    lines += _status_table(results["exit_status"])
    return lines


def _alternatives_table(rows: list[dict[str, Any]], twins: dict[str, str]) -> list[str]:
    compared = [row for row in rows if "fastest_alternative" in row]
    if not compared:
        return []
    # The baseline's twins have a section of their own ("Against the baseline").
    names = [n for n in _names(compared) if n != FLOOR and n not in twins.values()]
    body = []
    for row in compared:
        stats = row["contenders"]
        best = row["ratio_to_fastest_alternative"]
        body.append(
            [
                *_where(row),
                *(ms(median(stats[n]["total"])) if n in stats else "-" for n in names),
                f"{row['fastest_alternative']}: {fmt(best)}",
                verdict(None if math.isnan(best) else best < 1),
            ]
        )
    return section(
        "Against the alternatives",
        "Median ms from the signal until the child is reaped. The last columns divide "
        f"{GRACEFUL}'s median by the fastest alternative's (the floor is not an "
        "alternative: it is the same program without graceful shutdown).",
        table(
            [
                "backend",
                "workload",
                "tasks",
                *(f"{n} ms" for n in names),
                "fastest alternative: ratio",
                "below all",
            ],
            "lll" + "r" * len(names) + "rc",
            body,
        ),
    )


def _split_table(rows: list[dict[str, Any]]) -> list[str]:
    if not SHARED_CLOCK:
        return []
    names = _names(rows)
    body = []
    for row in rows:
        cells_ = []
        for name in names:
            stats = row["contenders"].get(name)
            if stats is None or not stats["in_run"]["count"]:
                cells_.append("-")
                continue
            in_run = median(stats["in_run"])
            cells_.append(f"{ms(in_run)} + {ms(median(stats['total']) - in_run)}")
        body.append([*_where(row), *cells_])
    return section(
        "Where the exit time goes",
        "Median ms from the signal until the runner returned in the child, plus the median "
        "from then until the child was reaped (interpreter teardown, including its final "
        "garbage collection, and process exit).",
        table(["backend", "workload", "tasks", *names], "lll" + "r" * len(names), body),
    )


def _probe_table(probe: dict[str, Any]) -> list[str]:
    body = []
    for row in probe["summary"]:
        for name, stats in row["contenders"].items():
            total, in_run, collect = stats["total"], stats["in_run"], stats["collect"]
            if not total["count"]:
                continue
            garbage = median(stats["garbage"])
            rest = median(total) - median(in_run) - median(collect)
            body.append(
                [
                    row["backend"],
                    row["workload"],
                    name,
                    str(total["count"]),
                    ms(median(in_run)),
                    ms(median(collect)),
                    f"{garbage:,.0f}",
                    f"{garbage / row['tasks']:.1f}",
                    ms(rest),
                ]
            )
    if not body:
        return []
    tasks = probe["summary"][0]["tasks"]
    return section(
        "Garbage left for the interpreter (diagnostic)",
        f"A separate pass at {tasks:,} tasks whose child runs `gc.collect()` right after "
        "the runner returns; medians. The explicit collection replaces the one the "
        "interpreter would run during teardown, so these exits are not the measurement "
        "above. `python -m benchmarks gc-repro` reproduces the anyio task group's garbage "
        "alone.",
        table(
            [
                "backend",
                "workload",
                "contender",
                "n",
                "in runner ms",
                "gc.collect() ms",
                "objects collected",
                "per task",
                "rest until reaped ms",
            ],
            "lllrrrrrr",
            body,
        ),
    )


def summarize_memory(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Peak RSS at the largest task count measured, against the floor's."""
    if not rows:
        return []
    largest = max(row["tasks"] for row in rows)
    found = []
    for row in rows:
        if row["tasks"] != largest:
            continue
        floor = row["contenders"].get(FLOOR, {}).get("maxrss_kib", {"count": 0})
        for name, stats in row["contenders"].items():
            rss = stats["maxrss_kib"]
            found.append(
                {
                    "backend": row["backend"],
                    "workload": row["workload"],
                    "tasks": largest,
                    "contender": name,
                    "maxrss_kib": rss,
                    "ratio_to_floor": ratio(rss, floor),
                    "difference_to_floor_kib": median(rss) - median(floor),
                }
            )
    return found


def _memory_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    return section(
        f"Peak memory at {rows[0]['tasks']:,} tasks",
        "The child's peak resident set size (`ru_maxrss` from `wait4()`), over its whole "
        "life: interpreter, imports, the tasks and the shutdown. Median MiB, and the "
        "difference from the floor on the same backend and workload.",
        table(
            ["backend", "workload", "contender", "n", "peak RSS MiB", "ratio", "difference MiB"],
            "lllrrrr",
            (
                [
                    row["backend"],
                    row["workload"],
                    row["contender"],
                    str(row["maxrss_kib"]["count"]),
                    fmt(median(row["maxrss_kib"]) / 1024, ",.1f"),
                    fmt(row["ratio_to_floor"]),
                    fmt(row["difference_to_floor_kib"] / 1024, "+,.1f"),
                ]
                for row in rows
            ),
        ),
    )


def _status_table(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    merged: dict[tuple[str, int, str], list[str]] = {}
    for row in found:
        last = row["stderr_tail"][-1] if row["stderr_tail"] else ""
        key = (row["contender"], row["status"], last)
        merged.setdefault(key, []).append(row["backend"])
    described = {row["contender"]: row for row in found}
    body = []
    for (name, status, last), backends in merged.items():
        row = described[name]
        body.append(
            [
                name,
                ", ".join(backends),
                str(status),
                "yes" if row["timed"] else "no",
                f"`{last[:100]}`" if last else "",
                row["description"],
            ]
        )
    return section(
        "Exit status on SIGTERM",
        "One idle child per contender and backend, stopped by SIGTERM. The convention, "
        "which Docker, Kubernetes and shells read, is 143 (128 + 15): stopped by the "
        "signal. The timed runs check every sample's status against these.",
        table(
            ["contender", "backends", "exit status", "timed", "last line on stderr", "how"],
            "llrcll",
            body,
        ),
    )


def cells_run(contenders: Sequence[Contender]) -> list[dict[str, Any]]:
    """For the JSON: which contender ran which workload on which backend."""
    return [
        {"backend": backend, "workload": workload, "contenders": [c.name for c in runs]}
        for backend, workload, runs in cells(contenders)
    ]


def against_baseline(results: dict[str, Any], twins: dict[str, str]) -> list[dict[str, Any]]:
    """Comparison rows: the exit latency of every cell, and the peak memory."""
    found = []
    for row in results["exit_latency"]["summary"]:
        stats = row["contenders"]
        for ours, twin in twins.items():
            if ours in stats and twin in stats:
                found.append(
                    _bench_baseline.compare(
                        "exit latency",
                        "/".join(_where(row)),
                        ours,
                        "ms",
                        stats[ours]["total"],
                        stats[twin]["total"],
                        scale=1e3,
                    )
                )
    memory = {(row["backend"], row["workload"], row["contender"]): row for row in results["memory"]}
    for (backend, workload, name), row in memory.items():
        theirs = memory.get((backend, workload, twins.get(name, "")))
        if theirs is not None:
            found.append(
                _bench_baseline.compare(
                    "peak memory",
                    f"{backend}/{workload}/{row['tasks']:,}",
                    name,
                    "MiB",
                    row["maxrss_kib"],
                    theirs["maxrss_kib"],
                    scale=1 / 1024,
                    larger="larger",
                )
            )
    return found

"""Idle cost: the CPU time and wake-ups of a service that sleeps, for every contender.

A suite of ``python -m benchmarks run``; ``python -m benchmarks run --only idle`` runs
only it.

Each child runs the anyio workload (``_child_workloads.py``) and, once it is READY and
settled, is left alone for a few seconds between two snapshots of its threads taken from
outside (``/proc/<pid>/task/*/schedstat`` and ``status``): the CPU nanoseconds they used
and their voluntary context switches, that is the times a thread was woken and went back
to sleep. A service that does not poll should show the bare loop's numbers. Then it is
stopped with SIGTERM and its exit status checked. Contenders are interleaved as in the
latency suite, a baseline's twins (``run --baseline REV``) among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _bench_baseline
from ._bench_contenders import BACKENDS, FLOOR, GRACEFUL, Contender, Envs, rotated
from ._bench_measure import IDLE_SUPPORTED, BenchError, idle_cpu
from ._bench_report import fmt, median, pick, progress, section, summarize, table, verdict

WORKLOAD = "anyio"
#: "No polling": at most this many more wake-ups than the floor over the whole window ...
WAKEUP_TOLERANCE = 1
#: ... and at most this much more CPU time.
CPU_TOLERANCE = 0.001


@dataclass(frozen=True)
class Settings:
    repeat: int
    seconds: float  # the idle window
    tasks: int  # idle tasks in the workload


def run_idle(
    settings: Settings,
    contenders: Sequence[Contender],
    envs: Envs,
    errors: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    if not IDLE_SUPPORTED:
        progress("idle CPU: skipped, /proc/<pid>/task/*/schedstat is not available here")
        return []
    samples: list[dict[str, Any]] = []
    for rep in range(settings.repeat):
        progress(f"idle CPU: repetition {rep + 1}/{settings.repeat}, {settings.seconds:g} s each")
        for backend in BACKENDS:
            runs = [c for c in contenders if backend in c.backends]
            for contender in rotated(runs, rep):
                where = {"backend": backend, "contender": contender.name}
                try:
                    sample = idle_cpu(
                        contender,
                        backend,
                        WORKLOAD,
                        settings.tasks,
                        envs.of(contender),
                        settings.seconds,
                    )
                except BenchError as exc:
                    errors.append({"benchmark": "idle", **where, "error": str(exc)})
                    progress(f"  ERROR {where}: {exc}")
                    continue
                samples.append({**where, "rep": rep, **sample})
    return samples


def summarize_idle(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for backend in BACKENDS:
        names = dict.fromkeys(s["contender"] for s in samples if s["backend"] == backend)
        stats = {
            name: {
                key: summarize(pick(samples, key, backend=backend, contender=name))
                for key in ("window", "cpu", "wakeups", "preempted", "threads", "process_cpu")
            }
            for name in names
        }
        if not stats:
            continue
        row: dict[str, Any] = {"backend": backend, "contenders": stats}
        if GRACEFUL in stats and FLOOR in stats:
            ours, floor = stats[GRACEFUL], stats[FLOOR]
            row["extra_wakeups"] = median(ours["wakeups"]) - median(floor["wakeups"])
            row["extra_cpu"] = median(ours["cpu"]) - median(floor["cpu"])
            row["no_polling"] = (
                row["extra_wakeups"] <= WAKEUP_TOLERANCE and row["extra_cpu"] <= CPU_TOLERANCE
            )
        rows.append(row)
    return rows


def markdown(results: dict[str, Any]) -> list[str]:
    rows = results["idle"]["summary"]
    if not rows:
        return []
    settings = results["settings"]["idle"]
    body = []
    for row in rows:
        for name, stats in row["contenders"].items():
            window = median(stats["window"])
            wakeups = median(stats["wakeups"])
            body.append(
                [
                    row["backend"],
                    name,
                    str(stats["cpu"]["count"]),
                    fmt(median(stats["cpu"]) * 1e3, ".2f"),
                    fmt(wakeups, ".0f"),
                    fmt(wakeups / window, ".1f"),
                    fmt(median(stats["threads"]), ".0f"),
                    verdict(row.get("no_polling")) if name == GRACEFUL else "",
                ]
            )
    return section(
        "Idle cost",
        f"A child with {settings['tasks']:,} idle task(s) in an anyio task group, left alone "
        f"for {settings['seconds']:g} s after it was ready; "
        "medians over n children. CPU is the time all its threads spent on a CPU in that "
        "window; wake-ups are their voluntary context switches (a thread woken, then back "
        "to sleep). Goal: the floor's numbers, that is at most "
        f"{WAKEUP_TOLERANCE} more wake-up and {CPU_TOLERANCE * 1e3:g} ms more CPU than "
        f"{FLOOR} in the window.",
        table(
            [
                "backend",
                "contender",
                "n",
                "CPU ms",
                "wake-ups",
                "per s",
                "threads",
                "as idle as the floor",
            ],
            "llrrrrrc",
            body,
        ),
    )


def against_baseline(results: dict[str, Any], twins: dict[str, str]) -> list[dict[str, Any]]:
    """Comparison rows: the CPU time in the idle window, on every backend.

    Wake-ups are not compared on their own: a child that wakes up also uses CPU time, and
    with a baseline of 0, any CPU time at all is a verdict of slower.
    """
    found = []
    for row in results["idle"]["summary"]:
        stats = row["contenders"]
        for ours, twin in twins.items():
            if ours in stats and twin in stats:
                found.append(
                    _bench_baseline.compare(
                        "idle CPU",
                        row["backend"],
                        ours,
                        "ms",
                        stats[ours]["cpu"],
                        stats[twin]["cpu"],
                        scale=1e3,
                    )
                )
    return found

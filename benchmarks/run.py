"""All of graceful_async's benchmarks in one run, against the floor and the alternatives.

Usage: python -m benchmarks run [--quick] [--only SUITES] [--repeat N] [--tasks N,N,...]
       [--idle-seconds S] [--baseline REV] [--json PATH] [--markdown PATH] [--plot PATH]

Suites, in the order they run (each module's docstring says what it measures):

- latency (``latency.py``): the exit status of every contender on SIGTERM; the
  signal-to-exit latency at 1 to 100,000 idle tasks, for graceful_async, the floor (bare
  anyio) and the alternatives (asyncio.run with a hand-written handler, aiorun, aiomisc),
  with tasks in anyio task groups and as plain asyncio tasks; the peak memory of the same
  children; and a garbage probe.
- startup (``startup.py``): import time against anyio's, a whole process, one run() call.
- idle (``idle.py``): CPU time and wake-ups of a sleeping service.
- overhead (``overhead.py``): what drain() and in_flight() add to every item of a loop.

Contenders are interleaved within each measurement, so that slow drift of a shared machine
hits them alike. The children import a copy of graceful_async taken at the start, so edits
made during a run do not leak into it. With --baseline REV, graceful_async as it was at the
git revision REV is copied too and measured in every suite beside the working tree's, and
the report says which cells are more than 2% slower (``_bench_baseline.py``). The report
goes to stdout as Markdown (and with --markdown to a file, ready to paste under
docs/benchmarks.md's Results), the raw samples and the environment to a JSON file, and a
plot of the latencies to a PNG. The exit status is 1 if any sample failed, and only then: a
slower cell is the report's to tell. docs/benchmarks.md explains the results.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import _bench_baseline, idle, latency, overhead, startup
from ._bench_contenders import (
    CONTENDERS,
    HERE,
    WORKLOADS,
    Contender,
    Envs,
    available,
    timed,
    with_baseline,
)
from ._bench_env import machine_info, snapshot_env
from ._bench_goals import goals, goals_markdown
from ._bench_measure import SETTLE
from ._bench_plot import plot
from ._bench_report import progress, section, table, write_json

SUITES = ("latency", "startup", "idle", "overhead")
ROOT = HERE.parent


@dataclass(frozen=True)
class Settings:
    quick: bool
    suites: tuple[str, ...]
    baseline: str | None  # the git revision measured beside the working tree, if any
    latency: latency.Settings
    startup: startup.Settings
    idle: idle.Settings
    overhead: overhead.Settings


def make_settings(args: argparse.Namespace) -> Settings:
    quick = args.quick
    repeat = args.repeat or (2 if quick else 12)
    return Settings(
        quick=quick,
        suites=args.only,
        baseline=args.baseline,
        latency=latency.Settings(
            repeat=repeat,
            task_counts=args.tasks
            or ((1, 1_000, 10_000) if quick else (1, 1_000, 10_000, 100_000)),
            big_stride=1 if quick else 4,
            probe_tasks=1_000 if quick else 10_000,
            probe_repeat=1 if quick else 3,
        ),
        startup=startup.Settings(
            startup_repeat=2 * repeat,
            inprocess_calls=100 if quick else 300,
            inprocess_block=10,
            import_repeat=10 if quick else 60,
        ),
        idle=idle.Settings(
            repeat=1 if quick else 3,
            seconds=args.idle_seconds or (1.0 if quick else 3.0),
            tasks=1,
        ),
        overhead=overhead.Settings(
            passes=1 if quick else 5, rounds=10 if quick else 20, items=20_000
        ),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks run``; each is checked as it is parsed."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test of every suite in about 2 minutes: 2 repetitions, no 100,000-task "
        "cells, a 1 s idle window, one overhead pass; its numbers are noisy",
    )
    parser.add_argument(
        "--only",
        type=_suites,
        default=SUITES,
        metavar="SUITES",
        help=f"comma-separated suites to run, of {', '.join(SUITES)} (default: all)",
    )
    parser.add_argument(
        "--repeat",
        type=_whole_number,
        metavar="N",
        help="repetitions of each exit-latency cell (default 12, quick 2); the 100,000-task "
        "cells run in every fourth repetition only; start-up runs 2N times",
    )
    parser.add_argument(
        "--tasks",
        type=_task_counts,
        metavar="N,N,...",
        help="idle task counts for the exit latency (default 1,1000,10000,100000; "
        "quick 1,1000,10000)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=_seconds,
        metavar="S",
        help="the idle window of the idle suite (default 3, quick 1)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure graceful_async as it was at this git revision (a commit, a "
        "branch, a tag), interleaved with the working tree's, and compare every cell",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="where to write the raw results (default benchmarks/results/latest.json, "
        "or benchmarks/results/quick.json with --quick)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="also write the report here, with the environment and a link to the plot",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help="where to draw the latency plot (default docs/img/benchmarks.png, "
        "or benchmarks/results/quick.png with --quick)",
    )


# Option checks: argparse prints the message after the option's name, "argument --repeat:".


def _suites(text: str) -> tuple[str, ...]:
    suites = tuple(text.split(","))
    if unknown := [s for s in suites if s not in SUITES]:
        raise argparse.ArgumentTypeError(
            f"must be suites of {', '.join(SUITES)}, got {', '.join(unknown)}"
        )
    return suites


def _whole_number(text: str) -> int:
    with contextlib.suppress(ValueError):
        if (n := int(text)) >= 1:
            return n
    raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")


def _task_counts(text: str) -> tuple[int, ...]:
    with contextlib.suppress(ValueError):
        if min(counts := tuple(int(n) for n in text.split(","))) >= 1:
            return counts
    raise argparse.ArgumentTypeError(f"must be whole numbers >= 1 with commas, got {text}")


def _seconds(text: str) -> float:
    with contextlib.suppress(ValueError):
        if (seconds := float(text)) > 0:
            return seconds
    raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")


# --- running ------------------------------------------------------------------------------


def run_suites(
    settings: Settings,
    every: tuple[Contender, ...],
    envs: Envs,
    errors: list[dict[str, Any]],
) -> dict[str, Any]:
    """Run the suites of ``settings`` over the contenders ``every``, each in its environment."""
    skipped = available(every, envs)
    for name, reason in skipped.items():
        progress(f"{name}: skipped, {reason}")
    runnable = [c for c in every if c.name not in skipped]
    contenders = timed(every, skipped)
    suites = settings.suites
    found: dict[str, Any] = {
        "contenders": [{**asdict(c), "skipped": skipped.get(c.name)} for c in every],
        "workloads": WORKLOADS,
        "cells": latency.cells_run(contenders),
    }
    statuses: list[dict[str, Any]] = []
    exit_samples: list[dict[str, Any]] = []
    probe_samples: list[dict[str, Any]] = []
    timer = _Timer(found)
    if "latency" in suites:
        statuses = latency.run_exit_statuses(runnable, envs, errors)
        exit_samples = latency.run_exit_latency(settings.latency, contenders, envs, errors)
        probe_samples = latency.run_exit_latency(
            settings.latency, contenders, envs, errors, collect=True
        )
        timer.lap("latency")
    exit_rows = latency.summarize_cells(exit_samples, contenders, settings.latency.task_counts)
    found["exit_status"] = statuses
    found["exit_latency"] = {"summary": exit_rows, "samples": exit_samples}
    found["memory"] = latency.summarize_memory(exit_rows)
    found["gc_probe"] = {
        "summary": latency.summarize_cells(
            probe_samples, contenders, (settings.latency.probe_tasks,)
        ),
        "samples": probe_samples,
    }

    startup_samples: list[dict[str, Any]] = []
    inprocess: dict[str, Any] = {}
    imports: dict[str, Any] = {"samples": [], "importtime": {}}
    if "startup" in suites:
        imports = startup.run_imports(settings.startup, contenders, envs, errors)
        startup_samples = startup.run_startup(settings.startup, contenders, envs, errors)
        inprocess = startup.run_inprocess(settings.startup, contenders, envs, errors)
        timer.lap("startup")
    found["imports"] = {"summary": startup.summarize_imports(imports), **imports}
    found["startup"] = {
        "summary": startup.summarize_pairs(startup_samples),
        "samples": startup_samples,
    }
    found["inprocess"] = {"summary": startup.summarize_pairs([], inprocess), "samples": inprocess}

    idle_samples: list[dict[str, Any]] = []
    if "idle" in suites:
        idle_samples = idle.run_idle(settings.idle, contenders, envs, errors)
        timer.lap("idle")
    found["idle"] = {"summary": idle.summarize_idle(idle_samples), "samples": idle_samples}

    overhead_samples: list[dict[str, Any]] = []
    if "overhead" in suites:
        overhead_samples = overhead.run_passes(settings.overhead, contenders, envs, errors)
        timer.lap("overhead")
    found["overhead"] = {
        "summary": overhead.summarize_overhead(overhead_samples),
        "samples": overhead_samples,
    }
    if settings.baseline is not None:
        twins = _bench_baseline.pairs(found["contenders"])
        found["against_baseline"] = [
            *latency.against_baseline(found, twins),
            *startup.against_baseline(found, twins),
            *idle.against_baseline(found, twins),
            *overhead.against_baseline(found, twins),
        ]
    return found


class _Timer:
    """Records the seconds of each suite that ran under ``suite_runtime_s``."""

    def __init__(self, into: dict[str, Any]) -> None:
        self.laps: dict[str, float] = into.setdefault("suite_runtime_s", {})
        self.last = time.perf_counter()

    def lap(self, suite: str) -> None:
        now = time.perf_counter()
        self.laps[suite] = now - self.last
        self.last = now


def _benchmarks_git_state() -> dict[str, Any]:
    """Whether the benchmark scripts themselves are those of the commit measured."""
    try:
        status = subprocess.run(
            ["git", "-C", str(HERE), "status", "--porcelain", "--", "."],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    changed = [line for line in status.stdout.decode().splitlines() if "results/" not in line]
    return {"benchmarks_git_dirty": bool(changed), "benchmarks_git_status": changed}


# --- the report ---------------------------------------------------------------------------


def environment_markdown(results: dict[str, Any]) -> list[str]:
    machine, source = results["machine"], results["graceful_async_source"]
    versions = machine["versions"]
    commit = source.get("git_commit", "unknown")
    state = (
        "working tree differs (see git_diff in the JSON)" if source.get("git_dirty") else "clean"
    )
    if results["benchmarks"].get("benchmarks_git_dirty"):
        state += "; benchmarks/ differs from the commit"
    settings = results["settings"]
    mode = "quick (a smoke test: noisy)" if settings["quick"] else "full"
    rows = [
        ["date", machine["date"]],
        ["mode", f"{mode}, suites: {', '.join(settings['suites'])}, {results['runtime_s']:.0f} s"],
        ["settings", _settings_line(settings)],
        ["platform", machine["platform"]],
        ["CPU", f"{machine['cpu_model']}, {machine['nproc']} CPUs available"],
        ["Python", machine["python"]],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items())],
        ["graceful-async", f"commit {commit[:12]}, {state}; source sha256 {source['sha256'][:12]}"],
        *_baseline_rows(source),
        [
            "load average (1 min)",
            f"{machine['loadavg_at_start'][0]:.2f} at the start, "
            f"{machine['loadavg_at_end'][0]:.2f} at the end",
        ],
    ]
    return section(
        "Environment",
        "Where and on what these numbers were measured; the JSON has the rest.",
        table(["", ""], "ll", rows),
    )


def _baseline_rows(source: dict[str, Any]) -> list[list[str]]:
    if "baseline" not in source:
        return []
    baseline = source["baseline"]
    return [
        [
            "baseline",
            f"{baseline['rev']}: commit {baseline['git_commit'][:12]}; "
            f"source sha256 {baseline['sha256'][:12]}",
        ]
    ]


def _settings_line(settings: dict[str, Any]) -> str:
    exits = settings["latency"]
    big = -(-exits["repeat"] // exits["big_stride"])  # repetitions that run the big counts
    counts = ", ".join(f"{n:,}" for n in exits["task_counts"])
    return (
        f"{exits['repeat']} repetitions of {counts} tasks (above 10,000: {big} of them); "
        f"idle window {settings['idle']['seconds']:g} s"
    )


def report(results: dict[str, Any], image: str | None) -> str:
    lines = environment_markdown(results)
    lines += goals_markdown(results["goals"])
    lines += _bench_baseline.markdown(
        results.get("against_baseline", []), results["graceful_async_source"].get("baseline")
    )
    if image:
        lines += ["", f"![Signal-to-exit latency against the task count]({image})"]
    lines += latency.markdown(results)
    lines += startup.markdown(results)
    lines += idle.markdown(results)
    lines += overhead.markdown(results)
    return "\n".join(lines).lstrip("\n") + "\n"


def main(args: argparse.Namespace) -> int:
    """Run the suites that ``args`` (from `add_arguments`) ask for; 1 if a sample failed."""
    suites = args.only
    settings = make_settings(args)
    json_path: Path = args.json or HERE / "results" / (
        "quick.json" if args.quick else "latest.json"
    )
    plot_path: Path = args.plot or (
        HERE / "results" / "quick.png" if args.quick else ROOT / "docs" / "img" / "benchmarks.png"
    )
    started = time.perf_counter()
    machine = machine_info()
    scripts = _benchmarks_git_state()  # the scripts as they start, not as they end
    errors: list[dict[str, Any]] = []
    contenders = CONTENDERS if args.baseline is None else with_baseline(CONTENDERS, args.baseline)
    with snapshot_env(args.baseline) as (source, envs):
        found = run_suites(settings, contenders, envs, errors)
    machine["loadavg_at_end"] = list(os.getloadavg())
    results: dict[str, Any] = {
        "machine": machine,
        "graceful_async_source": source,
        "benchmarks": scripts,
        "settings": {**asdict(settings), "settle_s": SETTLE},
        "runtime_s": time.perf_counter() - started,
        "errors": errors,
        **found,
    }
    results["goals"] = goals(results)
    not_drawn = plot(results, plot_path) if "latency" in suites else "the latency suite did not run"
    results["plot"] = None if not_drawn else str(plot_path)
    if not_drawn:
        progress(f"plot: not drawn, {not_drawn}")
    write_json(results, json_path)
    print(report(results, None))
    if args.markdown:
        image = None if not_drawn else os.path.relpath(plot_path, args.markdown.resolve().parent)
        args.markdown.write_text(report(results, image), encoding="utf-8")
    written = json_path if not_drawn else f"{json_path} and {plot_path}"
    progress(f"wrote {written} after {results['runtime_s']:.0f} s")
    if worse := [
        row for row in results.get("against_baseline", []) if _bench_baseline.is_worse(row)
    ]:
        progress(
            f"{len(worse)} cell(s) slower or larger than at {args.baseline} by more than "
            f"{_bench_baseline.PERCENT}; see 'Against the baseline' in the report"
        )
    if errors:
        progress(f"{len(errors)} error(s); see 'errors' in {json_path}")
        return 1
    return 0

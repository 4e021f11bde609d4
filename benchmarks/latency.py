"""How long graceful_async makes a user wait, against bare anyio as the floor.

Usage: python benchmarks/latency.py [--quick] [--repeat N] [--json PATH] [--markdown PATH]

Three measurements, all in one run:

1. Exit latency: from os.kill(SIGTERM) until the parent has reaped the child, for a child
   idling in 1 to 100,000 tasks, under graceful_async.run() and under bare anyio.run()
   with its own SIGTERM receiver (``_child_graceful.py`` and ``_child_floor.py``).
   A diagnostic pass at 10,000 tasks also times a gc.collect() right after the runner
   returns, to show how much cyclic garbage is left for the interpreter's teardown.
2. Start-up: the wall time of a whole ``python -c`` process running a trivial main.
3. In-process: the time of one run() call against one anyio.run() call of a trivial main.

Contenders are interleaved: every repetition visits every cell (the slow 100,000-task
cells only every fourth one) and runs both contenders back to back, in alternating order,
so slow drift of a shared machine hits both alike. The children import a copy of
graceful_async taken at the start, so edits made during a run do not leak into it.
Results go to stdout as Markdown tables and to a JSON file with the raw samples.
docs/benchmarks.md explains the results.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _bench_env import machine_info, snapshot_env
from _bench_measure import (
    BACKENDS,
    FLOOR,
    GRACEFUL,
    HERE,
    SETTLE,
    SHARED_CLOCK,
    BenchError,
    exit_latency,
    inprocess_times,
    startup_time,
)
from _bench_report import (
    markdown_report,
    progress,
    publish,
    summarize_exit,
    summarize_pairs,
    summarize_probe,
)


@dataclass(frozen=True)
class Settings:
    repeat: int  # repetitions of each exit-latency cell with up to 10,000 tasks
    task_counts: tuple[int, ...]
    big_stride: int  # cells above 10,000 tasks run in every big_stride-th repetition only
    startup_repeat: int
    inprocess_calls: int
    inprocess_block: int
    probe_tasks: int
    probe_repeat: int


# --- the schedule -------------------------------------------------------------------------


def _pair(rep: int) -> tuple[str, str]:
    # Alternate who goes first, so neither always runs on a machine warmed by the other.
    return (GRACEFUL, FLOOR) if rep % 2 == 0 else (FLOOR, GRACEFUL)


def run_exit_latency(
    settings: Settings, env: dict[str, str], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    for rep in range(settings.repeat):
        progress(f"exit latency: repetition {rep + 1}/{settings.repeat}")
        for backend in BACKENDS:
            for n_tasks in settings.task_counts:
                if n_tasks > 10_000 and rep % settings.big_stride != 0:
                    continue
                for contender in _pair(rep):
                    where = {"backend": backend, "tasks": n_tasks, "contender": contender}
                    try:
                        times = exit_latency(contender, backend, n_tasks, env)
                    except BenchError as exc:
                        errors.append({"benchmark": "exit", **where, "error": str(exc)})
                        progress(f"  ERROR {where}: {exc}")
                        continue
                    samples.append({**where, "rep": rep, **times})
    return samples


def run_gc_probe(
    settings: Settings, env: dict[str, str], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if not SHARED_CLOCK:
        progress("garbage probe: skipped, perf_counter() is not a clock shared with children")
        return []
    progress(f"garbage probe: repetitions: {settings.probe_repeat}")
    samples: list[dict[str, Any]] = []
    for rep in range(settings.probe_repeat):
        for backend in BACKENDS:
            for contender in _pair(rep):
                where = {"backend": backend, "tasks": settings.probe_tasks, "contender": contender}
                try:
                    times = exit_latency(
                        contender, backend, settings.probe_tasks, env, collect=True
                    )
                except BenchError as exc:
                    errors.append({"benchmark": "gc_probe", **where, "error": str(exc)})
                    progress(f"  ERROR {where}: {exc}")
                    continue
                samples.append({**where, "rep": rep, **times})
    return samples


def run_startup(
    settings: Settings, env: dict[str, str], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    progress(f"start-up: repetitions: {settings.startup_repeat}")
    samples: list[dict[str, Any]] = []
    for rep in range(settings.startup_repeat):
        for backend in BACKENDS:
            for contender in _pair(rep):
                where = {"backend": backend, "contender": contender}
                try:
                    seconds = startup_time(contender, backend, env)
                except BenchError as exc:
                    errors.append({"benchmark": "startup", **where, "error": str(exc)})
                    progress(f"  ERROR {where}: {exc}")
                    continue
                samples.append({**where, "rep": rep, "total": seconds})
    return samples


def run_inprocess(
    settings: Settings, env: dict[str, str], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    progress(f"in-process: {settings.inprocess_calls} calls per runner and backend")
    results: dict[str, Any] = {}
    for backend in BACKENDS:
        try:
            results[backend] = inprocess_times(
                backend, settings.inprocess_calls, settings.inprocess_block, env
            )
        except (BenchError, subprocess.TimeoutExpired) as exc:
            errors.append({"benchmark": "inprocess", "backend": backend, "error": str(exc)})
            progress(f"  ERROR {backend}: {exc}")
    return results


# --- main ---------------------------------------------------------------------------------


def make_settings(quick: bool, repeat: int | None) -> Settings:
    if quick:
        return Settings(
            repeat=repeat or 3,
            task_counts=(1, 1_000, 10_000),
            big_stride=1,
            startup_repeat=2 * (repeat or 3),
            inprocess_calls=100,
            inprocess_block=10,
            probe_tasks=10_000,
            probe_repeat=1,
        )
    return Settings(
        repeat=repeat or 12,
        task_counts=(1, 1_000, 10_000, 100_000),
        big_stride=4,
        startup_repeat=2 * (repeat or 12),
        inprocess_calls=300,
        inprocess_block=10,
        probe_tasks=10_000,
        probe_repeat=3,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions and no 100,000-task cells"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="repetitions per exit-latency cell (default 12, quick 3); the 100,000-task "
        "cells run in every fourth repetition only, start-up runs 2N times",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="where to write the raw results (default benchmarks/results/latest.json, "
        "or benchmarks/results/quick.json with --quick)",
    )
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the tables here")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be a whole number >= 1, got {args.repeat}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = make_settings(args.quick, args.repeat)
    default_json = "quick.json" if args.quick else "latest.json"
    json_path: Path = args.json or HERE / "results" / default_json
    started = time.perf_counter()
    machine = machine_info()
    errors: list[dict[str, Any]] = []
    with snapshot_env() as (source, env):
        exit_samples = run_exit_latency(settings, env, errors)
        probe_samples = run_gc_probe(settings, env, errors)
        startup_samples = run_startup(settings, env, errors)
        inprocess = run_inprocess(settings, env, errors)
    machine["loadavg_at_end"] = list(os.getloadavg())
    results: dict[str, Any] = {
        "machine": machine,
        "graceful_async_source": source,
        "settings": {**asdict(settings), "quick": args.quick, "settle_s": SETTLE},
        "runtime_s": time.perf_counter() - started,
        "errors": errors,
        "exit_latency": {
            "summary": summarize_exit(exit_samples, settings.task_counts),
            "samples": exit_samples,
        },
        "gc_probe": {"summary": summarize_probe(probe_samples), "samples": probe_samples},
        "startup": {"summary": summarize_pairs(startup_samples), "samples": startup_samples},
        "inprocess": {"summary": summarize_pairs([], inprocess), "samples": inprocess},
    }
    return publish(results, markdown_report(results), json_path, args.markdown)


if __name__ == "__main__":
    sys.exit(main())

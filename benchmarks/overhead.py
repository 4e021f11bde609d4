"""What drain() and in_flight() add to every item of a loop, against a bare loop.

Usage: python benchmarks/overhead.py [--quick] [--passes N] [--rounds N] [--items N]
       [--json PATH] [--markdown PATH]

Each pass starts one child per backend (``_child_overhead.py``, backend order rotating
from pass to pass). The child runs inside graceful_async.run(), where drain() and
in_flight() keep their books, and times ROUNDS rounds; every round runs every case once
over ITEMS items, in an order that rotates from round to round:

- stream, bare:      ``async for item in receive_stream: pass``
- stream, drain:     ``async for item in graceful_async.drain(receive_stream): pass``
- stream, in_flight: ``async for item in receive_stream:``
                     ``async with graceful_async.in_flight(): pass``
- generator, bare:   ``async for item in agen(): pass`` (an async generator of ITEMS ints)
- generator, drain:  ``async for item in graceful_async.drain(agen()): pass``

The stream is an anyio memory object stream with every item already buffered. The
overhead of a case is its median nanoseconds per item minus the median of the bare loop
over the same source, measured in the same rounds. Results go to stdout as a Markdown
table and to a JSON file with the raw samples. docs/benchmarks.md explains the results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _bench_env import machine_info, snapshot_env
from _bench_measure import BACKENDS, HERE, PYTHON, BenchError
from _bench_report import progress, publish, summarize

#: The goal for asyncio: what drain() or in_flight() may add to each item.
GOAL_NS = 2_000.0
BASELINE = "bare"
CHILD = HERE / "_child_overhead.py"
CHILD_TIMEOUT = 900.0


@dataclass(frozen=True)
class Settings:
    passes: int  # child processes per backend
    rounds: int  # rounds per child; each round runs every case once
    items: int  # items per case and round


# --- measuring ----------------------------------------------------------------------------


def run_child(backend: str, settings: Settings, env: dict[str, str]) -> list[dict[str, Any]]:
    anyio_backend, use_uvloop = BACKENDS[backend]
    argv = [
        PYTHON,
        str(CHILD),
        anyio_backend,
        str(int(use_uvloop)),
        str(settings.items),
        str(settings.rounds),
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=CHILD_TIMEOUT, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"the child did not finish within {CHILD_TIMEOUT:g} s") from None
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")[-1500:]
        raise BenchError(f"exit status {done.returncode}; stderr: {stderr}")
    samples: list[dict[str, Any]] = json.loads(done.stdout)
    return samples


def run_passes(
    settings: Settings, env: dict[str, str], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    backends = list(BACKENDS)
    samples: list[dict[str, Any]] = []
    for pass_ in range(settings.passes):
        progress(f"overhead: pass {pass_ + 1}/{settings.passes}")
        shift = pass_ % len(backends)
        for backend in backends[shift:] + backends[:shift]:
            try:
                found = run_child(backend, settings, env)
            except BenchError as exc:
                errors.append({"benchmark": "overhead", "backend": backend, "error": str(exc)})
                progress(f"  ERROR {backend}: {exc}")
                continue
            samples += [{"backend": backend, "pass": pass_, **s} for s in found]
    return samples


# --- statistics ---------------------------------------------------------------------------


def _per_round(samples: list[dict[str, Any]], **where: Any) -> dict[tuple[int, int], float]:
    return {
        (s["pass"], s["round"]): s["ns_per_item"]
        for s in samples
        if all(s[k] == v for k, v in where.items())
    }


def summarize_overhead(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per backend, source and variant other than the baseline."""
    # In the order the child defines them (dicts keep their insertion order).
    cases = dict.fromkeys((s["source"], s["variant"]) for s in samples if s["variant"] != BASELINE)
    rows = []
    for backend in BACKENDS:
        for source, variant in cases:
            base = _per_round(samples, backend=backend, source=source, variant=BASELINE)
            ours = _per_round(samples, backend=backend, source=source, variant=variant)
            base_stats, our_stats = summarize(list(base.values())), summarize(list(ours.values()))
            row: dict[str, Any] = {
                "backend": backend,
                "source": source,
                "variant": variant,
                BASELINE: base_stats,
                "candidate": our_stats,
                # The same round's difference: a cross-check that is less exposed to
                # slow drift than the difference of the medians.
                "paired_difference": summarize([ours[k] - base[k] for k in ours if k in base]),
            }
            if base_stats["count"] and our_stats["count"]:
                row["overhead_ns"] = our_stats["median"] - base_stats["median"]
                row["ratio"] = our_stats["median"] / base_stats["median"]
            else:
                row["overhead_ns"] = row["ratio"] = math.nan
            rows.append(row)
    return rows


# --- the report ---------------------------------------------------------------------------


def _cell(stats: dict[str, float]) -> str:
    if not stats["count"]:
        return "n/a"
    return f"{stats['median']:,.0f} ({stats['q1']:,.0f} to {stats['q3']:,.0f})"


def _verdict(overhead_ns: float) -> str:
    if math.isnan(overhead_ns):
        return "n/a"
    return "yes" if overhead_ns < GOAL_NS else "no"


def markdown_report(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = [
        "### Per-item overhead of drain() and in_flight()",
        "",
        f"Nanoseconds per item over {settings['items']:,} items per round inside "
        "`graceful_async.run()`; median (interquartile range) over n rounds. Overhead is "
        "the candidate's median minus the bare loop's median over the same source; "
        "paired is the median (interquartile range) of the same round's difference. "
        f"Goal (asyncio): overhead < {GOAL_NS / 1000:g} µs per item.",
        "",
        "| backend | source | loop | n | bare ns | candidate ns | overhead ns | ratio "
        f"| paired ns | < {GOAL_NS / 1000:g} µs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in results["overhead"]["summary"]:
        base, ours = row[BASELINE], row["candidate"]
        lines.append(
            f"| {row['backend']} | {row['source']} | {row['variant']} "
            f"| {min(base['count'], ours['count'])} | {_cell(base)} | {_cell(ours)} "
            f"| {row['overhead_ns']:,.0f} | {row['ratio']:.2f} "
            f"| {_cell(row['paired_difference'])} | {_verdict(row['overhead_ns'])} |"
        )
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------


def make_settings(
    quick: bool, passes: int | None, rounds: int | None, items: int | None
) -> Settings:
    if quick:
        return Settings(passes=passes or 1, rounds=rounds or 10, items=items or 20_000)
    return Settings(passes=passes or 5, rounds=rounds or 20, items=items or 20_000)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 pass of 10 rounds per backend")
    parser.add_argument(
        "--passes", type=int, metavar="N", help="child processes per backend (default 5)"
    )
    parser.add_argument(
        "--rounds", type=int, metavar="N", help="rounds per child (default 20, quick 10)"
    )
    parser.add_argument(
        "--items", type=int, metavar="N", help="items per case and round (default 20,000)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="where to write the raw results (default benchmarks/results/overhead.json, "
        "or benchmarks/results/overhead-quick.json with --quick)",
    )
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table here")
    args = parser.parse_args(argv)
    for name in ("passes", "rounds", "items"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a whole number >= 1, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = make_settings(args.quick, args.passes, args.rounds, args.items)
    default_json = "overhead-quick.json" if args.quick else "overhead.json"
    json_path: Path = args.json or HERE / "results" / default_json
    started = time.perf_counter()
    machine = machine_info()
    errors: list[dict[str, Any]] = []
    with snapshot_env() as (source, env):
        samples = run_passes(settings, env, errors)
    machine["loadavg_at_end"] = list(os.getloadavg())
    results: dict[str, Any] = {
        "machine": machine,
        "graceful_async_source": source,
        "settings": {**asdict(settings), "quick": args.quick, "goal_ns": GOAL_NS},
        "runtime_s": time.perf_counter() - started,
        "errors": errors,
        "overhead": {"summary": summarize_overhead(samples), "samples": samples},
    }
    return publish(results, markdown_report(results), json_path, args.markdown)


if __name__ == "__main__":
    sys.exit(main())

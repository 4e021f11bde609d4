"""What drain() and in_flight() add to every item of a loop, against a bare loop.

A suite of ``python -m benchmarks run``; ``python -m benchmarks run --only overhead`` runs
only it.

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
over the same source, measured in the same rounds.

With a baseline (``run --baseline REV``), each pass also starts the same child with the
baseline's copy of graceful_async, right before or after the first one on each backend
(one interpreter cannot import two versions of the package). The comparison reads the
nanoseconds per item of each case with drain() or in_flight(): what a loop pays.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _bench_baseline
from ._bench_contenders import BACKENDS, GRACEFUL, Contender, Envs, child_command, rotated
from ._bench_measure import BenchError
from ._bench_report import progress, section, summarize, table

#: The goal for asyncio: what drain() or in_flight() may add to each item.
GOAL_NS = 2_000.0
#: The loop without drain() or in_flight() that every case is measured against.
BARE = "bare"
CHILD = "_child_overhead"
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
        *child_command(CHILD),
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
    settings: Settings,
    contenders: Sequence[Contender],
    envs: Envs,
    errors: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    backends = list(BACKENDS)
    # The working tree's copy, and the baseline's if there is one.
    children = [c for c in contenders if c.original == GRACEFUL]
    samples: list[dict[str, Any]] = []
    for pass_ in range(settings.passes):
        progress(f"overhead: pass {pass_ + 1}/{settings.passes}")
        shift = pass_ % len(backends)
        for turn, backend in enumerate(backends[shift:] + backends[:shift]):
            for contender in rotated(children, pass_ + turn):
                where = {"backend": backend, "contender": contender.name}
                try:
                    found = run_child(backend, settings, envs.of(contender))
                except BenchError as exc:
                    errors.append({"benchmark": "overhead", **where, "error": str(exc)})
                    progress(f"  ERROR {where}: {exc}")
                    continue
                samples += [{**where, "pass": pass_, **s} for s in found]
    return samples


# --- statistics ---------------------------------------------------------------------------


def _per_round(samples: list[dict[str, Any]], **where: Any) -> dict[tuple[int, int], float]:
    return {
        (s["pass"], s["round"]): s["ns_per_item"]
        for s in samples
        if all(s[k] == v for k, v in where.items())
    }


def summarize_overhead(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per contender (graceful_async, the baseline's twin), backend, source and
    variant other than the bare loop."""
    # In the order the child defines them (dicts keep their insertion order).
    cases = dict.fromkeys((s["source"], s["variant"]) for s in samples if s["variant"] != BARE)
    rows = []
    for contender in dict.fromkeys(s["contender"] for s in samples):
        rows += _summarize_child(samples, contender, cases)
    return rows


def _summarize_child(
    samples: list[dict[str, Any]], contender: str, cases: Iterable[tuple[str, str]]
) -> list[dict[str, Any]]:
    rows = []
    for backend in BACKENDS:
        for source, variant in cases:
            where = {"contender": contender, "backend": backend, "source": source}
            base = _per_round(samples, **where, variant=BARE)
            ours = _per_round(samples, **where, variant=variant)
            base_stats, our_stats = summarize(list(base.values())), summarize(list(ours.values()))
            row: dict[str, Any] = {
                "contender": contender,
                "backend": backend,
                "source": source,
                "variant": variant,
                BARE: base_stats,
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


def markdown(results: dict[str, Any]) -> list[str]:
    # The baseline's twin, if it ran, is compared in "Against the baseline".
    summary = [row for row in results["overhead"]["summary"] if row["contender"] == GRACEFUL]
    if not summary:
        return []
    items = results["settings"]["overhead"]["items"]
    return section(
        "Per-item overhead of drain() and in_flight()",
        f"Nanoseconds per item over {items:,} items per round inside "
        "`graceful_async.run()`; median (interquartile range) over n rounds. Overhead is "
        "the candidate's median minus the bare loop's median over the same source; "
        "paired is the median (interquartile range) of the same round's difference. "
        f"Goal (asyncio): overhead < {GOAL_NS / 1000:g} µs per item.",
        table(
            [
                "backend",
                "source",
                "loop",
                "n",
                "bare ns",
                "candidate ns",
                "overhead ns",
                "ratio",
                "paired ns",
                f"< {GOAL_NS / 1000:g} µs",
            ],
            "lllrrrrrrc",
            (
                [
                    row["backend"],
                    row["source"],
                    row["variant"],
                    str(min(row[BARE]["count"], row["candidate"]["count"])),
                    _cell(row[BARE]),
                    _cell(row["candidate"]),
                    f"{row['overhead_ns']:,.0f}",
                    f"{row['ratio']:.2f}",
                    _cell(row["paired_difference"]),
                    _verdict(row["overhead_ns"]),
                ]
                for row in summary
            ),
        ),
    )


def against_baseline(results: dict[str, Any], twins: dict[str, str]) -> list[dict[str, Any]]:
    """Comparison rows: the nanoseconds per item of every loop with drain() or in_flight()."""
    twin = twins.get(GRACEFUL)
    rows = {
        (row["contender"], row["backend"], row["source"], row["variant"]): row
        for row in results["overhead"]["summary"]
    }
    found = []
    for (contender, *case), row in rows.items():
        if contender == GRACEFUL and (theirs := rows.get((twin, *case))) is not None:
            found.append(
                _bench_baseline.compare(
                    "per-item overhead",
                    "/".join(case),
                    GRACEFUL,
                    "ns",
                    row["candidate"],
                    theirs["candidate"],
                )
            )
    return found

"""Start-up: a whole process, one run() call, and the import of graceful_async.

A suite of ``python -m benchmarks run``; ``python -m benchmarks run --only startup`` runs
only it.

1. Whole process: the wall time of ``python -c`` running a trivial main through
   graceful_async.run() or anyio.run(), per backend.
2. In process: one child per backend calls run() and anyio.run() with the same trivial
   main, in alternating blocks (``_child_inprocess.py``), and times every call.
3. Import: fresh interpreters that time ``import graceful_async``, ``import anyio`` and
   nothing (``pass``), interleaved; and one ``python -X importtime`` of each module, whose
   rows name the modules graceful_async imports beyond anyio's and what they cost.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from typing import Any

from ._bench_contenders import BACKENDS, FLOOR, GRACEFUL
from ._bench_measure import (
    BenchError,
    import_profile,
    import_time,
    inprocess_times,
    startup_time,
)
from ._bench_report import (
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

#: The goal: what importing graceful_async may add to importing anyio.
IMPORT_GOAL = 0.010
#: Modules timed by import; "" is an interpreter that imports nothing. ``import anyio`` loads
#: no backend: anyio.run() imports the asyncio one, so any anyio program on asyncio pays
#: for the third line too.
IMPORTS = ("graceful_async", "anyio", "anyio._backends._asyncio", "")
#: Rows of the -X importtime profile shown in the report.
PROFILE_ROWS = 12


@dataclass(frozen=True)
class Settings:
    startup_repeat: int
    inprocess_calls: int
    inprocess_block: int
    import_repeat: int


def _pair(rep: int) -> tuple[str, str]:
    # Alternate who goes first, so neither always runs on a machine warmed by the other.
    return (GRACEFUL, FLOOR) if rep % 2 == 0 else (FLOOR, GRACEFUL)


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


def run_imports(
    settings: Settings, env: dict[str, str], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    progress(f"import time: repetitions: {settings.import_repeat}")
    samples: list[dict[str, Any]] = []
    for rep in range(settings.import_repeat):
        shift = rep % len(IMPORTS)
        for module in IMPORTS[shift:] + IMPORTS[:shift]:
            try:
                times = import_time(module, env)
            except BenchError as exc:
                errors.append({"benchmark": "import", "module": module, "error": str(exc)})
                progress(f"  ERROR import {module!r}: {exc}")
                continue
            samples.append({"module": module or "(nothing)", "rep": rep, **times})
    profiles: dict[str, Any] = {}
    for module in ("graceful_async", "anyio"):
        try:
            profiles[module] = import_profile(module, env)
        except BenchError as exc:
            errors.append({"benchmark": "importtime", "module": module, "error": str(exc)})
    return {"samples": samples, "importtime": profiles}


# --- statistics ---------------------------------------------------------------------------


def summarize_pairs(
    samples: list[dict[str, Any]], per_backend: dict[str, dict[str, list[float]]] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for backend in BACKENDS:
        row: dict[str, Any] = {"backend": backend}
        for contender in (GRACEFUL, FLOOR):
            if per_backend is None:
                values = pick(samples, "total", backend=backend, contender=contender)
            else:
                values = per_backend.get(backend, {}).get(contender, [])
            row[contender] = {"total": summarize(values)}
        row["ratio"] = ratio(row[GRACEFUL]["total"], row[FLOOR]["total"])
        row["difference"] = median(row[GRACEFUL]["total"]) - median(row[FLOOR]["total"])
        rows.append(row)
    return rows


def summarize_imports(found: dict[str, Any]) -> dict[str, Any]:
    samples = found["samples"]
    stats = {
        module or "(nothing)": {
            key: summarize(pick(samples, key, module=module or "(nothing)"))
            for key in ("import", "process")
        }
        for module in IMPORTS
    }
    ours, anyio = stats["graceful_async"], stats["anyio"]
    added = median(ours["import"]) - median(anyio["import"])
    return {
        "modules": stats,
        "added_to_anyio": added,
        "added_to_anyio_process": median(ours["process"]) - median(anyio["process"]),
        "goal": IMPORT_GOAL,
        "goal_met": None if math.isnan(added) else added < IMPORT_GOAL,
        "beyond_anyio": _beyond_anyio(found["importtime"]),
    }


def _beyond_anyio(profiles: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The modules that ``import graceful_async`` loads and ``import anyio`` does not."""
    if "graceful_async" not in profiles or "anyio" not in profiles:
        return []
    by_anyio = {row["module"] for row in profiles["anyio"]}
    extra = [row for row in profiles["graceful_async"] if row["module"] not in by_anyio]
    return sorted(extra, key=lambda row: -row["self_us"])


# --- the report ---------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> list[str]:
    lines = []
    if results["imports"]["samples"]:
        lines += _import_tables(results["imports"]["summary"])
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
    return lines


def _import_tables(summary: dict[str, Any]) -> list[str]:
    modules = summary["modules"]
    lines = section(
        "Import time",
        "Fresh interpreters, interleaved. *import* is the time of the import statement "
        "alone, measured inside the interpreter; *process* the wall time of the whole "
        "`python -c` process. Median (interquartile range) in ms. Goal: graceful_async "
        f"adds less than {IMPORT_GOAL * 1e3:g} ms to anyio's import.",
        table(
            ["import", "n", "import ms", "process ms"],
            "lrrr",
            (
                [
                    f"`{name}`",
                    str(stats["import"]["count"]),
                    cell(stats["import"]),
                    cell(stats["process"]),
                ]
                for name, stats in modules.items()
            ),
        ),
    )
    lines += [
        "",
        f"graceful_async adds {ms(summary['added_to_anyio'])} ms to anyio's import "
        f"({ms(summary['added_to_anyio_process'])} ms to the whole process); "
        f"under {IMPORT_GOAL * 1e3:g} ms: {verdict(summary['goal_met'])}.",
    ]
    extra = summary["beyond_anyio"][:PROFILE_ROWS]
    if extra:
        lines += section(
            "What graceful_async imports beyond anyio",
            "From one `python -X importtime -c 'import graceful_async'` (a single run: "
            "read it for the ranking, not the exact numbers): the modules that "
            "`import anyio` does not load, by their own import time.",
            table(
                ["module", "self ms", "cumulative ms"],
                "lrr",
                (
                    [
                        f"`{row['module']}`",
                        fmt(row["self_us"] / 1e3),
                        fmt(row["cumulative_us"] / 1e3),
                    ]
                    for row in extra
                ),
            ),
        )
    return lines


def _pair_table(
    title: str, caption: str, rows: list[dict[str, Any]], *, unit: str, scale: float, digits: int
) -> list[str]:
    if not any(row[GRACEFUL]["total"]["count"] for row in rows):
        return []
    return section(
        title,
        caption,
        table(
            [
                "backend",
                "n",
                f"{GRACEFUL} {unit}",
                f"{FLOOR} {unit}",
                "ratio",
                f"difference {unit}",
            ],
            "lrrrrr",
            (
                [
                    row["backend"],
                    str(min(row[GRACEFUL]["total"]["count"], row[FLOOR]["total"]["count"])),
                    cell(row[GRACEFUL]["total"], scale, digits),
                    cell(row[FLOOR]["total"], scale, digits),
                    fmt(row["ratio"]),
                    fmt(row["difference"] * scale, f",.{digits}f"),
                ]
                for row in rows
            ),
        ),
    )

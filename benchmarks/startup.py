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

With a baseline (``run --baseline REV``), its copy of graceful_async is measured beside the
working tree's: in the whole-process start-up and the import, interleaved like the others;
in process, by a second child of its own per backend (one interpreter cannot import two
versions of the package), run right before or after the first one.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _bench_baseline
from ._bench_contenders import BACKENDS, FLOOR, GRACEFUL, Contender, Envs, rotated
from ._bench_measure import (
    STARTUP_CODE,
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
NOTHING = "(nothing)"
#: Rows of the -X importtime profile shown in the report.
PROFILE_ROWS = 12


@dataclass(frozen=True)
class Settings:
    startup_repeat: int
    inprocess_calls: int
    inprocess_block: int
    import_repeat: int


def run_startup(
    settings: Settings,
    contenders: Sequence[Contender],
    envs: Envs,
    errors: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    progress(f"start-up: repetitions: {settings.startup_repeat}")
    # graceful_async, its baseline's twin if any, and the floor.
    runners = [c for c in contenders if c.original in STARTUP_CODE]
    samples: list[dict[str, Any]] = []
    for rep in range(settings.startup_repeat):
        for backend in BACKENDS:
            # Rotate who goes first, so none always runs on a machine warmed by another.
            for contender in rotated(runners, rep):
                where = {"backend": backend, "contender": contender.name}
                try:
                    seconds = startup_time(contender.original, backend, envs.of(contender))
                except BenchError as exc:
                    errors.append({"benchmark": "startup", **where, "error": str(exc)})
                    progress(f"  ERROR {where}: {exc}")
                    continue
                samples.append({**where, "rep": rep, "total": seconds})
    return samples


def run_inprocess(
    settings: Settings,
    contenders: Sequence[Contender],
    envs: Envs,
    errors: list[dict[str, Any]],
) -> dict[str, Any]:
    """Per backend, per-call times by runner: run(), anyio.run(), and the baseline's run()."""
    progress(f"in-process: {settings.inprocess_calls} calls per runner and backend")
    # The child of the working tree's copy, and the baseline's child if there is one.
    children = [c for c in contenders if c.original == GRACEFUL]
    results: dict[str, Any] = {}
    for turn, backend in enumerate(BACKENDS):
        for contender in rotated(children, turn):
            try:
                times = inprocess_times(
                    backend,
                    settings.inprocess_calls,
                    settings.inprocess_block,
                    envs.of(contender),
                )
            except (BenchError, subprocess.TimeoutExpired) as exc:
                where = {"backend": backend, "contender": contender.name}
                errors.append({"benchmark": "inprocess", **where, "error": str(exc)})
                progress(f"  ERROR {where}: {exc}")
                continue
            # The baseline's child also times anyio.run(); only its run() is compared.
            found = times if contender.baseline_of is None else {contender.name: times[GRACEFUL]}
            results.setdefault(backend, {}).update(found)
    return results


def run_imports(
    settings: Settings,
    contenders: Sequence[Contender],
    envs: Envs,
    errors: list[dict[str, Any]],
) -> dict[str, Any]:
    """Import times, each sample under its label: the module, "(nothing)", or for the
    baseline's copy of graceful_async, its twin's name."""
    progress(f"import time: repetitions: {settings.import_repeat}")
    # (label, module, environment), in the order of the report.
    imports = [(module or NOTHING, module, envs.current) for module in IMPORTS]
    imports[1:1] = [
        (c.name, "graceful_async", envs.of(c)) for c in contenders if c.baseline_of == GRACEFUL
    ]
    samples: list[dict[str, Any]] = []
    for rep in range(settings.import_repeat):
        shift = rep % len(imports)
        for label, module, env in imports[shift:] + imports[:shift]:
            try:
                times = import_time(module, env)
            except BenchError as exc:
                errors.append({"benchmark": "import", "module": label, "error": str(exc)})
                progress(f"  ERROR import {label!r}: {exc}")
                continue
            samples.append({"module": label, "rep": rep, **times})
    profiles: dict[str, Any] = {}
    for module in ("graceful_async", "anyio"):
        try:
            profiles[module] = import_profile(module, envs.current)
        except BenchError as exc:
            errors.append({"benchmark": "importtime", "module": module, "error": str(exc)})
    return {"samples": samples, "importtime": profiles}


# --- statistics ---------------------------------------------------------------------------


def summarize_pairs(
    samples: list[dict[str, Any]], per_backend: dict[str, dict[str, list[float]]] | None = None
) -> list[dict[str, Any]]:
    """Per backend, graceful_async against the floor, and any other runner measured (the
    baseline's twin) beside them."""
    found = {s["contender"] for s in samples}
    found |= {name for times in (per_backend or {}).values() for name in times}
    names = [GRACEFUL, FLOOR, *sorted(found - {GRACEFUL, FLOOR})]
    rows = []
    for backend in BACKENDS:
        row: dict[str, Any] = {"backend": backend}
        for contender in names:
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
    labels = [module or NOTHING for module in IMPORTS]
    # The baseline's twin, if it ran, right after the graceful_async it is compared with.
    measured = dict.fromkeys(sample["module"] for sample in samples)
    labels[1:1] = [label for label in measured if label not in labels]
    stats = {
        label: {key: summarize(pick(samples, key, module=label)) for key in ("import", "process")}
        for label in labels
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
                    _import_label(name),
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


def _import_label(label: str) -> str:
    """`module`, or for the baseline's twin "graceful_async @REV", `graceful_async` @REV."""
    module, at, rev = label.partition(" @")
    return f"`{module}`" + (f" @{rev}" if at else "")


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


def against_baseline(results: dict[str, Any], twins: dict[str, str]) -> list[dict[str, Any]]:
    """Comparison rows: the import, and both start-ups on every backend."""
    twin = twins.get(GRACEFUL)
    if twin is None:
        return []
    found = []
    modules = results["imports"]["summary"]["modules"]
    if twin in modules:
        found.append(
            _bench_baseline.compare(
                "import",
                "the import statement",
                GRACEFUL,
                "ms",
                modules[GRACEFUL]["import"],
                modules[twin]["import"],
                scale=1e3,
            )
        )
    suites = (
        ("startup", "start-up, whole process", "ms", 1e3),
        ("inprocess", "start-up, in process", "µs", 1e6),
    )
    for key, suite, unit, scale in suites:
        for row in results[key]["summary"]:
            if twin in row:
                found.append(
                    _bench_baseline.compare(
                        suite,
                        row["backend"],
                        GRACEFUL,
                        unit,
                        row[GRACEFUL]["total"],
                        row[twin]["total"],
                        scale=scale,
                    )
                )
    return found

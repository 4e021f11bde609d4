"""The project's performance goals, each checked against the results it depends on."""

from __future__ import annotations

import math
from typing import Any

from ._bench_contenders import GRACEFUL
from ._bench_report import GOAL_RATIO, fmt, section, table, verdict


def _where(row: dict[str, Any]) -> str:
    return f"{row['backend']}/{row['workload']}/{row['tasks']:,}"


def _goal(goal: str, checked: list[tuple[str, bool]], how: str) -> dict[str, Any]:
    """A goal is met if every check passes; the detail names the ones that did not."""
    if not checked:
        return {"goal": goal, "met": None, "detail": "not measured in this run"}
    misses = [what for what, ok in checked if not ok]
    detail = f"{len(checked) - len(misses)} of {len(checked)} {how}"
    if misses:
        detail += "; missed: " + ", ".join(misses)
    return {"goal": goal, "met": not misses, "detail": detail}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = results["exit_latency"]["summary"]
    floor = [
        (f"{_where(row)} ({fmt(row['ratio_to_floor'])}x)", row["ratio_to_floor"] <= GOAL_RATIO)
        for row in rows
        if not math.isnan(row.get("ratio_to_floor", math.nan))
    ]
    alternatives = [
        (
            f"{_where(row)} ({row['fastest_alternative']} "
            f"{fmt(1 / row['ratio_to_fastest_alternative'])}x)",
            row["ratio_to_fastest_alternative"] < 1,
        )
        for row in rows
        if not math.isnan(row.get("ratio_to_fastest_alternative", math.nan))
    ]
    imports = results["imports"]["summary"]
    added = imports["added_to_anyio"]
    importing = [] if math.isnan(added) else [(f"{added * 1e3:.1f} ms", added < imports["goal"])]
    idle = [
        (
            f"{row['backend']} ({row['extra_wakeups']:+.0f} wake-ups, "
            f"{row['extra_cpu'] * 1e3:+.2f} ms CPU)",
            row["no_polling"],
        )
        for row in results["idle"]["summary"]
        if "no_polling" in row
    ]
    per_item = [
        (
            f"{row['source']} {row['variant']} ({row['overhead_ns']:,.0f} ns)",
            row["overhead_ns"] < 2e3,
        )
        for row in results["overhead"]["summary"]
        if row["contender"] == GRACEFUL
        and row["backend"] == "asyncio"
        and not math.isnan(row["overhead_ns"])
    ]
    return [
        _goal(
            f"signal-to-exit latency ≤ {GOAL_RATIO}x the floor",
            floor,
            "cells within (backend/workload/tasks)",
        ),
        _goal(
            "signal-to-exit latency below every alternative",
            alternatives,
            "cells below the fastest alternative (its speed against graceful_async's)",
        ),
        _goal("import adds under 10 ms to anyio's", importing, "measured"),
        _goal("idle: no more wake-ups or CPU than the floor", idle, "backends as idle"),
        _goal("drain() and in_flight() add under 2 µs per item on asyncio", per_item, "loops"),
    ]


def goals_markdown(found: list[dict[str, Any]]) -> list[str]:
    return section(
        "Goals",
        "Each goal against this run's medians; the tables below give the numbers.",
        table(
            ["goal", "met", "detail"],
            "lcl",
            ([row["goal"], verdict(row["met"]), row["detail"]] for row in found),
        ),
    )

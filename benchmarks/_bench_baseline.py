"""Against the baseline: every cell of graceful_async beside the same cell at an earlier commit.

``python -m benchmarks run --baseline REV`` measures graceful_async as it was at REV in the
same run, interleaved with the working tree's (``_bench_contenders.with_baseline``). Each
suite turns its summary into comparison rows with `compare`; this module judges them and
writes the report's section. A verdict reads the medians alone: two separate runs on a
shared machine could not resolve 2%, one run with both interleaved can come close.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._bench_report import fmt, median, section, table

#: A cell is slower (or larger) than the baseline's when its median is above this times the
#: baseline's median, and faster (or smaller) when it is below (2 - LIMIT) times it.
LIMIT = 1.02
PERCENT = f"{(LIMIT - 1) * 100:g}%"


def pairs(contenders: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Each contender that has a baseline twin, with the twin's name (from the JSON's list)."""
    return {c["baseline_of"]: c["name"] for c in contenders if c.get("baseline_of")}


def compare(
    suite: str,
    cell: str,
    contender: str,
    unit: str,
    current: dict[str, float],
    baseline: dict[str, float],
    *,
    scale: float = 1.0,
    larger: str = "slower",
) -> dict[str, Any]:
    """One comparison row: both medians in ``unit`` (``scale`` times the samples' unit).

    ``larger`` names what a larger median means: "slower" for times, "larger" for memory.
    """
    ours, theirs = median(current) * scale, median(baseline) * scale
    return {
        "suite": suite,
        "cell": cell,
        "contender": contender,
        "unit": unit,
        "current": ours,
        "baseline": theirs,
        "n": [current.get("count", 0), baseline.get("count", 0)],
        "ratio": ours / theirs if theirs else math.nan,
        "verdict": verdict(ours, theirs, larger),
    }


def verdict(current: float, baseline: float, larger: str = "slower") -> str:
    """How ``current`` stands against ``baseline``, by the rule of `LIMIT`.

    The rule compares ``current`` with ``baseline`` times the limit rather than the ratio
    with the limit, so that a baseline of 0 (an idle child that used no CPU) still has a
    verdict: anything above 0 is worse.
    """
    if math.isnan(current) or math.isnan(baseline):
        return "n/a"
    if current > baseline * LIMIT:
        return f"{larger} by more than {PERCENT}"
    if current < baseline * (2 - LIMIT):
        smaller = {"slower": "faster", "larger": "smaller"}[larger]
        return f"{smaller} by more than {PERCENT}"
    return f"within {PERCENT}"


def is_worse(row: dict[str, Any]) -> bool:
    return str(row["verdict"]).startswith(("slower", "larger"))


def markdown(rows: list[dict[str, Any]], baseline: dict[str, Any] | None) -> list[str]:
    if baseline is None:
        return []
    rev, commit = baseline["rev"], baseline["git_commit"][:12]
    named = rev if commit.startswith(rev) else f"{rev} (commit {commit})"
    if not rows:
        return section(
            "Against the baseline", f"Nothing was compared with {named} in this run.", []
        )
    worse = [row for row in rows if is_worse(row)]
    if worse:
        found = (
            f"**{len(worse)} of {len(rows)} cells are slower or larger than the baseline's by "
            f"more than {PERCENT}** (their verdicts are in bold)."
        )
    else:
        found = f"No cell is slower or larger than the baseline's by more than {PERCENT}."
    caption = (
        f"Every cell measured with graceful_async as it is (the copy of the working tree) "
        f"and as it was at {named}, in the same run, interleaved; medians, and their ratio. "
        f"A cell is slower (or larger) when the ratio is above {LIMIT:g}. The verdict reads "
        "the medians alone: where the interquartile ranges in the tables above are wider "
        f"than {PERCENT}, so is the doubt."
    )
    lines = section(
        "Against the baseline",
        caption,
        table(
            ["suite", "cell", "contender", "n", "current", "baseline", "ratio", "verdict"],
            "lllrrrrl",
            (
                [
                    row["suite"],
                    row["cell"],
                    row["contender"],
                    "/".join(str(n) for n in row["n"]),
                    _value(row["current"], row["unit"]),
                    _value(row["baseline"], row["unit"]),
                    fmt(row["ratio"], ".3f"),
                    f"**{row['verdict']}**" if is_worse(row) else row["verdict"],
                ]
                for row in rows
            ),
        ),
    )
    return [*lines, "", found]


def _value(value: float, unit: str) -> str:
    digits = {"ms": ",.1f", "µs": ",.0f", "ns": ",.0f", "MiB": ",.1f"}.get(unit, ",.3f")
    return "n/a" if math.isnan(value) else f"{format(value, digits)} {unit}"

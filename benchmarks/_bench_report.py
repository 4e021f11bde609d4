"""Statistics over the samples, Markdown table helpers, and writing the results out."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Signal-to-exit latency: graceful_async's median may be at most this times the floor's.
GOAL_RATIO = 1.05


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Median, quartiles and range of ``values``; NaNs and Nones are ignored."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return {"count": 0}
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else xs * 3
    return {
        "count": len(xs),
        "median": statistics.median(xs),
        "q1": q1,
        "q3": q3,
        "min": xs[0],
        "max": xs[-1],
    }


def pick(samples: Iterable[dict[str, Any]], key: str, **where: Any) -> list[float]:
    """``key`` of every sample that matches ``where`` and has it."""
    return [s[key] for s in samples if key in s and all(s[k] == v for k, v in where.items())]


def median(stats: dict[str, float]) -> float:
    return stats["median"] if stats.get("count") else math.nan


def ratio(ours: dict[str, float], theirs: dict[str, float]) -> float:
    return median(ours) / median(theirs) if median(theirs) else math.nan


def ms(seconds: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e3:,.{digits}f}"


def cell(stats: dict[str, float], scale: float = 1e3, digits: int = 1) -> str:
    """``median (q1-q3)``, scaled, or n/a."""
    if not stats.get("count"):
        return "n/a"
    med, q1, q3 = (stats[k] * scale for k in ("median", "q1", "q3"))
    return f"{med:,.{digits}f} ({q1:,.{digits}f}-{q3:,.{digits}f})"


def fmt(value: float, spec: str = ".2f") -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "no")


def table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table; ``align`` has one of l, r, c per column."""
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def section(title: str, caption: str, body: list[str]) -> list[str]:
    return ["", f"### {title}", "", caption, "", *body]


def no_nan(value: Any) -> Any:
    # JSON has no NaN; a missing measurement is written as null.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


def progress(message: str) -> None:
    """A progress line on stderr, so that stdout carries only the report."""
    print(message, file=sys.stderr, flush=True)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(no_nan(results), indent=1, allow_nan=False) + "\n", "utf-8")

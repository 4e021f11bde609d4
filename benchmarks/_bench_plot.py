"""The picture: signal-to-exit latency against the task count, one panel per backend."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ._bench_contenders import BACKENDS, FLOOR, GRACEFUL, GRACEFUL_FAST

#: A fixed colour per contender, so that the panels read alike.
COLOURS = {
    GRACEFUL: "#1f77b4",
    GRACEFUL_FAST: "#17becf",
    FLOOR: "#7f7f7f",
    "asyncio.run": "#2ca02c",
    "aiorun": "#d62728",
    "aiomisc": "#9467bd",
}
LINESTYLES = {"anyio": "-", "asyncio": "--"}
MARKERS = {"anyio": "o", "asyncio": "s"}


def plot(results: dict[str, Any], path: Path) -> str | None:
    """Draw the plot into ``path`` (a PNG); return why not, if it was not drawn."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (pip install --group bench)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["exit_latency"]["summary"]
    # The baseline's twins are compared in a table of their own, not drawn.
    twins = {c["name"] for c in results["contenders"] if c.get("baseline_of")}
    backends = [b for b in BACKENDS if any(row["backend"] == b for row in rows)]
    if not backends:
        return "no exit-latency results to plot"
    fig, axes = plt.subplots(
        1, len(backends), figsize=(5.2 * len(backends), 4.6), sharey=True, squeeze=False
    )
    for ax, backend in zip(axes[0], backends, strict=True):
        series: dict[tuple[str, str], list[tuple[int, dict[str, float]]]] = {}
        for row in rows:
            if row["backend"] != backend:
                continue
            for name, stats in row["contenders"].items():
                if stats["total"]["count"] and name not in twins:
                    series.setdefault((name, row["workload"]), []).append(
                        (row["tasks"], stats["total"])
                    )
        # By contender, then workload: the legend fills its columns in this order, one
        # contender per column.
        order = {name: i for i, name in enumerate(COLOURS)}
        for (name, workload), points in sorted(
            series.items(), key=lambda item: (order.get(item[0][0], len(order)), item[0][1])
        ):
            points.sort(key=lambda point: point[0])
            xs = [tasks for tasks, _ in points]
            ys = [stats["median"] * 1e3 for _, stats in points]
            low = [y - stats["q1"] * 1e3 for y, (_, stats) in zip(ys, points, strict=True)]
            high = [stats["q3"] * 1e3 - y for y, (_, stats) in zip(ys, points, strict=True)]
            ax.errorbar(
                xs,
                ys,
                yerr=[low, high],
                label=f"{name}, {workload} tasks",
                color=COLOURS.get(name),
                linestyle=LINESTYLES.get(workload, ":"),
                marker=MARKERS.get(workload, "^"),
                markersize=4,
                linewidth=2.2 if name == GRACEFUL else 1.3,
                capsize=2,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        counts = {row["tasks"] for row in rows}
        if len(counts) == 1:  # one point per line: give the log axis a range around it
            ax.set_xlim(min(counts) / 3, min(counts) * 3)
        ax.set_title(backend)
        ax.set_xlabel("idle tasks")
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.15)
    axes[0][0].set_ylabel("SIGTERM to process reaped, ms (median, IQR)")
    # One legend for all panels: the first panel has every series the others have.
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = len({label.split(",")[0] for label in labels})
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.suptitle(_title(results), fontsize=9)
    fig.tight_layout(rect=(0, 0.05 + 0.035 * math.ceil(len(labels) / columns), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def _title(results: dict[str, Any]) -> str:
    machine, source = results["machine"], results["graceful_async_source"]
    commit = source.get("git_commit", "unknown commit")[:7]
    dirty = " (dirty)" if source.get("git_dirty") else ""
    quick = "QUICK RUN, noisy: " if results["settings"]["quick"] else ""
    return (
        f"{quick}graceful-async {commit}{dirty}, {machine['python']}, "
        f"{machine['cpu_model']} ({machine['nproc']} CPUs), {machine['date'][:10]}"
    )

"""The stuck report: what was still running when the deadline passed."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from ._lifecycle import Phase

RELAY_TASK_NAME = "graceful_async relay"

if TYPE_CHECKING:
    from ._backends import TaskLister
    from ._lifecycle import Lifecycle


def build_report(
    lifecycle: Lifecycle, why: str, status: int | None, list_tasks: TaskLister | None
) -> str:
    """Describe the phase, live tasks, running hooks and every thread's stack."""
    state = lifecycle.state
    now = time.monotonic()
    trigger = state.trigger.describe() if state.trigger else "none"
    elapsed = f"{now - state.started_at:.2f} s" if state.started_at is not None else "n/a"
    phase = state.phase.value
    if state.trigger is not None and state.phase is Phase.RUNNING and status is not None:
        phase += " (the event loop never got to start the shutdown: is it blocked?)"
    headline = f"graceful_async: {why}"
    if status is not None:
        headline += f"; forcing exit with status {status}"
    lines = [
        headline,
        f"  trigger: {trigger}; phase: {phase}; time since shutdown began: {elapsed}",
    ]

    in_flight = len(state.in_flight)
    if in_flight:
        lines.append(f"Units of work still in flight: {in_flight}")

    workers = list(lifecycle.running_workers.values())
    if workers:
        lines.append(f"Workers still running ({len(workers)}):")
        lines += [f"  {worker}" for worker in sorted(workers)]

    hooks = dict(lifecycle.running_hooks)
    if hooks:
        lines.append(f"Shutdown hooks still running ({len(hooks)}):")
        lines += [f"  {name} (running for {now - since:.2f} s)" for name, since in hooks.items()]

    if list_tasks is not None:
        tasks = [t for t in list_tasks() if t.name != RELAY_TASK_NAME]
        lines.append(f"Tasks still alive ({len(tasks)}):")
        lines += [f"  {t.name!r} at {t.where}" for t in sorted(tasks, key=lambda t: t.name)]

    names = {thread.ident: thread for thread in threading.enumerate()}
    # Leave out our own helper threads (this watchdog, the flusher): they are not stuck.
    frames = {
        ident: frame
        for ident, frame in sys._current_frames().items()
        if not (ident in names and names[ident].name.startswith("graceful_async "))
    }
    lines.append(f"Threads ({len(frames)}):")
    for ident, frame in frames.items():
        thread = names.get(ident)
        label = thread.name if thread is not None else "<unknown>"
        kind = "daemon" if thread is not None and thread.daemon else "non-daemon"
        lines.append(f"  Thread {label!r} ({kind}, ident {ident}), most recent call last:")
        lines += [
            "    " + line
            for entry in traceback.format_stack(frame)
            for line in entry.rstrip("\n").splitlines()
        ]
    return "\n".join(lines) + "\n"

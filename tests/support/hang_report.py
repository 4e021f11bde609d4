"""What a hung child program writes to stderr, beside faulthandler's stacks.

The child programs of the tests load this file and call `start()`. If the child is still
running after ``after`` seconds, a daemon thread (one that blocks every signal, so that it
changes nothing about where the signals go) writes what a stack alone does not show: the
local variables of every thread's innermost frames, the active run's sockets and state,
each thread's CPU time and signal mask, and the open file descriptors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType


def start(after: float) -> None:
    threading.Thread(target=_report, args=(after,), name="hang report", daemon=True).start()


def _report(after: float) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()))
    time.sleep(after)
    lines = []
    try:
        lines += _frames()
        lines += _run_state()
        lines += _threads()
        lines.append(f"fds: {_fds()}")
    except Exception as exc:  # a diagnostic must not hide the hang it reports
        lines.append(f"hang report failed: {exc!r}")
    os.write(2, "".join(f"HANG {line}\n" for line in lines).encode())


def _frames() -> list[str]:
    lines = []
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, innermost in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        frame: FrameType | None = innermost
        for _ in range(2):  # the innermost two frames
            if frame is None:
                break
            where = f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
            local = {k: _short(v) for k, v in frame.f_locals.items() if k != "self"}
            lines.append(f"thread {names.get(ident)!r} at {where} locals {local}")
            frame = frame.f_back
    return lines


def _run_state() -> list[str]:
    from graceful_async import _shutdown

    run = _shutdown.current_run()
    if run is None:
        return ["no active run()"]
    state = run.state
    waker, loop_waker = state.watchdog_waker, state.loop_waker
    return [
        f"run: phase={state.phase} trigger={state.trigger} escalated={state.escalated} "
        f"armed={state.armed} deadline_in={state.deadline - time.monotonic():.1f}",
        f"run: watchdog waker writer={waker.fileno()} reader={waker.reader.fileno()} "
        f"loop waker writer={loop_waker.fileno()} reader={loop_waker.reader.fileno()} "
        f"forward_fd={run.forward_fd}",
        f"run: SIGTERM handler={signal.getsignal(signal.SIGTERM)!r} "
        f"SIGINT handler={signal.getsignal(signal.SIGINT)!r}",
    ]


def _threads() -> list[str]:
    lines = []
    for task in sorted(os.listdir("/proc/self/task")):
        with open(f"/proc/self/task/{task}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/self/task/{task}/status") as status:
            wanted = ("Name", "State", "SigBlk", "SigPnd")
            info = [line.strip() for line in status if line.startswith(wanted)]
        lines.append(f"task {task}: utime={fields[11]} stime={fields[12]} {' '.join(info)}")
    return lines


def _fds() -> dict[str, str]:
    found = {}
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        with contextlib.suppress(OSError):  # closed meanwhile
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."

"""Installing and restoring the signal handlers, and the async-signal-safe hand-off."""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._shutdown import ShutdownState


@contextmanager
def handlers_installed(
    state: ShutdownState,
    signals: tuple[signal.Signals, ...],
    dump_signal: signal.Signals | None = None,
    reload_signal: signal.Signals | None = None,
) -> Iterator[tuple[signal.Signals, ...]]:
    """Route ``signals`` to ``state``, ``dump_signal`` to a live report and
    ``reload_signal`` to the reload hooks, in the block.

    Yields the shutdown signals actually handled. On exit the previous handlers are put
    back: the very objects that were there before.
    """
    if threading.current_thread() is not threading.main_thread():
        warnings.warn(
            "graceful_async.run() was called outside the main thread, so it installs no "
            "signal handlers (Python only lets the main thread do that); shut it down "
            "with graceful_async.request_shutdown() instead",
            RuntimeWarning,
            stacklevel=4,
        )
        yield ()
        return

    # This handler runs in the main thread between two bytecodes, possibly in the middle
    # of the event loop's own code or while a task blocks in time.sleep(). So it must not
    # log, take a lock or touch the loop: it only bumps counters and sends a byte on a
    # non-blocking socket. The loop and the watchdog thread each wait on their own socket
    # and do the real work. Because it runs even when the loop is blocked, the handler is
    # also what arms the watchdog's deadline.
    def handler(signum: int, frame: FrameType | None) -> None:
        state.signal_received(signum)

    state.signal_handler = handler

    # The watchdog thread builds and writes the report: nothing to do here but wake it.
    def dump(signum: int, frame: FrameType | None) -> None:
        state.watchdog_waker.poke(b"d")

    # The loop runs the reload hooks; the handler only counts the request and wakes it.
    def reload(signum: int, frame: FrameType | None) -> None:
        state.reload_requested()

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in signals:
            current = signal.getsignal(sig)
            # A SIGINT that our parent set to SIG_IGN (a background job of a
            # non-interactive shell, nohup) must stay ignored, as CPython does.
            if sig == signal.SIGINT and current == signal.SIG_IGN:
                continue
            previous[sig] = signal.signal(sig, handler)
        handled = tuple(previous)
        if dump_signal is not None:
            previous[dump_signal] = signal.signal(dump_signal, dump)
        if reload_signal is not None:
            previous[reload_signal] = signal.signal(reload_signal, reload)
        yield handled
    finally:
        for sig, old in previous.items():
            # getsignal() answers None for a handler installed from C; SIG_DFL is the
            # nearest thing that can be put back.
            signal.signal(sig, signal.SIG_DFL if old is None else old)


@contextmanager
def wakeup_fd_chained(fd: int) -> Iterator[int]:
    """Have every signal write its number to ``fd``; yield the wake-up fd it replaced.

    A Python-level handler runs only in the main thread, between two bytecodes. If the
    main thread is blocked in a system call when the signal lands in another thread, or
    the signal lands just before it enters one (time.sleep() in a sync hook, say), the
    handler waits until that call returns: possibly forever, and with it the deadline
    that the handler arms. The wake-up fd, by contrast, is written to by the C-level
    handler at once, in whichever thread took the signal. The watchdog reads ``fd`` and
    passes every byte on to the fd we replaced (trio's and uvloop's loops wake up on
    theirs), so nobody who relied on the previous one loses a signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield -1
        return
    previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    try:
        yield previous
    finally:
        current = signal.set_wakeup_fd(previous)
        if current != fd:  # replaced meanwhile (add_signal_handler): leave theirs be
            signal.set_wakeup_fd(current)

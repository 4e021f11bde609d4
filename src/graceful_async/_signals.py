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
    state: ShutdownState, signals: tuple[signal.Signals, ...]
) -> Iterator[tuple[signal.Signals, ...]]:
    """Route ``signals`` to ``state`` for the duration of the block.

    Yields the signals actually handled. On exit the previous handlers are put back: the
    very objects that were there before.
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

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in signals:
            current = signal.getsignal(sig)
            # A SIGINT that our parent set to SIG_IGN (a background job of a
            # non-interactive shell, nohup) must stay ignored, as CPython does.
            if sig == signal.SIGINT and current == signal.SIG_IGN:
                continue
            previous[sig] = signal.signal(sig, handler)
        yield tuple(previous)
    finally:
        for sig, old in previous.items():
            # getsignal() answers None for a handler installed from C; SIG_DFL is the
            # nearest thing that can be put back.
            signal.signal(sig, signal.SIG_DFL if old is None else old)


@contextmanager
def wakeup_fd_set(fd: int) -> Iterator[None]:
    """Have every signal write a byte to ``fd``, unless something already listens.

    The kernel hands a process's signal to any thread that does not block it. When that
    is not the main thread, the C-level handler runs there and nothing interrupts the
    main thread's wait in the loop's select(), so our Python handler would run only
    when the loop next wakes up for another reason. A wake-up fd is written to by the
    C-level handler itself, in whichever thread, and ``fd`` is one the loop watches.
    trio and uvloop set their own wake-up fd, which already does this; plain asyncio
    sets none unless `loop.add_signal_handler` is used.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    if previous != -1:  # someone else's; it wakes the loop already
        signal.set_wakeup_fd(previous)
        yield
        return
    try:
        yield
    finally:
        current = signal.set_wakeup_fd(-1)
        if current != fd:  # replaced meanwhile (add_signal_handler): leave theirs be
            signal.set_wakeup_fd(current)

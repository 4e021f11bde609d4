"""Installing and restoring the signal handlers, and the async-signal-safe hand-off."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from ._shutdown import ShutdownState


@final
class InstalledHandlers:
    """What `handlers_installed` yields: the shutdown signals handled, and the way out."""

    def __init__(self) -> None:
        #: The shutdown signals actually handled (an ignored SIGINT is left alone).
        self.handled: tuple[signal.Signals, ...] = ()
        #: Until when a signal after run() is absorbed (time.monotonic()); None: the
        #: previous handlers come back when the block ends.
        self.absorb_until: float | None = None

    def keep_ours(self, deadline: float, grace: float) -> None:
        """When the block ends, keep further shutdown signals from ending the process.

        For a run() about to raise what ends the program: see `AfterRun`. They are
        absorbed until ``deadline``, or for ``grace`` seconds if nothing set one.
        """
        self.absorb_until = time.monotonic() + grace if math.isinf(deadline) else deadline


@contextmanager
def handlers_installed(
    state: ShutdownState,
    signals: tuple[signal.Signals, ...],
    dump_signal: signal.Signals | None = None,
    reload_signal: signal.Signals | None = None,
) -> Iterator[InstalledHandlers]:
    """Route ``signals`` to ``state``, ``dump_signal`` to a live report and
    ``reload_signal`` to the reload hooks, in the block.

    On exit the previous handlers are put back: the very objects that were there before.
    Unless `InstalledHandlers.keep_ours` was called: then each
    shutdown signal gets an `AfterRun` handler, which absorbs further signals while the
    program ends and gives way to the previous handler if the program carries on.
    """
    installed = InstalledHandlers()
    if threading.current_thread() is not threading.main_thread():
        warnings.warn(
            "graceful_async.run() was called outside the main thread, so it installs no "
            "signal handlers (Python only lets the main thread do that); shut it down "
            "with graceful_async.request_shutdown() instead",
            RuntimeWarning,
            stacklevel=4,
        )
        yield installed
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
            previous[sig] = _unwrapped(signal.signal(sig, handler))
        installed.handled = tuple(previous)
        if dump_signal is not None:
            previous[dump_signal] = _unwrapped(signal.signal(dump_signal, dump))
        if reload_signal is not None:
            previous[reload_signal] = _unwrapped(signal.signal(reload_signal, reload))
        yield installed
    finally:
        until = installed.absorb_until
        after: dict[signal.Signals, AfterRun] = {}
        for sig, old in previous.items():
            # getsignal() answers None for a handler installed from C; SIG_DFL is the
            # nearest thing that can be put back.
            old = signal.SIG_DFL if old is None else old  # noqa: PLW2901
            if until is not None and sig in installed.handled:
                after[sig] = AfterRun(old, until)
                signal.signal(sig, after[sig])
            else:
                signal.signal(sig, old)
        if after:
            import atexit  # deferred: only a run() that ends the program needs it

            atexit.register(_ignore_at_exit, after)


@final
class AfterRun:
    """The handler of a shutdown signal once run() has ended by raising.

    run() is then ending the program: its exception unwinds the stack above run(), then
    the interpreter joins the non-daemon threads, runs the atexit handlers and exits. A
    further signal must neither kill the process by its default action (SIGTERM: status
    -15, atexit handlers and buffered output lost) nor raise KeyboardInterrupt (a
    traceback from wherever the main thread is). So it is absorbed; the exit guard still
    bounds the exit by the deadline. Measured before this handler existed, a second
    SIGTERM 0-25 ms after the first killed the process by SIGTERM in 113 of 120 runs on
    trio.

    If the program caught run()'s exception and carried on, the previous handler is
    put back at the first signal after the deadline and handles it (or the next
    `graceful_async.run()` puts it back).
    """

    def __init__(self, previous: Any, until: float) -> None:
        #: The handler that was there before run().
        self.previous = previous
        self._until = until

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        # Before the deadline, or while the interpreter exits (the main thread is no
        # longer alive once it joins the threads), this is still the shutdown.
        if time.monotonic() < self._until or not threading.main_thread().is_alive():
            return
        previous = self.previous
        signal.signal(signum, previous)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # the default action, as before run()


def _unwrapped(handler: Any) -> Any:
    """The handler ``handler`` stands in for, if it is an earlier run()'s `AfterRun`."""
    return handler.previous if isinstance(handler, AfterRun) else handler


def _ignore_at_exit(after: dict[signal.Signals, AfterRun]) -> None:
    # An atexit handler, registered last and so run first: CPython resets every
    # Python-level handler to SIG_DFL as it finalizes, after the atexit handlers,
    # so from here on a signal that is still ours is ignored at the C level instead.
    # (A death by SIGINT is unaffected: CPython sets SIG_DFL itself before it.)
    for sig, handler in after.items():
        if signal.getsignal(sig) is handler:
            signal.signal(sig, signal.SIG_IGN)


# Signal numbers fit in one byte below this (the kernel's _NSIG is 65 on Linux).
NSIG = getattr(signal, "NSIG", 65)


@contextmanager
def wakeup_fd_chained(fd: int) -> Iterator[int]:
    """Have every signal write its number to ``fd``; yield the wake-up fd it replaced.

    ``fd`` is the loop waker's: the socket the event loop itself waits on. A Python-level
    handler runs only in the main thread, between two bytecodes, so the loop must be
    woken by the kernel when a signal lands, whatever any other thread is doing. This is
    why the wake-up fd is the loop's own. It once was the watchdog's, which passed the
    bytes on to the loop, and that lost signals: libuv (uvloop) retries ``epoll_wait`` on
    EINTR without running any Python, so the handler then ran only once something else
    woke the loop. On CPython 3.11 under a tracer (coverage, a debugger), a thread that
    is running Python when a signal lands spins at its next function entry until the
    main thread asks for the GIL; when that thread was the watchdog, nothing woke the
    loop at all until its next timer (measured: 12 of 800 second signals acted on only
    at the soft deadline, 14.5 s late). Now the main thread wakes first, asks for the
    GIL, and so also releases any thread caught that way.

    The loop passes every signal byte on to the fd we replaced (`forward_signals`), so
    that uvloop's and asyncio's own signal handlers still run. The watchdog, which must
    arm the deadline even when the main thread is blocked in a system call, watches the
    same socket for new bytes without reading them.
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


def forward_signals(data: bytes, fd: int) -> None:
    """Pass the signal numbers among ``data`` on to the wake-up fd ``fd`` (-1: none).

    Bytes 1-64 come from the C-level signal handler; our own pokes are 0.
    """
    if fd == -1:
        return
    signums = bytes(b for b in data if 0 < b < NSIG)
    if signums:
        with contextlib.suppress(OSError):  # full: that loop has a wake-up pending
            os.write(fd, signums)

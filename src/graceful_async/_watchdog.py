"""The out-of-loop deadline and the forced exit."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._lifecycle import Event
from ._report import build_report

if TYPE_CHECKING:
    import socket

    from ._backends import TaskLister
    from ._lifecycle import Lifecycle

FORCED_EXIT_STATUS = 124
"""The exit status of a process that was ended because it did not stop in time.

The watchdog uses it when the grace period runs out, when the program has not finished
1 s after a second signal, and at a third signal. It is distinct from 0, 1, 2 and 128+N,
so supervisors and logs can tell "did not stop in time" from a crash or a signal. (It is
also what coreutils' ``timeout`` returns when it had to stop a command.)
"""


class Watchdog:
    """A daemon thread that ends the process at the deadline, whatever the loop does.

    It lives outside the event loop so that it fires when the loop is blocked in sync
    code, when a task swallows cancellation, or when a non-daemon thread never returns.
    Until a shutdown begins it is blocked in select() with no timeout: no wake-ups, no
    polling. The signal handler arms it by writing one byte to its socket.
    """

    def __init__(
        self,
        lifecycle: Lifecycle,
        signals: Iterable[int] = (),
        force: Callable[[str, int], object] | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._state = lifecycle.state
        self._signals = set(signals)
        self._force = force or force_exit
        self._signal_seen_at: float | None = None  # this thread's own, see _signal_bytes
        self.list_tasks: TaskLister | None = None
        self._thread = threading.Thread(
            target=self._watch, name="graceful_async watchdog", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._state.watchdog_waker.poke(b"q")
        self._thread.join()

    def _watch(self) -> None:
        # Python runs signal handlers only in the main thread, but the kernel may deliver
        # a process-wide signal to any thread that does not block it: when two arrive
        # back to back, the second often lands here. This thread would then swallow the
        # interruption while the main thread, blocked in sync code, never notices the
        # signal. Blocking them here keeps them queued for the main thread.
        if self._signals:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._signals)
        state = self._state
        with _Poller(state.watchdog_waker.reader, state.loop_waker.reader) as poller:
            while True:
                if poller.watching_signals and not self._unarmed():
                    poller.stop_watching_signals()
                left = self._deadline() - time.monotonic()
                own_ready, signals_ready = poller.wait(None if math.isinf(left) else left)
                # Checked on every wake-up, not only on a timeout: a steady stream of
                # signals (SIGCHLD, say) could otherwise keep the wait from ever timing out.
                if time.monotonic() >= self._deadline():
                    self._fire(self._deadline_reason())
                    return
                if signals_ready:
                    self._look_for_signals(poller.peek_signals())
                if not own_ready:
                    continue
                data = state.watchdog_waker.read_some()
                if b"k" in data:
                    self._fire("a third signal arrived")
                    return
                if b"d" in data:
                    # A live report: built here, off the loop, so a blocked or busy loop
                    # cannot delay it, and written while the service carries on. Before
                    # "q": a report asked for just before run() ends is still written.
                    report = build_report(
                        self._lifecycle, "report on request", None, self.list_tasks
                    )
                    write_stderr(report, min(1.0, max(0.0, self._deadline() - time.monotonic())))
                if b"q" in data:
                    return

    def _unarmed(self) -> bool:
        """Whether nothing bounds the process yet: no deadline, no signal seen."""
        return self._signal_seen_at is None and math.isinf(self._state.deadline)

    def _look_for_signals(self, signums: bytes) -> None:
        # New bytes on the loop's wake-up socket, looked at without being read (the loop
        # reads them). A signal we handle bounds the process from now on, even if the
        # main thread is blocked and its Python-level handler, which starts the
        # shutdown, cannot run yet. Only while that handler is still ours: main may
        # have taken the signal over.
        state = self._state
        if self._signal_seen_at is None and any(
            n in self._signals and signal.getsignal(n) is state.signal_handler for n in signums
        ):
            self._signal_seen_at = time.monotonic()

    def _deadline(self) -> float:
        seen = self._signal_seen_at
        own = math.inf if seen is None else seen + self._state.grace
        return min(self._state.deadline, own)

    def _deadline_reason(self) -> str:
        state = self._state
        if state.trigger is None or (state.trigger.kind == "return" and not state.armed):
            if state.grace == 0:
                # Not a sign of a blocked thread: with no grace at all, the watchdog
                # may simply get there before the main thread's handler does.
                return "a signal arrived and the grace period is 0 s: ending at once"
            return (
                f"a signal arrived {state.grace:g} s ago, but the main thread never ran "
                "its handler (is it blocked in a system call?)"
            )
        if state.escalated:
            return "the program did not finish within 1 s of the second signal"
        return f"shutdown did not finish within the grace period ({state.grace:g} s)"

    def _fire(self, why: str) -> None:
        if not self._state.claim_end():
            # run() finished first and has told its status; the exit guard bounds what
            # is left of the interpreter's exit.
            return
        previous = claim_the_interpreter()
        try:
            self._lifecycle.emit(Event.FORCED_EXIT)
            report = build_report(self._lifecycle, why, FORCED_EXIT_STATUS, self.list_tasks)
            self._force(report, FORCED_EXIT_STATUS)
        finally:  # reached only where forcing does not end the process (testing)
            sys.setswitchinterval(previous)


class _Poller:
    """The watchdog's wait: its own socket, and new bytes on the loop's wake-up socket.

    The loop's socket is the process's signal wake-up fd, and the loop reads it. The
    watchdog only needs to know that a signal came while nothing bounds the process yet,
    so it waits for that socket edge-triggered (EPOLLET): woken once per write, never by
    bytes that are merely still there because the loop is blocked, and it peeks at them
    without reading. Where epoll is missing, it does without (the Python-level handler
    still arms the deadline as soon as the main thread runs it).
    """

    def __init__(self, own: socket.socket, signals: socket.socket) -> None:
        import socket  # deferred: costly to import, and only run() makes a watchdog

        self._own = own.fileno()
        self._signals = signals
        self._peek = socket.MSG_PEEK
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self.watching_signals = self._epoll is not None
        if self._epoll is not None:
            self._epoll.register(self._own, select.EPOLLIN)
            self._epoll.register(signals.fileno(), select.EPOLLIN | select.EPOLLET)

    def __enter__(self) -> _Poller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._epoll is not None:
            self._epoll.close()

    def stop_watching_signals(self) -> None:
        assert self._epoll is not None
        self.watching_signals = False
        self._epoll.unregister(self._signals.fileno())

    def wait(self, timeout: float | None) -> tuple[bool, bool]:
        """Wait up to ``timeout`` seconds; say whether each socket has something new."""
        if timeout is not None:
            # Past the clock's range (a grace of centuries): wake up and wait again.
            timeout = min(max(0.0, timeout), _LONGEST_WAIT)
        if self._epoll is None:
            ready = select.select([self._own], [], [], timeout)[0]
            return bool(ready), False
        events = self._epoll.poll(-1 if timeout is None else timeout)
        fds = {fd for fd, _ in events}
        return self._own in fds, self._signals.fileno() in fds

    def peek_signals(self) -> bytes:
        """The bytes waiting on the loop's socket, left there for the loop."""
        try:
            return self._signals.recv(65536, self._peek)
        except OSError:  # read by the loop meanwhile (or closed)
            return b""


# An hour: any wait longer than that just waits again.
_LONGEST_WAIT = 3600.0


def claim_the_interpreter() -> float:
    """Let this thread, about to force the exit, have the GIL back at once after each call.

    The report is built with many system calls (reading source lines, writing to stderr),
    each of which releases the GIL. A main thread busy in Python code (a task that
    swallows cancellation in a loop, say) then keeps it for a whole switch interval each
    time, 5 ms by default: measured under coverage, that delayed a forced exit by 3 to 8
    seconds. The process is about to end, so the main thread's speed no longer matters.
    Returns the interval it replaced.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    return previous


_exit_guards: list[threading.Event] = []


def guard_interpreter_exit(
    lifecycle: Lifecycle, signals: Iterable[int], status: int, dies_by: int | None = None
) -> None:
    """Keep the deadline while the interpreter exits after run() has ended the program.

    After run() raises SystemExit or KeyboardInterrupt, the interpreter still joins
    non-daemon threads (first asking idle executor workers to stop) and runs atexit
    handlers, with no time limit. A thread that sleeps until the deadline then ends the
    process if the interpreter is still exiting: the main thread is marked as no longer
    alive once the interpreter begins to shut down. If the caller caught the exception
    and carried on, the main thread is alive and the guard retires quietly.

    The process then ends with ``status``, the status run() decided and logged (or by
    the signal ``dies_by``): the shutdown itself finished in time, and the deadline only
    bounds what is left. The stuck report still says what held the exit up.
    """
    left = lifecycle.state.deadline - time.monotonic()
    if threading.current_thread() is not threading.main_thread() or math.isinf(left):
        return
    dismissed = threading.Event()
    _exit_guards.append(dismissed)
    # Python 3.12+ refuses to start threads once the interpreter is shutting down, so the
    # thread that would flush output on the way out is started now, idle until needed.
    flusher = _Flusher(signals)
    threading.Thread(
        target=_guard_exit,
        args=(lifecycle, max(0.0, left), dismissed, set(signals), flusher, status, dies_by),
        name="graceful_async exit watchdog",
        daemon=True,
    ).start()


def dismiss_exit_guards() -> None:
    """Retire the guards of earlier runs whose exceptions were caught."""
    for dismissed in _exit_guards:
        dismissed.set()
    _exit_guards.clear()


def _guard_exit(
    lifecycle: Lifecycle,
    left: float,
    dismissed: threading.Event,
    signals: set[int],
    flusher: _Flusher,
    status: int,
    dies_by: int | None,
) -> None:
    if signals:
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    if dismissed.wait(left) or threading.main_thread().is_alive():
        flusher.retire()
        return
    why = f"the process did not exit within the grace period ({lifecycle.state.grace:g} s)"
    claim_the_interpreter()
    lifecycle.emit(Event.FORCED_EXIT)
    force_exit(build_report(lifecycle, why, status, None), status, flusher, dies_by)


class _Flusher:
    """A daemon thread that flushes sys.stdout and sys.stderr when asked to, once.

    Flushing takes the streams' buffer locks, which a stuck thread may hold (say, one
    blocked writing to a full pipe), so the forced exit asks this thread to flush and
    waits only briefly for it.
    """

    def __init__(self, signals: Iterable[int] = ()) -> None:
        self._go = threading.Event()
        self._flush = True
        self._done = threading.Event()
        self._signals = set(signals)
        threading.Thread(target=self._run, name="graceful_async flusher", daemon=True).start()

    def _run(self) -> None:
        if self._signals:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._signals)
        self._go.wait()
        if self._flush:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.flush()
        self._done.set()

    def flush(self, timeout: float) -> None:
        self._go.set()
        self._done.wait(timeout)

    def retire(self) -> None:
        self._flush = False
        self._go.set()


def write_stderr(text: str, timeout: float = 1.0) -> None:
    """Write ``text`` to file descriptor 2, giving up after ``timeout`` seconds.

    Straight to the descriptor: sys.stderr's buffer lock may be held by a thread that is
    stuck, and the report must get out even if logging was never configured. In pieces
    no larger than PIPE_BUF, each only once select() says it fits, so that a pipe nobody
    reads cannot block the watchdog (and with it the deadline).
    """
    data = text.encode("utf-8", "replace")
    give_up = time.monotonic() + timeout
    with contextlib.suppress(OSError, ValueError):
        while data:
            left = give_up - time.monotonic()
            if left <= 0 or not select.select([], [2], [], left)[1]:
                return
            data = data[os.write(2, data[: select.PIPE_BUF]) :]


def force_exit(  # pragma: no cover - ends the process
    report: str, status: int, flusher: _Flusher | None = None, dies_by: int | None = None
) -> None:
    """Write ``report`` to stderr, flush what can be flushed, and end the process now.

    With ``dies_by``, by that signal's default action where it can, else with ``status``.
    """
    write_stderr(report)
    with contextlib.suppress(RuntimeError):  # no new threads at interpreter shutdown
        (flusher or _Flusher()).flush(0.25)
    if dies_by is not None:
        _die_by(dies_by)
    os._exit(status)


def _die_by(signum: int) -> None:  # pragma: no cover - ends the process
    # Python lets only the main thread set a signal's action, and ours is a Python-level
    # handler (or SIG_IGN), which would swallow the signal. So the default action is put
    # back through the C library, and the signal raised in this very thread, which must
    # not block it. As PID 1 the default action does nothing, and the caller exits with
    # the status instead (130 for SIGINT, which a shell would show either way).
    import ctypes  # deferred: only a forced exit after Ctrl+C needs it

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.signal(signum, None)  # SIG_DFL
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        signal.raise_signal(signum)

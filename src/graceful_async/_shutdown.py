"""The shutdown state of one run(): what triggered it, its deadline, and how to wake it.

Everything that can start or speed up a shutdown (a signal handler, another thread, a
task) writes here with plain attribute assignments and a byte on a socket. Nothing in this
module takes a lock, so the signal handler may call into it at any moment.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

# Not `import anyio.lowlevel`, which would load anyio's core at import time: anyio
# loads its submodules on first use, as attributes.
from ._lifecycle import Event, Phase

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle

TriggerKind = Literal["signal", "request", "exit", "error", "failure", "return"]

# The triggers that let work in flight finish: for them the pre-drain delay and the
# drain phase apply. sys.exit and errors cancel at once, as anyio does.
DRAINING_TRIGGERS = frozenset({"signal", "request", "failure"})

#: How long the program may still take after a second signal, in seconds.
ESCALATION_TIMEOUT = 1.0


@dataclass(frozen=True)
class Trigger:
    """What started the shutdown. The first trigger wins; later ones only escalate."""

    kind: TriggerKind
    signum: int | None = None
    reason: str | None = None
    exit_code: int = 0
    #: When it happened (time.monotonic()), set when the trigger is made, before it is
    #: published: a published trigger always has its time.
    at: float = field(default_factory=time.monotonic, compare=False)

    def describe(self) -> str:
        if self.kind == "signal" and self.signum is not None:
            return signal.Signals(self.signum).name
        if self.kind == "request":
            return f"shutdown requested ({self.reason})" if self.reason else "shutdown requested"
        if self.kind == "exit":
            return f"sys.exit({self.reason or ''})"
        if self.kind == "error":
            return f"error in main ({self.reason})"
        if self.kind == "failure":
            return str(self.reason)
        return "main returned"

    def headline(self) -> str:
        """The start of the log line that announces the shutdown."""
        if self.kind == "signal":
            return f"{self.describe()} received"
        if self.kind == "exit":
            return f"{self.describe()} called"
        return self.describe()


class Waker:
    """A socket pair: the write side may be poked from signal handlers and other threads.

    A non-blocking send() is async-signal-safe and takes no Python-level lock. When the
    buffer is full a wake-up is already pending, so the byte can be dropped.
    """

    def __init__(self) -> None:
        import socket  # deferred: costly to import, and only run() makes wakers

        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        """The write side's descriptor, for `signal.set_wakeup_fd`."""
        return self._writer.fileno()

    def poke(self, byte: bytes = b"\0") -> None:
        # Not contextlib.suppress(): the signal handler calls this, so keep it to one call.
        try:  # noqa: SIM105
            self._writer.send(byte)
        except OSError:  # full (a wake-up is pending anyway) or closed (run() is over)
            pass

    def read_some(self) -> bytes:
        """One read of what is there: under a stream of bytes, drain() might not end."""
        try:
            return self.reader.recv(65536)
        except OSError:
            return b""

    def drain(self) -> bytes:
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := self.reader.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.reader.close()
        self._writer.close()


class ShutdownState:
    """The core of one active run(): what the signal handlers and other threads write.

    Each field says which thread writes it. What only the loop writes lives in its
    `Lifecycle`; the one field written from there is the phase, which other threads read.
    """

    def __init__(self, grace: float, drain: float = 0.0, pre_drain_delay: float = 0.0) -> None:
        # Written once, here, by run()'s thread.
        self.grace = grace
        self.drain = drain
        self.pre_drain_delay = pre_drain_delay
        self.loop_thread = threading.get_ident()
        self.loop_waker = Waker()
        self.watchdog_waker = Waker()
        #: Our Python-level handler for the shutdown signals; written by run()'s thread as
        #: it installs the handlers, read by the watchdog.
        self.signal_handler: object = None
        #: Where the run is. Written by its `Lifecycle` only (on the loop, then by run()'s
        #: thread after the loop); read from any thread.
        self.phase = Phase.STARTING
        self.phase_started = time.monotonic()
        #: Whether the program said it is ready (set_ready(), or main starting). Written
        #: once, from any thread.
        self.marked_ready = False
        #: Units of work in flight (in_flight() blocks, items handed out by drain()).
        #: Changed from any thread with set.add()/discard(), single C calls.
        self.in_flight: set[object] = set()
        #: How many reloads were asked for so far; written only by the reload handler.
        self.reloads_requested = 0
        # A signal handler can interrupt another one (or request_shutdown() in a thread)
        # between any two bytecodes, and it may take no lock. So nothing here is ever
        # read-modified-written: the deadlines are derived from times that are each
        # written once, the trigger carries its own time, and "who was first" is decided
        # by single C calls, list.append() and next() on a counter. Once a trigger is
        # visible, everything derived from it is too.
        #: The triggers, first one first: appended by any thread and the signal handler.
        self._triggers: list[Trigger] = []
        #: Counters: next() is one C call, so two handlers never draw the same number.
        self._signal_numbers = itertools.count(1)
        self._reload_numbers = itertools.count(1)
        #: When a signal or request after main returned bounded the rest; when a second
        #: signal came. Each written once, by the signal handler or any thread.
        self._armed_at: float | None = None
        self._escalated_at: float | None = None
        # Taken once, by whichever ends the run: run() as it concludes (main thread) or
        # the watchdog as it forces the exit (watchdog thread). The other stands down,
        # so the status logged is the status the process ends with.
        self._end = threading.Lock()

    # --- called from signal handlers, other threads and the loop: no locks, no logging

    def trigger_shutdown(self, trigger: Trigger) -> bool:
        """Record ``trigger`` if it is the first one; it starts the grace period."""
        if self._triggers:
            return False
        self._triggers.append(trigger)
        if self._triggers[0] is not trigger:
            return False
        self.watchdog_waker.poke()
        self.loop_waker.poke()
        return True

    def signal_received(self, signum: int) -> None:
        number = next(self._signal_numbers)
        if number == 1:
            if not self.trigger_shutdown(Trigger("signal", signum=signum)):
                # After a softer trigger (main returned), a first signal still bounds
                # the process.
                self.arm()
        elif number == 2:
            self.escalate()
        else:
            self.watchdog_waker.poke(b"k")

    def arm(self) -> None:
        """Bound the rest of the process, after main returned: a signal or a request came.

        Set once; a signal handler and a thread racing here each write a time of a few
        microseconds apart, and either is right.
        """
        if self._armed_at is None:
            self._armed_at = time.monotonic()
            self.watchdog_waker.poke()
            self.loop_waker.poke()

    def reload_requested(self) -> None:
        """The reload signal arrived: count it and wake the loop."""
        self.reloads_requested = next(self._reload_numbers)
        self.loop_waker.poke()

    def work_done(self, unit: object) -> None:
        """Take ``unit`` off the in-flight set; the last one out ends the drain phase."""
        self.in_flight.discard(unit)
        if not self.in_flight and self.phase is Phase.DRAINING:
            self.loop_waker.poke()

    def claim_end(self) -> bool:
        """Claim the end of the run; False if it was claimed already. Not for handlers."""
        return self._end.acquire(blocking=False)

    def escalate(self) -> None:
        self._escalated_at = time.monotonic()
        self.watchdog_waker.poke()
        self.loop_waker.poke()

    # --- queries

    @property
    def trigger(self) -> Trigger | None:
        """The first trigger, which decides the reason and the exit status."""
        return self._triggers[0] if self._triggers else None

    @property
    def armed(self) -> bool:
        """Whether a signal or a request came after main returned (which bounds the rest)."""
        return self._armed_at is not None

    @property
    def escalated(self) -> bool:
        return self._escalated_at is not None

    @property
    def started_at(self) -> float | None:
        """When the first trigger happened (time.monotonic())."""
        trigger = self.trigger
        return None if trigger is None else trigger.at

    @property
    def deadline(self) -> float:
        """When the watchdog ends the process (time.monotonic())."""
        trigger = self.trigger
        deadline = math.inf
        if trigger is not None and trigger.kind != "return":
            deadline = trigger.at + self.grace
        elif self._armed_at is not None:
            # main returning is no reason to kill the process: its hooks are bounded
            # cooperatively, and the watchdog is armed only if a signal or a request
            # comes.
            deadline = self._armed_at + self.grace
        if self._escalated_at is not None:
            deadline = min(deadline, self._escalated_at + ESCALATION_TIMEOUT)
        return deadline

    @property
    def soft_deadline(self) -> float:
        """When cooperative work (cleanup scopes, hooks) must stop.

        A little before the deadline, so that a cancelled hook still leaves the process
        time to exit cleanly; at once after a second signal.
        """
        trigger = self.trigger
        soft = math.inf if trigger is None else trigger.at + self.grace - exit_reserve(self.grace)
        if self._escalated_at is not None:
            soft = min(soft, self._escalated_at)
        return soft

    @property
    def drain_begins_at(self) -> float:
        """When the drain phase begins: after the pre-drain delay, for the triggers that
        drain (time.monotonic()). A second signal cuts the delay short."""
        trigger = self.trigger
        if trigger is None:
            return math.inf
        begins = trigger.at
        if trigger.kind in DRAINING_TRIGGERS:
            begins += self.pre_drain_delay
        if self._escalated_at is not None:
            begins = min(begins, self._escalated_at)
        return begins

    @property
    def drain_deadline(self) -> float:
        """When the drain phase ends at the latest (time.monotonic())."""
        trigger = self.trigger
        if trigger is None:
            return math.inf
        return min(self.drain_begins_at + self.drain, self.soft_deadline)

    @property
    def stopping(self) -> bool:
        """Whether the program should stop taking work: the drain phase has begun.

        True from the trigger on, except during the pre-drain delay, in which the program
        keeps serving as before (it only reports itself not ready).
        """
        # drain() asks for every item: the common answer (no trigger) costs one check.
        if not self._triggers:
            return False
        return self.phase.drain_has_begun or time.monotonic() >= self.drain_begins_at

    @property
    def ready(self) -> bool:
        """Marked ready, and no shutdown triggered (not even in the pre-drain delay)."""
        return self.marked_ready and self.trigger is None

    def time_left(self) -> float:
        """Seconds of cooperative time left; ``math.inf`` before any trigger."""
        return max(0.0, self.soft_deadline - time.monotonic())

    def close(self) -> None:
        self.loop_waker.close()
        self.watchdog_waker.close()


def exit_reserve(grace: float) -> float:
    """The slice of the grace period kept for the process to exit after the last hook."""
    return min(0.5, grace / 10)


# The active run, if any. Set and cleared by run() under _active_lock; read without the
# lock (a single attribute read) by request_shutdown(), the scopes and the features.
_active: Lifecycle | None = None
_active_lock = threading.Lock()
# The last run that ended, until the next one begins. After run() returns, the
# interpreter still waits for non-daemon threads, which must go on seeing the shutdown.
_ended: ShutdownState | None = None


def current_state() -> ShutdownState | None:
    """The active run's core, from any thread."""
    run = _active
    return None if run is None else run.state


def current_run() -> Lifecycle | None:
    """The active run, from any thread: to read, or to act on from its loop only."""
    return _active


def run_on_this_loop() -> Lifecycle | None:
    """The active run, if this thread runs its event loop; else None.

    An event loop in another thread (a worker thread's own anyio.run(), say) is not the
    one run() shuts down, so there its scopes, drains and workers behave as outside run().
    """
    run = _active
    if run is None or run.loop_thread != threading.get_ident():
        return None
    return run


@contextmanager
def active_run(run: Lifecycle) -> Iterator[Lifecycle]:
    """Make ``run`` the process's one active run for the duration of the block.

    When the block ends, the features that attached to it hear `Event.ENDED`.
    """
    global _active, _ended  # noqa: PLW0603
    state = run.state
    with _active_lock:
        if _active is not None:
            state.close()
            raise RuntimeError(
                "graceful_async.run() is already running in this process; "
                "it owns the signal handlers and the exit status, so only one run() "
                "may be active at a time"
            )
        _active = run
        _ended = None
    try:
        yield run
    finally:
        with _active_lock:
            _active = None
            _ended = state
        try:
            run.emit(Event.ENDED)
        finally:
            state.close()


def _observed() -> ShutdownState | None:
    """The run that the shutdown queries describe: the active one, else the last one."""
    run = _active
    return run.state if run is not None else _ended


def request_shutdown(reason: str | None = None, *, exit_code: int = 0) -> None:
    """Start a graceful shutdown of the running program, as a signal would.

    Safe to call from a task, from synchronous code on the event loop thread, and from
    any other thread. Calling it again once shutdown has begun does nothing. After main
    returned (while the shutdown hooks run), it changes no status but bounds the hooks
    and the interpreter's exit by the grace period, as a signal would.

    Args:
        reason: Free text for the log and the shutdown reason.
        exit_code: The status the process ends with, from 0 to 255.

    Raises:
        RuntimeError: If no `graceful_async.run()` is active.
        TypeError: If ``exit_code`` is not an int or ``reason`` is not a string.
        ValueError: If ``exit_code`` is outside 0-255.

    Example:
        ```python
        if config_changed_in_an_incompatible_way():
            graceful_async.request_shutdown("config changed", exit_code=3)
        ```
    """
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"reason must be a string or None, got {reason!r}")
    check_exit_code("exit_code", exit_code)
    state = current_state()
    if state is None:
        raise RuntimeError(
            "request_shutdown() needs an active graceful_async.run(); "
            "call it from the program that run() is running"
        )
    if not state.trigger_shutdown(Trigger("request", reason=reason, exit_code=exit_code)):
        trigger = state.trigger
        if trigger is not None and trigger.kind == "return":
            # After main returned, a request bounds the hooks and the exit, as a signal
            # would; the status stays main's.
            state.arm()


def shutdown_requested() -> bool:
    """Tell whether the running program has begun to shut down.

    Works from any task and any thread. Before any `graceful_async.run()` it returns
    False. Once run() has returned it stays True until the next run() begins, so that
    threads the interpreter still waits for at exit see that the program is ending.

    With a pre-drain delay (``run(pre_drain_delay=...)``), it turns True only when the
    delay is over and the drain begins: until then the program keeps working as before,
    and only `is_ready` has turned False.

    Returns:
        True once a signal, `request_shutdown`, ``sys.exit``, an error or main's return
        has started the shutdown.
    """
    state = _observed()
    return state is not None and state.stopping


def shutdown_reason() -> str | None:
    """Say what started the shutdown, in a few words; None before it has begun.

    Works from any task and any thread, and after run() has returned (like
    `shutdown_requested`).

    Returns:
        ``"SIGTERM"``, ``"shutdown requested (deploy)"``, ``"sys.exit(3)"``,
        ``"error in main (...)"``, ``"worker 'consume' failed: ..."`` or ``"main
        returned"``; None before the shutdown (and during the pre-drain delay, like
        `shutdown_requested`), and before any `graceful_async.run()`.
    """
    state = _observed()
    if state is None or state.trigger is None or not state.stopping:
        return None
    return state.trigger.describe()


def time_left() -> float:
    """Seconds left in the grace period for cooperative work.

    Works from any task and any thread, and after run() has returned (like
    `shutdown_requested`). It counts down to a little before the hard deadline (the
    slice the process keeps for its own exit), and is 0 after a second signal. It is the
    whole grace period, not the drain phase: work in flight is cancelled at the drain
    deadline, which comes earlier.

    Returns:
        The seconds left, or ``math.inf`` before the shutdown, and before any
        `graceful_async.run()`.

    Example:
        ```python
        await graceful_async.wait_shutdown_requested()
        with graceful_async.cleanup_scope():  # main's tree may be cancelled any moment
            with anyio.move_on_after(graceful_async.time_left() - 1):
                await flush_everything()
        ```
    """
    state = _observed()
    return math.inf if state is None else state.time_left()


async def wait_shutdown_requested() -> None:
    """Wait until the shutdown has begun; return at once if it already has.

    The drain phase starts at the same moment. It lasts while work is in flight (see
    `in_flight` and `drain`) and ends at once when none is, and then main's task tree is
    cancelled: a task that waits here may be cancelled at its next ``await``, so put
    what it must still do in a `cleanup_scope`. With a pre-drain delay, that moment is
    the end of the delay, not the signal.

    Raises:
        RuntimeError: Outside `graceful_async.run()`, or from an event loop other
            than run()'s own (another thread's).

    Example:
        ```python
        async def announce_leaving(peers):
            await graceful_async.wait_shutdown_requested()
            with graceful_async.cleanup_scope(timeout=1):
                await peers.broadcast("leaving")
        ```
    """
    run = run_on_this_loop()
    if run is None:
        raise RuntimeError(
            "wait_shutdown_requested() needs an active graceful_async.run() and must be "
            "awaited on its event loop; other threads can poll shutdown_requested()"
        )
    await run.wait_requested()


def set_ready() -> None:
    """Say that the service is ready to take work.

    `is_ready` turns True, and under systemd (``Type=notify``) the service manager is
    told ``READY=1``. By default `graceful_async.run()` does this as main starts; pass
    ``run(ready_on_start=False)`` to decide the moment yourself, for example once a
    server listens or a cache is warm. Safe from any thread; calling it again, or once
    the shutdown has begun, does nothing.

    Raises:
        RuntimeError: If no `graceful_async.run()` is active.

    Example:
        ```python
        async def main() -> None:
            await warm_up_cache()
            graceful_async.set_ready()
            await serve_forever()

        graceful_async.run(main, ready_on_start=False)
        ```
    """
    run = _active
    if run is None:
        raise RuntimeError(
            "set_ready() needs an active graceful_async.run(); "
            "call it from the program that run() is running"
        )
    state = run.state
    if state.marked_ready or state.trigger is not None:
        return
    state.marked_ready = True
    run.emit(Event.READY)


def is_ready() -> bool:
    """Tell whether the service is ready for new work, as a readiness probe asks.

    True once the service is marked ready (see `set_ready`) and until its shutdown is
    triggered. It turns False at the signal itself, before the pre-drain delay, so that
    load balancers stop sending work while the service still serves what reaches it.
    Works from any task and any thread; False outside `graceful_async.run()`.

    Returns:
        Whether to report the service ready.

    Example:
        ```python
        async def readyz(request):
            ready = graceful_async.is_ready()
            return PlainTextResponse("ok" if ready else "draining", 200 if ready else 503)
        ```
    """
    state = current_state()
    return state is not None and state.ready


def check_exit_code(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int from 0 to 255, got {value!r}")
    if not 0 <= value <= 255:
        raise ValueError(f"{name} must be an int from 0 to 255, got {value!r}")
    return value

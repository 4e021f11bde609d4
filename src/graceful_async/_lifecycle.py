"""The loop's side of a run: its phases, its bookkeeping, and the events features attach to.

    STARTING -> RUNNING -> [PRE_DRAIN ->] DRAINING -> CANCELLING -> HOOKS -> EXITING
    -> INTERPRETER_EXIT

`Lifecycle` makes every transition, on the loop (and, for the last one, in run() after the
loop): it checks that the transition is allowed, logs it once, and records when the phase
began. It owns what only the loop writes (the cancel scopes to bound, the hooks that ran,
the workers running) and tells the features that attached to the run when something
happens to it (`Event`): the core never names a feature.

The signal handler and other threads write only `ShutdownState`, the small core in
`_shutdown`; the one fact they read back from here is the phase, which `enter` writes there.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast, final

import anyio

from ._log import logger

if TYPE_CHECKING:
    from anyio import CancelScope
    from anyio import Event as AnyioEvent

    from ._shutdown import ShutdownState

A = TypeVar("A")


@final
class Phase(enum.Enum):
    """Where a run is in its life; the value is how the log and the stuck report say it."""

    STARTING = "starting"
    RUNNING = "running"
    PRE_DRAIN = "pre-drain"
    DRAINING = "draining"
    CANCELLING = "cancelling"
    HOOKS = "hooks"
    EXITING = "exiting"
    INTERPRETER_EXIT = "interpreter exit (joining non-daemon threads, then atexit handlers)"

    @property
    def drain_has_begun(self) -> bool:
        """Whether a run in this phase has begun its drain: it takes no new work."""
        return self not in _BEFORE_DRAIN


_BEFORE_DRAIN = frozenset({Phase.STARTING, Phase.RUNNING, Phase.PRE_DRAIN})

_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.RUNNING}),
    # The pre-drain delay applies only to the triggers that drain, and only while main
    # runs; otherwise the drain begins at once (and ends at once if nothing is in flight).
    Phase.RUNNING: frozenset({Phase.PRE_DRAIN, Phase.DRAINING}),
    Phase.PRE_DRAIN: frozenset({Phase.DRAINING}),
    Phase.DRAINING: frozenset({Phase.CANCELLING}),
    Phase.CANCELLING: frozenset({Phase.HOOKS}),
    Phase.HOOKS: frozenset({Phase.EXITING}),
    Phase.EXITING: frozenset({Phase.INTERPRETER_EXIT}),
    Phase.INTERPRETER_EXIT: frozenset(),
}

# The phases whose length the log reports when they end; DRAINING only when it had work
# in flight to wait for (the caller then says what ended it).
_TIMED = frozenset({Phase.PRE_DRAIN, Phase.CANCELLING, Phase.HOOKS})


@final
class Event(enum.Enum):
    """What a feature can be told about a run. Listeners take no argument.

    Each is emitted once per run, on the loop's thread, unless said otherwise.
    """

    #: The service was marked ready. From any thread: a listener must be thread-safe.
    READY = "ready"
    #: The loop has seen the first trigger (before any pre-drain delay).
    STOPPING = "stopping"
    #: A signal or request came after main returned: the rest is now bounded.
    ARMED = "armed"
    #: The drain phase begins: no new work is to be taken.
    DRAIN_BEGINS = "drain begins"
    #: Main's task tree is being cancelled.
    CANCEL = "cancel"
    #: The reload signal arrived (once per signal, while main runs).
    RELOAD = "reload"
    #: A reload began, and ended (once per reload).
    RELOADING = "reloading"
    RELOADED = "reloaded"
    #: The watchdog is ending the process now. From the watchdog's or the exit guard's
    #: thread, while the main thread may hold any lock: a listener takes no lock, logs
    #: nothing and only makes system calls.
    FORCED_EXIT = "forced exit"
    #: The run has ended, on run()'s thread: release what the feature holds.
    ENDED = "ended"


@final
class Lifecycle:
    """Owns one run's phase and its loop-side bookkeeping; features attach to it."""

    def __init__(self, state: ShutdownState) -> None:
        #: The core that the signal handler and other threads write.
        self.state = state
        self.loop_thread = state.loop_thread
        #: Set once the drain has begun; wait_shutdown_requested() waits on it. Made on
        #: the loop (anyio's primitives need one).
        self.requested: AnyioEvent | None = None
        #: The backend's current-task function, for drain()'s per-task bookkeeping.
        self.current_task: Callable[[], object] = lambda: None
        #: Shielded scopes (cleanup scopes, hooks, a server's own shutdown) that the soft
        #: deadline bounds and a second signal cancels. See `bounded`.
        self.bounded_scopes: set[CancelScope] = set()
        #: Cancel scopes of drain() loops waiting for their next item.
        self.item_waits: set[CancelScope] = set()
        #: The shutdown hooks running now, with when each began (read by the report).
        self.running_hooks: dict[str, float] = {}
        #: Each shutdown hook that ran, in order, and whether it succeeded in time.
        self.finished_hooks: list[tuple[str, bool]] = []
        #: The workers running now, by a token of their own (read by the report).
        self.running_workers: dict[object, str] = {}
        #: Workers whose failure was not restarted: any makes the exit status 1.
        self.failed_workers: list[str] = []
        #: The wake-up fd that ours (the loop waker) replaced, to which the loop passes
        #: signal bytes on (-1: none).
        self.forward_fd = -1
        #: The run's own tasks (the relay, the features' tasks, main's caller), which
        #: the sweep of stray asyncio tasks leaves alone. Each adds itself as it starts.
        self.own_tasks: set[object] = set()
        #: (name, task) pairs that run beside main for the whole run, each started with
        #: anyio's `TaskGroup.start` (so it takes a ``task_status``).
        self.tasks_beside_main: list[tuple[str, Callable[..., Coroutine[Any, Any, object]]]] = []
        self._listeners: dict[Event, list[Callable[[], object]]] = {e: [] for e in Event}
        self._unwound: list[Callable[[], Awaitable[object]]] = []
        self._timers: list[Callable[[], float]] = []
        self._attached: dict[object, object] = {}

    @property
    def phase(self) -> Phase:
        return self.state.phase

    def enter(self, phase: Phase, done: str = "") -> None:
        """Move on to ``phase``, logging how long the phase that ends took (and ``done``).

        Raises:
            RuntimeError: If the run cannot go from its current phase to ``phase``.
        """
        state = self.state
        current = state.phase
        if phase not in _ALLOWED[current]:
            raise RuntimeError(
                f"graceful_async internal error: a run cannot go from the {current.value} "
                f"phase to the {phase.value} phase"
            )
        now = time.monotonic()
        if current in _TIMED or (current is Phase.DRAINING and done):
            detail = f" ({done})" if done else ""
            logger.info("%s phase took %.3f s%s", current.value, now - state.phase_started, detail)
        state.phase_started = now
        state.phase = phase

    # --- features attach here

    def attached(self, feature: Callable[[Lifecycle], A]) -> A:
        """The run's one instance of ``feature``, made (and so attached) on first use.

        ``feature`` is a class whose constructor takes the lifecycle and subscribes to
        the events it needs.
        """
        found = self._attached.get(feature)
        if found is None:
            found = self._attached[feature] = feature(self)
        return cast("A", found)

    def find(self, feature: type[A]) -> A | None:
        """The run's instance of ``feature``, if one attached; None otherwise."""
        return cast("A | None", self._attached.get(feature))

    def subscribe(self, event: Event, listener: Callable[[], object]) -> None:
        """Call ``listener`` when ``event`` happens (see `Event` for on which thread)."""
        self._listeners[event].append(listener)

    def subscribe_unwound(self, listener: Callable[[], Awaitable[object]]) -> None:
        """Await ``listener`` once main's tree has unwound, before the shutdown hooks.

        In the order they subscribed; a second signal cancels what is left (each runs in
        main's own cancelled world only if it shields itself, with `bounded`).
        """
        self._unwound.append(listener)

    def run_beside_main(self, name: str, task: Callable[..., Coroutine[Any, Any, object]]) -> None:
        """Start ``task`` beside main when the loop starts, and cancel it at the end.

        It is started with `anyio.abc.TaskGroup.start`; it should add itself to
        `own_tasks` before it calls ``task_status.started()``.
        """
        self.tasks_beside_main.append((name, task))

    def wake_me(self, when: Callable[[], float]) -> None:
        """Wake the loop at ``when()`` (time.monotonic()), asked again at each wake-up."""
        self._timers.append(when)

    def emit(self, event: Event) -> None:
        # A copy: a listener may subscribe another, and another thread may be iterating.
        for listener in tuple(self._listeners[event]):
            listener()

    async def unwound(self) -> None:
        # By index: a listener may attach another feature (a child started in a
        # reload hook's cleanup, say), which must still be stopped.
        done = 0
        while done < len(self._unwound):
            await self._unwound[done]()
            done += 1

    def next_wake_up(self) -> float:
        return min((when() for when in self._timers), default=float("inf"))

    # --- what the loop's code registers while it runs

    @contextmanager
    def bounded(self, scope: CancelScope) -> Iterator[CancelScope]:
        """Register ``scope`` for the block: the soft deadline pulls its deadline in, and a
        second signal cancels it (at once, if one came already)."""
        self.bounded_scopes.add(scope)
        if self.state.escalated:
            scope.cancel("second signal")
        try:
            yield scope
        finally:
            self.bounded_scopes.discard(scope)

    async def wait_requested(self) -> None:
        """Return once the drain has begun (at once if it has)."""
        if not self.state.stopping and self.requested is not None:
            # The loop sets the event when the drain begins, which happens after any
            # trigger set between the check above and this wait.
            await self.requested.wait()
        else:
            await anyio.lowlevel.checkpoint()

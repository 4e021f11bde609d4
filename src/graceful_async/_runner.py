"""run() and its `Runner`: the phases of a service's life, in the order they happen.

    validate -> install handlers -> run main -> (trigger: not ready) -> pre-drain delay
    -> drain -> cancel main's tree -> sweep stray tasks -> main unwound (reloads stop,
    children are stopped) -> hooks -> verdict -> restore handlers -> interpreter exit

The watchdog thread guards everything from the first trigger to the end of the process.
This module composes the run: it attaches the features that run()'s options ask for (the
reload hooks, systemd's notifications) to the run's `Lifecycle`, and the core modules
never name them.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio

from . import _hooks
from ._backends import backend_named
from ._config import RunConfig, make_config
from ._exit import Outcome, Verdict, decide, remove_quiet_hook
from ._lifecycle import Lifecycle, Phase
from ._log import logger
from ._relay import Relay
from ._reload import Reloader
from ._report import RELAY_TASK_NAME
from ._scopes import bounded_scope
from ._shutdown import ShutdownState, Trigger, active_run, set_ready
from ._signals import InstalledHandlers, handlers_installed
from ._systemd import SystemdNotifications
from ._watchdog import FORCED_EXIT_STATUS, Watchdog, dismiss_exit_guards, guard_interpreter_exit

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import TypeVarTuple, Unpack
    else:
        from typing_extensions import TypeVarTuple, Unpack

    PosArgsT = TypeVarTuple("PosArgsT")

T = TypeVar("T")


def run(
    main: Callable[[Unpack[PosArgsT]], Awaitable[T]],
    *args: Unpack[PosArgsT],
    backend: str = "asyncio",
    backend_options: Mapping[str, Any] | None = None,
    grace: float | None = None,
    drain: float | None = None,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
    exit_codes: Mapping[int, int] | None = None,
    dump_signal: int | None = None,
    reload_signal: int | None = None,
    pre_drain_delay: float | None = None,
    ready_on_start: bool = True,
    fast_exit: bool = False,
) -> T:
    """Run ``main(*args)`` and shut it down gracefully on SIGINT, SIGTERM or request.

    On the first trigger (a signal in ``signals``, `request_shutdown`, ``sys.exit``, a
    failed `worker`, or an error escaping main), main's whole task tree is cancelled,
    every pending ``finally`` runs, and the `on_shutdown` hooks run, last registered
    first. For a signal, `request_shutdown` and a failed `worker`, a drain phase comes
    first: work marked `in_flight` (and items handed out by `drain`) may finish, for up
    to ``drain`` seconds and not a moment longer than needed. (``sys.exit`` and errors
    cancel their task group's other tasks at once, as anyio does; use
    ``request_shutdown(exit_code=...)`` to stop with a status and still drain.) A second
    signal cancels everything still running and gives the program 1 s; a third ends it
    at once. Whatever user code does, the process has ended ``grace`` seconds after the
    first trigger: a watchdog outside the event loop writes a report of what was stuck
    to stderr and exits with `FORCED_EXIT_STATUS`.

    Args:
        main: The async function to run.
        *args: Positional arguments for ``main``.
        backend: ``"asyncio"`` or ``"trio"``.
        backend_options: Passed to `anyio.run`, for example ``{"use_uvloop": True}``.
        grace: Seconds from the first trigger until the process has ended. Defaults to
            the ``GRACEFUL_ASYNC_GRACE`` environment variable, else 8.0 (inside
            ``docker stop``'s 10 s).
        drain: Seconds the work in flight may take to finish once the shutdown has
            begun, counted within (and shorter than) ``grace``. Defaults to the
            ``GRACEFUL_ASYNC_DRAIN`` environment variable, else half the grace period.
            The drain phase ends as soon as nothing is in flight, so a program that
            marks nothing never waits.
        signals: The signals that start a graceful shutdown. A SIGINT that the parent
            process left ignored stays ignored.
        exit_codes: Exit status per signal, overriding the default of ``128 + N``; for
            example ``{signal.SIGTERM: 0}``.
        dump_signal: A signal, such as ``signal.SIGUSR1``, on which to write a report of
            every task and thread to stderr while the service keeps running (the stuck
            report, on demand). Off by default, since handling a signal changes what
            it does when nobody handles it (SIGUSR1 would otherwise end the process).
        reload_signal: A signal, such as ``signal.SIGHUP``, on which to run the
            `on_reload` hooks, one at a time, while the service keeps running. Off by
            default, like ``dump_signal``.
        pre_drain_delay: Seconds between a shutdown signal (or `request_shutdown`) and
            the start of the drain, in which the service reports itself not ready
            (`is_ready`) but keeps working as before, so that load balancers can stop
            sending it traffic first. Counted within ``grace``, and shorter than half
            of it. Defaults to the
            ``GRACEFUL_ASYNC_PRE_DRAIN_DELAY`` environment variable, else 0.
        ready_on_start: Mark the service ready (`set_ready`) as main starts. Pass
            False to call `set_ready` yourself when the service is ready.
        fast_exit: Once the event loop has closed, free at once what cancelled anyio
            tasks left in reference cycles on asyncio and uvloop (anyio's task groups
            leave about 30 objects per cancelled task), so that the interpreter's last
            garbage collection, which the process waits for as it exits, does not have
            to find them: at 10,000 cancelled tasks the exit took about a third less.
            Nothing is skipped: those objects are freed by reference counting, with
            their finalizers (files are flushed and closed, ``__del__`` methods run)
            before run() returns or raises, and the interpreter then exits as usual,
            with atexit handlers, flushed output and module teardown. The only visible
            change is that the local variables of anyio's done callback are cleared
            from the cancelled tasks' ``CancelledError`` tracebacks. It costs one walk
            over the objects the process holds, a few milliseconds per 100,000. No
            effect on trio, whose cancelled tasks leave no such cycles.

    Returns:
        main's return value, when main finished by itself.

    Raises:
        SystemExit: After a shutdown started by a signal (status ``128 + N``, or as
            mapped in ``exit_codes``), by `request_shutdown` or by ``sys.exit``.
        KeyboardInterrupt: After a shutdown started by SIGINT. If it is not caught,
            the interpreter exits by SIGINT, as the shell expects, without a traceback.
        TypeError: If ``main`` is not an async function, or an argument has the wrong
            type.
        ValueError: If ``backend``, ``grace``, ``drain``, ``pre_drain_delay``,
            ``signals``, ``exit_codes``, ``dump_signal`` or ``reload_signal`` is
            invalid, ``pre_drain_delay`` is not shorter than half of ``grace``, or
            ``pre_drain_delay`` plus ``drain`` is not shorter than ``grace``.
        ModuleNotFoundError: If trio or uvloop is asked for but not installed.
        RuntimeError: If another `run()` is active in this process.

    Example:
        ```python
        import anyio
        import graceful_async

        async def main() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                with graceful_async.cleanup_scope(timeout=2):
                    await flush_buffers()

        graceful_async.run(main)
        ```
    """
    config = make_config(
        main,
        backend,
        backend_options,
        grace,
        signals,
        exit_codes,
        drain,
        dump_signal,
        pre_drain_delay=pre_drain_delay,
        ready_on_start=ready_on_start,
        reload_signal=reload_signal,
        fast_exit=fast_exit,
    )
    remove_quiet_hook()
    dismiss_exit_guards()
    return Runner(config).run(lambda: main(*args))


@final
class Runner:
    """One run of a service: the phases from start-up to the verdict.

    `run()` drives one to the end of the process (`run`); `graceful_async.testing`
    drives one inside a test's own event loop (`activated`, then `supervise` and
    `verdict`), as `asyncio.Runner` and anyio's test runner are the seams of theirs.

    Args:
        config: The validated options of `run()`.
        install_handlers: Route the shutdown signals to the run. Off in tests, which
            feed signals to `ShutdownState.signal_received` themselves.
        sweep_stray_tasks: At the end, cancel the asyncio tasks that live outside
            main's tree. Off in tests, where those are the test's own.
        notify_systemd: Speak systemd's notify protocol when ``NOTIFY_SOCKET`` asks.
        force: What the watchdog calls at the deadline with the stuck report and the
            status; by default it ends the process.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        install_handlers: bool = True,
        sweep_stray_tasks: bool = True,
        notify_systemd: bool = True,
        force: Callable[[str, int], object] | None = None,
    ) -> None:
        self.config = config
        self.state = ShutdownState(config.grace, config.drain, config.pre_drain_delay)
        self.lifecycle = Lifecycle(self.state)
        self._install_handlers = install_handlers
        self._sweep = sweep_stray_tasks
        self._notify_systemd = notify_systemd
        self._force = force
        self._handlers = InstalledHandlers()
        self._watchdog: Watchdog | None = None
        self._escaped: list[BaseException] = []

    @contextmanager
    def activated(self) -> Iterator[Runner]:
        """Make this the process's active run, with its handlers and its watchdog.

        Raises:
            RuntimeError: If another run is active.
        """
        config, lifecycle = self.config, self.lifecycle
        with contextlib.ExitStack() as stack:
            stack.enter_context(active_run(lifecycle))
            stack.enter_context(_hooks.reopened_afterwards())
            if self._notify_systemd:
                SystemdNotifications.attach(lifecycle)
            if config.reload_signal is not None:
                lifecycle.attached(Reloader)
            if self._install_handlers:
                # The handlers outlive the watchdog: a signal while it is joined is ours.
                self._handlers = stack.enter_context(
                    handlers_installed(
                        self.state, config.signals, config.dump_signal, config.reload_signal
                    )
                )
            signals = config.signals if self._install_handlers else ()
            self._watchdog = stack.enter_context(Watchdog(lifecycle, signals, self._force))
            yield self

    def run(self, call_main: Callable[[], Awaitable[T]]) -> T:
        """Run main on a new event loop to the end, and conclude as the verdict says."""
        config, state = self.config, self.state
        with self.activated():
            backend = backend_named(config.backend)
            outcome = backend.run(
                config.backend_options, lambda: self.supervise(call_main), self._escape
            )
            if config.fast_exit and (freed := backend.free_cycles()) is not None:
                logger.info("fast exit: freed the reference cycles of %d cancelled task(s)", freed)
            outcome.adopt(self._escaped)
            verdict = self.verdict(outcome)
            assert state.started_at is not None
            if not state.claim_end():
                # The watchdog got there first and is ending the process with the forced
                # status: logging the status that run() would have given would be a lie.
                threading.Event().wait()
            logger.info(
                "shutdown complete in %.3f s; exit status: %s",
                time.monotonic() - state.started_at,
                verdict.description,
            )
            if not verdict.returns:
                # The program ends: until the deadline, a further signal must not.
                self._handlers.keep_ours(state.deadline, state.grace)
        # The status only run() decided: where run() returns, what the program does next
        # decides it, and a forced exit says "did not stop in time" instead.
        status = FORCED_EXIT_STATUS if verdict.returns else verdict.status
        self.lifecycle.enter(Phase.INTERPRETER_EXIT)
        guard_interpreter_exit(self.lifecycle, config.signals, status, verdict.dies_by)
        return verdict.conclude()  # type: ignore[no-any-return]

    def verdict(self, outcome: Outcome) -> Verdict:
        """How the run ends, decided once: every reader of the status reads this."""
        trigger = self.state.trigger
        assert trigger is not None
        failed = bool(self.lifecycle.failed_workers)
        return decide(outcome, trigger, self.config.exit_codes, failed)

    def _escape(self, exc: BaseException) -> None:
        # An exception that escaped the loop in a task outside main's reach (asyncio's
        # exception handler saw it). From a hook, it is that hook's failure, which the
        # hooks' runner logs (as on trio, where it never leaves the loop), not the
        # program's outcome.
        if self.state.phase is Phase.HOOKS:
            return
        self._escaped.append(exc)
        self.state.trigger_shutdown(_trigger_for(Outcome.of(exc)))

    async def supervise(self, call_main: Callable[[], Awaitable[Any]]) -> Outcome:
        """Run main through the phases, up to the end of the hooks, on the running loop."""
        state, lifecycle, config = self.state, self.lifecycle, self.config
        assert self._watchdog is not None, "supervise() needs activated()"
        backend = backend_named(config.backend)
        self._watchdog.list_tasks = backend.task_lister()
        lifecycle.current_task = backend.current_task_getter()
        if lifecycle.requested is None:  # graceful_async.testing makes it before it yields
            lifecycle.requested = anyio.Event()
        outcome = Outcome()
        main_scope = anyio.CancelScope()
        relay = Relay(lifecycle, main_scope, bool(self._handlers.handled))
        # "running" from here on: the relay may apply a trigger (a signal that came during
        # start-up) as soon as it has started, even before main does, and it begins the
        # drain only from a running phase. Cancelling main's scope before main enters it
        # still cancels main at its first checkpoint.
        lifecycle.enter(Phase.RUNNING)
        try:
            async with anyio.create_task_group() as tg:
                lifecycle.own_tasks.add(lifecycle.current_task())
                # The features' tasks first: the relay may pass them a request at once.
                for name, task in lifecycle.tasks_beside_main:
                    await tg.start(task, name=name)
                await tg.start(relay.run, name=RELAY_TASK_NAME)
                relay.apply()
                if config.ready_on_start:
                    set_ready()
                try:
                    with main_scope:
                        outcome.value = await call_main()
                except BaseException as exc:
                    # Everything that escapes main is the program's own outcome, even a
                    # cancellation that main caused itself (awaiting a task it cancelled).
                    outcome.capture(exc)
                relay.main_done = True
                state.trigger_shutdown(_trigger_for(outcome))
                relay.apply()

                stray = []
                if self._sweep:
                    stray = backend.cancel_stray_tasks(lifecycle.own_tasks)
                    with bounded_scope():
                        await backend.wait_for_tasks(stray)
                await lifecycle.unwound()

                done = f"main's task tree unwound; {len(stray)} stray task(s) cancelled"
                lifecycle.enter(Phase.HOOKS, done)
                count = await _hooks.run_hooks(lifecycle)
                tg.cancel_scope.cancel()
        finally:
            # Done with the tasks: the exit guard keeps the lifecycle until the deadline,
            # and finished tasks would keep what their frames held (a socket, say) alive.
            lifecycle.own_tasks.clear()
        lifecycle.enter(Phase.EXITING, f"{count} hook(s) ran")
        return outcome


def _trigger_for(outcome: Outcome) -> Trigger:
    if outcome.error is not None:
        return Trigger("error", reason=repr(outcome.error))
    if outcome.system_exit is not None:
        code = outcome.system_exit.code
        status = 0 if code is None else code if isinstance(code, int) else 1
        return Trigger("exit", reason="" if code is None else repr(code), exit_code=status)
    return Trigger("return")

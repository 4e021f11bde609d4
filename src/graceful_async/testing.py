"""Test a program's shutdown inside your test's own event loop.

`run_service` runs ``main`` through the same phases as `graceful_async.run()`: the drain,
the cancellation, the hooks and the deadline. It installs no signal handlers and starts
no subprocess: `Service.send_signal` feeds a signal straight to the shutdown logic, and
the result says which hooks ran and which exit status the process would have ended
with. It works with anyio's pytest plugin on asyncio, uvloop and trio.

```python
import signal

import pytest
import graceful_async
from graceful_async.testing import run_service

from myservice import main


@pytest.mark.anyio
async def test_sigterm_flushes_the_buffer() -> None:
    async with run_service(main, grace=5) as service:
        await service.wait_ready()
        service.send_signal(signal.SIGTERM)
    assert service.result.exit_status == 143
    assert service.result.hooks_run == ("flush_buffer",)
```
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import anyio

from ._backends import running_backend
from ._config import make_config
from ._exit import Outcome
from ._reload import registrations_restored
from ._runner import Runner
from ._shutdown import ShutdownState, Waker
from ._watchdog import FORCED_EXIT_STATUS

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import TypeVarTuple, Unpack
    else:
        from typing_extensions import TypeVarTuple, Unpack

    PosArgsT = TypeVarTuple("PosArgsT")

__all__ = ["Service", "ServiceResult", "run_service"]


@final
@dataclass(frozen=True)
class ServiceResult:
    """How a service run by `run_service` ended."""

    #: The status the process would have ended with: 0 when main returned, ``128 + N``
    #: after signal N (130 for SIGINT, as a shell shows death by SIGINT), the
    #: ``sys.exit()`` or `request_shutdown` status, 1 for an error or a failed worker,
    #: and `FORCED_EXIT_STATUS` when the deadline forced the end.
    exit_status: int
    #: What started the shutdown, as `shutdown_reason` says it.
    reason: str | None
    #: main's return value, if it returned.
    value: Any
    #: The exception that escaped main, if any (the real run would re-raise it).
    error: BaseException | None
    #: The names of the shutdown hooks that ran, in the order they ran.
    hooks_run: tuple[str, ...]
    #: The names of those among them that raised, or were cancelled at their limit.
    hooks_failed: tuple[str, ...]
    #: True if the deadline ran out (or a third signal came) and the watchdog would
    #: have ended the process; the service's tasks were then cancelled instead.
    forced: bool
    #: The stuck report the watchdog would have written to stderr, when forced.
    report: str | None


@final
class Service:
    """A service started by `run_service`; drive it and read how it ended."""

    def __init__(self, state: ShutdownState, signals: tuple[int, ...], reload: int | None) -> None:
        self._state = state
        self._signals = signals
        self._reload = reload
        self._done = anyio.Event()
        self._result: ServiceResult | None = None

    def send_signal(self, signum: int) -> None:
        """Deliver ``signum`` as the real signal handlers would.

        The first shutdown signal starts the shutdown, a second cancels everything
        still running and leaves 1 s, and a third ends the run at once. The
        ``reload_signal`` runs the reload hooks.

        Raises:
            ValueError: If ``signum`` is neither one of the service's shutdown signals
                nor its reload signal.
        """
        if signum in self._signals:
            self._state.signal_received(signum)
        elif signum == self._reload and signum is not None:
            self._state.reload_requested()
        else:
            handled = [signal.Signals(s).name for s in (*self._signals, self._reload) if s]
            raise ValueError(
                f"signum must be a signal the service handles ({', '.join(handled)}), "
                f"got {signum!r}"
            )

    async def wait_ready(self) -> None:
        """Wait until the service is marked ready (see `set_ready`).

        Raises:
            RuntimeError: If the service ended without ever being ready.
        """
        while not self._state.ready:
            if self._done.is_set():
                raise RuntimeError("the service ended without being marked ready")
            await anyio.sleep(0.005)

    async def wait(self) -> ServiceResult:
        """Wait until the service has ended, and return how it ended."""
        await self._done.wait()
        assert self._result is not None
        return self._result

    @property
    def result(self) -> ServiceResult:
        """How the service ended.

        Raises:
            RuntimeError: If it has not ended yet.
        """
        if self._result is None:
            raise RuntimeError("the service is still running; await service.wait() first")
        return self._result

    def _finish(self, result: ServiceResult) -> None:
        self._result = result
        self._done.set()


@asynccontextmanager
async def run_service(
    main: Callable[[Unpack[PosArgsT]], Awaitable[Any]],
    *args: Unpack[PosArgsT],
    grace: float | None = None,
    drain: float | None = None,
    pre_drain_delay: float | None = None,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
    exit_codes: Mapping[int, int] | None = None,
    reload_signal: int | None = None,
    ready_on_start: bool = True,
) -> AsyncIterator[Service]:
    """Run ``main(*args)`` in the background of the current test, as `run()` would.

    The options mean what they mean for `graceful_async.run()`. Leaving the block waits
    until the service has ended (so send it a signal, or let main return); if the block
    raises, the service is cancelled first. Only one service, or `run()`, may be active
    at a time.

    Where it differs from a real `run()`:

    - A task that swallows cancellation cannot be stopped in-process: when the deadline
      passes, the result says ``forced`` and the service is cancelled, but such a task
      keeps the block from ending. Give the test a timeout.
    - On asyncio, tasks that main starts with a bare ``asyncio.create_task()``, outside
      anyio's task groups, are not cancelled at the end: they cannot be told apart from
      the test's own tasks.
    - On asyncio, ``sys.exit()`` or ``KeyboardInterrupt`` raised in a child task of main
      escapes the test's event loop itself, as it would escape ``asyncio.run()``; the
      real `run()` catches it. On trio it ends the service as it would the program.
    - Reload hooks registered while the service runs are unregistered when it ends, so
      that tests do not leak them into each other.

    Yields:
        The running `Service`.

    Raises:
        TypeError, ValueError: For bad arguments, as `graceful_async.run()` raises them.
        RuntimeError: If another service or `run()` is active.
    """
    backend = running_backend().name
    config = make_config(
        main,
        backend,
        None,
        grace,
        signals,
        exit_codes,
        drain,
        pre_drain_delay=pre_drain_delay,
        ready_on_start=ready_on_start,
        reload_signal=reload_signal,
    )
    forced: list[str] = []
    forced_waker = Waker()

    def force(report: str, status: int) -> None:
        # The watchdog thread calls this at the deadline, where run() would os._exit().
        forced.append(report)
        forced_waker.poke()

    # No signal handlers: send_signal() feeds the run itself. No sweep of tasks outside
    # main's tree: here they are the test's own, and a program's are not told apart from
    # them. And systemd is not told about a test's service.
    runner = Runner(
        config,
        install_handlers=False,
        sweep_stray_tasks=False,
        notify_systemd=False,
        force=force,
    )
    # Made before the block runs, so that wait_shutdown_requested() in it really waits.
    runner.lifecycle.requested = anyio.Event()
    service = Service(runner.state, config.signals, config.reload_signal)

    async def call_main() -> Any:
        return await main(*args)

    try:
        with runner.activated(), registrations_restored():
            service_scope = anyio.CancelScope()
            guard_scope = anyio.CancelScope()

            async def guard() -> None:
                with guard_scope:
                    await anyio.wait_readable(forced_waker.reader)
                    service_scope.cancel("the deadline passed")

            async def supervise() -> None:
                outcome = Outcome()
                try:
                    with service_scope:
                        outcome = await runner.supervise(call_main)
                finally:
                    guard_scope.cancel()
                service._finish(_result(runner, outcome, forced))

            async with anyio.create_task_group() as tg:
                tg.start_soon(guard)
                tg.start_soon(supervise)
                yield service
                await service.wait()
    finally:
        forced_waker.close()


def _result(runner: Runner, outcome: Outcome, forced: list[str]) -> ServiceResult:
    trigger = runner.state.trigger
    finished = runner.lifecycle.finished_hooks
    return ServiceResult(
        exit_status=FORCED_EXIT_STATUS if forced else runner.verdict(outcome).status,
        reason=None if trigger is None else trigger.describe(),
        value=outcome.value,
        error=outcome.error,
        hooks_run=tuple(name for name, _ in finished),
        hooks_failed=tuple(name for name, ok in finished if not ok),
        forced=bool(forced),
        report=forced[0] if forced else None,
    )

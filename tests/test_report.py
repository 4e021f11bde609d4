"""The stuck report: the trigger, the phase, the tasks, hooks, workers and threads."""

from __future__ import annotations

import time

import anyio

from graceful_async._lifecycle import Lifecycle
from graceful_async._report import build_report
from graceful_async._shutdown import ShutdownState

from .support.helpers import FORCED, Backend


def test_report_before_any_trigger() -> None:
    """The report reads sensibly even when no trigger was recorded."""
    state = ShutdownState(grace=1)
    try:
        report = build_report(Lifecycle(state), "why", 124, None)
        assert "trigger: none; phase: starting; time since shutdown began: n/a" in report
        assert "Tasks still alive" not in report  # no loop to ask
    finally:
        state.close()


def test_report_lists_tasks_in_process(backend: Backend) -> None:
    """The report's task list names live tasks and where they wait (asyncio and trio)."""
    from graceful_async._backends import backend_named
    from graceful_async._lifecycle import Lifecycle
    from graceful_async._report import build_report
    from graceful_async._shutdown import ShutdownState, Trigger

    reports: list[str] = []

    async def sleeper() -> None:
        await anyio.sleep_forever()

    async def main() -> None:
        state = ShutdownState(1.0)
        run = Lifecycle(state)
        try:
            state.trigger_shutdown(Trigger("request", reason="test"))
            run.running_hooks["close-db"] = time.monotonic()
            state.in_flight.update({object(), object()})
            run.running_workers[object()] = "consume (attempt 2)"
            async with anyio.create_task_group() as tg:
                tg.start_soon(sleeper, name="the-sleeper")
                await anyio.sleep(0.01)
                reports.append(
                    build_report(run, "testing", FORCED, backend_named(backend.name).task_lister())
                )
                tg.cancel_scope.cancel()
        finally:
            state.close()

    backend.run(main)
    report = reports[0]
    assert report.startswith(f"graceful_async: testing; forcing exit with status {FORCED}")
    assert "trigger: shutdown requested (test)" in report
    assert "close-db (running for" in report
    assert "Units of work still in flight: 2" in report
    assert "Workers still running (1):\n  consume (attempt 2)" in report
    assert "'the-sleeper' at " in report
    assert "in sleeper" in report
    assert "'main' at " in report

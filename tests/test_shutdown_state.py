"""The shutdown state and the watchdog's decisions, in process and without exiting."""

from __future__ import annotations

import asyncio
import linecache
import math
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import anyio
import pytest

import graceful_async
from graceful_async._backends import TaskInfo, _retrying
from graceful_async._lifecycle import Lifecycle
from graceful_async._report import build_report
from graceful_async._shutdown import ShutdownState, Trigger
from graceful_async._watchdog import Watchdog

from .support.helpers import (
    FIRE_LATENESS,
    Backend,
    Child,
    assert_forced_on_time,
    fired_after,
    run_program,
    write_program,
)


def test_signals_count_up_to_a_forced_exit() -> None:
    """First signal triggers, second escalates to a 1 s deadline, third asks to kill."""
    state = ShutdownState(grace=30)
    try:
        state.signal_received(signal.SIGTERM)
        assert state.trigger == Trigger("signal", signum=signal.SIGTERM)
        assert state.deadline - time.monotonic() > 29
        state.signal_received(signal.SIGINT)
        assert state.escalated
        assert state.deadline - time.monotonic() <= 1.0
        assert state.time_left() == 0
        state.watchdog_waker.drain()
        state.signal_received(signal.SIGTERM)
        assert state.watchdog_waker.drain() == b"k"
        assert state.trigger.signum == signal.SIGTERM  # the first trigger stays
    finally:
        state.close()


def watch(state: ShutdownState) -> tuple[Watchdog, list[tuple[str, int, float]]]:
    """A watchdog whose forced exit records the report, the status and when it fired."""
    fired: list[tuple[str, int, float]] = []
    done = threading.Event()

    def force(report: str, status: int) -> None:
        fired.append((report, status, time.monotonic()))
        done.set()

    watchdog = Watchdog(Lifecycle(state), force=force)
    watchdog.done = done  # type: ignore[attr-defined]
    return watchdog, fired


@pytest.mark.parametrize(
    ("escalate", "expected"),
    [
        (False, "shutdown did not finish within the grace period (0.2 s)"),
        (True, "the program did not finish within 1 s of the second signal"),
    ],
)
def test_watchdog_fires_at_the_deadline(escalate: bool, expected: str) -> None:
    """At its deadline, not before and at most 0.3 s after, the watchdog forces the exit."""
    state = ShutdownState(grace=0.2)
    watchdog, fired = watch(state)
    try:
        state.trigger_shutdown(Trigger("request"))
        if escalate:
            state.escalate()
        assert watchdog.done.wait(30)  # type: ignore[attr-defined]
        report, status, fired_at = fired[0]
        assert status == graceful_async.FORCED_EXIT_STATUS
        assert report.startswith(f"graceful_async: {expected}")
        # At the deadline: not before it, and not much after it.
        assert state.deadline <= fired_at <= state.deadline + FIRE_LATENESS
    finally:
        state.close()


def test_watchdog_fires_at_a_kill_request() -> None:
    """A third signal's byte makes the watchdog fire without waiting for the deadline."""
    state = ShutdownState(grace=60)
    watchdog, fired = watch(state)
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            state.signal_received(sig)
        assert watchdog.done.wait(30)  # type: ignore[attr-defined]
        assert "a third signal arrived" in fired[0][0]
    finally:
        state.close()


def test_watchdog_takes_the_gil_back_at_once_while_it_forces_the_exit() -> None:
    """While it builds the report and forces the exit, no busy thread holds the GIL long.

    Each system call of the report's gives the GIL away; a busy main thread kept it for a
    whole switch interval each time and delayed a forced exit by seconds. Where forcing
    does not end the process (graceful_async.testing), the interval is put back after.
    """
    state = ShutdownState(grace=0.05)
    intervals: list[float] = []
    before = sys.getswitchinterval()

    def force(report: str, status: int) -> None:
        intervals.append(sys.getswitchinterval())

    watchdog = Watchdog(Lifecycle(state), force=force)
    try:
        state.trigger_shutdown(Trigger("request"))
        watchdog._thread.join(30)
        assert intervals
        assert intervals[0] <= 1e-4
        assert sys.getswitchinterval() == before
    finally:
        state.close()


def test_watchdog_stops_cleanly() -> None:
    """Leaving the watchdog's block ends its thread without firing."""
    state = ShutdownState(grace=60)
    watchdog, fired = watch(state)
    try:
        state.trigger_shutdown(Trigger("request"))
        watchdog.__exit__(None, None, None)
        assert fired == []
    finally:
        state.close()


def test_report_before_any_trigger() -> None:
    """The report reads sensibly even when no trigger was recorded."""
    state = ShutdownState(grace=1)
    try:
        report = build_report(Lifecycle(state), "why", 124, None)
        assert "trigger: none; phase: starting; time since shutdown began: n/a" in report
        assert "Tasks still alive" not in report  # no loop to ask
    finally:
        state.close()


def test_task_listing_retries_races() -> None:
    """A task set that changes while being read is read again; a hopeless one gives []."""
    attempts: list[int] = []

    def flaky() -> list[TaskInfo]:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("Set changed size during iteration")
        return [TaskInfo("t", "here")]

    def hopeless() -> list[TaskInfo]:
        raise RuntimeError("Set changed size during iteration")

    assert _retrying(flaky)() == [TaskInfo("t", "here")]
    assert _retrying(hopeless)() == []


def test_cleanup_scope_after_escalation_is_cancelled_at_once(backend: Backend) -> None:
    """After a second signal, a new cleanup scope gets no time at all."""
    seen: list[bool] = []

    async def main() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            await anyio.sleep_forever()
        finally:
            with graceful_async.cleanup_scope(timeout=30) as scope:
                await anyio.sleep(30)
            seen.append(scope.cancelled_caught)

    with pytest.raises((SystemExit, KeyboardInterrupt)) as info:
        backend.run(main, grace=30)
    # The handlers may see either signal first: SIGTERM exits 143, SIGINT re-raises.
    if isinstance(info.value, SystemExit):
        assert info.value.code == 143
    assert seen == [True]


def test_duplicate_signals_are_handled_once(backend: Backend) -> None:
    """Listing a signal twice is the same as listing it once."""

    async def main() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main, signals=(signal.SIGTERM, signal.SIGTERM))
    assert info.value.code == 143


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_sys_exit_in_a_plain_asyncio_task(use_uvloop: bool) -> None:
    """asyncio lets SystemExit escape the loop; it still becomes a graceful exit(n)."""
    order: list[str] = []

    async def quitter() -> None:
        sys.exit(5)

    tasks: list[asyncio.Task[None]] = []

    async def main() -> None:
        graceful_async.on_shutdown(order.append, "hook")
        tasks.append(asyncio.get_running_loop().create_task(quitter()))
        try:
            await anyio.sleep_forever()
        finally:
            order.append("main finally")

    with pytest.raises(SystemExit) as info:
        graceful_async.run(main, backend_options={"use_uvloop": use_uvloop})
    assert info.value.code == 5
    assert order == ["main finally", "hook"]
    # Retrieve it, or asyncio logs "Task exception was never retrieved" whenever the
    # task happens to be collected, in some later test's log capture.
    assert isinstance(tasks[0].exception(), SystemExit)


def test_asyncio_options_debug_and_loop_factory() -> None:
    """debug and loop_factory reach the asyncio loop, as with anyio.run."""
    made: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        made.append(loop)
        return loop

    async def main() -> bool:
        assert asyncio.get_running_loop() is made[0]
        return asyncio.get_running_loop().get_debug()

    assert graceful_async.run(main, backend_options={"debug": True, "loop_factory": factory})
    assert made[0].is_closed()


def test_a_signal_nested_in_the_first_handler_still_escalates() -> None:
    """A second handler that runs inside the first one's bookkeeping keeps its 1 s deadline."""
    state = ShutdownState(grace=60)
    nested: list[bool] = []

    def tracer(frame: types.FrameType, event: str, arg: Any) -> Any:
        # Python may run the next signal's handler between any two bytecodes of this one;
        # do exactly that on the first line of trigger_shutdown().
        if event == "call" and frame.f_code.co_name == "trigger_shutdown" and not nested:
            nested.append(True)
            state.signal_received(signal.SIGINT)
        return None

    previous = sys.gettrace()  # coverage's tracer, when measuring
    try:
        sys.settrace(tracer)
        try:
            state.signal_received(signal.SIGTERM)
        finally:
            sys.settrace(previous)
        assert nested == [True]
        assert state.trigger == Trigger("signal", signum=signal.SIGTERM)
        assert state.escalated
        assert state.deadline - time.monotonic() <= 1.0
        assert state.time_left() == 0
    finally:
        state.close()


def test_main_returning_does_not_arm_the_watchdog_until_a_signal() -> None:
    """After main returns only a signal arms the hard deadline; hooks stay bounded."""
    state = ShutdownState(grace=0)
    try:
        state.trigger_shutdown(Trigger("return"))
        assert state.deadline == float("inf")
        assert state.time_left() == 0
        state.signal_received(signal.SIGTERM)
        assert state.trigger == Trigger("return")
        assert state.deadline <= time.monotonic()
    finally:
        state.close()


def test_grace_zero_still_returns_mains_value(tmp_path: Path, backend: Backend) -> None:
    """grace=0 leaves cleanup no time, but a main that returns is never force-killed."""
    body = """
    async def main(n):
        graceful_async.on_shutdown(lambda: None)
        return n

    say(str([start(main, n, grace=0) for n in range(5)]))
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 0, result.stderr
    assert result.lines == ["[0, 1, 2, 3, 4]"]


def test_signal_during_hooks_after_return_is_bounded(tmp_path: Path, backend: Backend) -> None:
    """A signal while hooks run after main returned arms the deadline; the stuck hook is cut."""
    body = """
    async def main():
        graceful_async.on_shutdown(time.sleep, 600, name="stuck-sync-hook")
        graceful_async.on_shutdown(say, "READY")

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == graceful_async.FORCED_EXIT_STATUS
    assert "stuck-sync-hook (running for" in result.stderr
    # The report times the shutdown from main's return; the deadline runs from the signal.
    assert_forced_on_time(result, 0.5, reported=False)


def test_request_during_hooks_after_return_is_bounded(tmp_path: Path, backend: Backend) -> None:
    """request_shutdown() while hooks run after main returned arms the deadline, too."""
    body = """
    async def main():
        graceful_async.on_shutdown(time.sleep, 600, name="stuck-sync-hook")
        graceful_async.on_shutdown(graceful_async.request_shutdown, "stop now")

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == graceful_async.FORCED_EXIT_STATUS
    assert "stuck-sync-hook (running for" in result.stderr
    # The request comes from the first hook, right as main returns: about 0.5 s in.
    assert 0.5 <= fired_after(result.stderr) <= 0.5 + FIRE_LATENESS, result.stderr


def test_sys_exit_in_a_hook_leaves_the_status_alone(tmp_path: Path, backend: Backend) -> None:
    """sys.exit() in a hook is that hook's failure on every backend; main's status stands."""
    body = """
    import logging
    logging.basicConfig(format="%(message)s")

    async def main():
        graceful_async.on_shutdown(say, "later hook ran")
        graceful_async.on_shutdown(sys.exit, 3, name="exiting-hook")
        return "value"

    say(start(main))
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 0, result.stderr
    assert result.lines == ["later hook ran", "value"]
    assert "shutdown hook exiting-hook failed" in result.stderr


def test_cancellation_escaping_main_is_mains_own_outcome() -> None:
    """A CancelledError that main caused itself still runs the hooks, then propagates."""
    ran: list[str] = []

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, "hook")
        task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        graceful_async.run(main)
    assert ran == ["hook"]

    async def empty() -> None:
        pass

    graceful_async.run(empty)
    assert ran == ["hook"]  # nothing was left registered for the next run


def test_sys_exit_without_a_code_is_logged_as_such(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """sys.exit() reads as sys.exit() in the log and ends with status 0."""

    async def main() -> None:
        sys.exit()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code is None
    messages = [r.getMessage() for r in logs.records if r.name == "graceful_async"]
    assert messages[0].startswith("sys.exit() called, shutting down")
    assert messages[-1].endswith("exit status: 0")


def test_hook_raising_keyboard_interrupt_does_not_stop_the_others(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """Even a BaseException from a hook is logged, and the earlier hooks still run."""
    ran: list[str] = []

    def interrupting() -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, "earlier")
        graceful_async.on_shutdown(interrupting)

    backend.run(main)
    assert ran == ["earlier"]
    assert any("interrupting failed" in r.getMessage() for r in logs.records)


def test_second_signal_cuts_the_wait_for_stray_tasks(tmp_path: Path) -> None:
    """A plain asyncio task slow to finish is waited for, until a second signal."""
    body = """
    import asyncio

    async def slow_stray():
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            say("STRAY CLEANING UP")
            await asyncio.sleep(600)  # slow cleanup; a second cancel ends it

    async def main():
        asyncio.get_running_loop().create_task(slow_stray())
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=60)
    """
    child = Child.start(write_program(tmp_path, body), Backend("asyncio"))
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    child.wait_for("STRAY CLEANING UP")
    child.send(signal.SIGINT)
    result = child.finish()
    assert result.returncode == 143, result.stderr


def test_second_signal_during_finally_cancels_the_cleanup(tmp_path: Path, backend: Backend) -> None:
    """A signal while finally blocks run does not kill on the spot: it cuts the cleanup."""
    body = """
    async def main():
        try:
            say("READY")
            await anyio.sleep_forever()
        finally:
            with graceful_async.cleanup_scope() as scope:
                say("CLEANUP STARTED")
                await anyio.sleep(600)
            say(f"cleanup cut: {scope.cancelled_caught}")

    start(main, grace=60)
    """
    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    child.wait_for("CLEANUP STARTED")
    child.send(signal.SIGINT)
    result = child.finish()
    assert result.returncode == 143
    assert result.lines[-1] == "cleanup cut: True"


def test_request_caught_between_publishing_and_bookkeeping(backend: Backend) -> None:
    """A request that is visible while its thread is paused still has a time and a deadline."""
    gate = threading.Event()
    paused: list[bool] = []

    def pause_after_append(frame: types.FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_name != "trigger_shutdown":
            return pause_after_append
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        if event == "line" and "self._triggers[0] is not trigger" in line:
            paused.append(True)
            gate.wait(30)  # main returns meanwhile and run() finishes its bookkeeping
        return pause_after_append

    def requester() -> None:
        sys.settrace(pause_after_append)
        graceful_async.request_shutdown("paused", exit_code=3)

    async def main() -> None:
        threading.Thread(target=requester, daemon=True).start()
        await anyio.sleep(0.2)

    try:
        with pytest.raises(SystemExit) as info:
            backend.run(main)
    finally:
        gate.set()
    assert paused == [True]
    assert info.value.code == 3


def test_hook_raising_a_cancellation_of_its_own(logs: pytest.LogCaptureFixture) -> None:
    """A hook that raises CancelledError itself is a failed hook; the earlier hooks run."""
    ran: list[str] = []

    async def cancelled_hook() -> None:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        task.cancel()
        await task

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, "earlier")
        graceful_async.on_shutdown(cancelled_hook)

    assert graceful_async.run(main) is None
    assert ran == ["earlier"]
    assert any("cancelled_hook failed" in r.getMessage() for r in logs.records)


def test_signal_after_return_bounds_the_interpreter_exit(tmp_path: Path, backend: Backend) -> None:
    """A signal during the hooks after main returned also bounds the exit that follows."""
    body = """
    async def hook():
        say("READY")
        await anyio.sleep(0.3)

    async def main():
        threading.Thread(target=time.sleep, args=(600,), name="hung-worker").start()
        graceful_async.on_shutdown(hook)

    start(main, grace=1)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == graceful_async.FORCED_EXIT_STATUS
    assert "phase: interpreter exit" in result.stderr
    assert "Thread 'hung-worker' (non-daemon" in result.stderr
    assert_forced_on_time(result, 1, reported=False)  # the report times from main's return


def test_drain_deadline_follows_the_trigger_within_grace() -> None:
    """No trigger, no drain deadline; after one, drain seconds later, within the soft deadline."""
    from graceful_async._shutdown import ShutdownState, Trigger

    state = ShutdownState(grace=8.0, drain=3.0)
    try:
        assert state.drain_deadline == math.inf
        state.trigger_shutdown(Trigger("request"))
        trigger = state.trigger
        assert trigger is not None
        assert state.drain_deadline == trigger.at + 3.0
        state.drain = 8.0
        assert state.drain_deadline == state.soft_deadline < trigger.at + 8.0
    finally:
        state.close()

"""ShutdownState: the first trigger, the deadlines it sets, escalation, recording without locks."""

from __future__ import annotations

import linecache
import math
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
from graceful_async._shutdown import ShutdownState, Trigger

from .support.helpers import (
    FIRE_LATENESS,
    Backend,
    assert_forced_on_time,
    fired_after,
    run_program,
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

"""The deadline: whatever user code does, the process ends in time with a stuck report."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

import graceful_async
from graceful_async._lifecycle import Lifecycle
from graceful_async._shutdown import ShutdownState, Trigger
from graceful_async._watchdog import Watchdog

from .support.helpers import (
    EXIT_LATENESS,
    FIRE_LATENESS,
    FORCED,
    SIGINT_DEATH,
    WAIT,
    Backend,
    Child,
    assert_fired_on_time,
    assert_forced_on_time,
    run_program,
    write_program,
)


def test_forced_status_is_distinct() -> None:
    """The forced status is not 0, 1, 2 or 128+N, so it cannot be mistaken for them."""
    assert FORCED not in (0, 1, 2)
    assert not 128 < FORCED < 128 + 65


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


def test_blocked_loop_is_ended_at_the_deadline(tmp_path: Path, backend: Backend) -> None:
    """time.sleep() in a task: the report shows the phase and the main thread's blocking line."""
    body = """
    async def main():
        say("READY")
        time.sleep(60)  # BLOCKING LINE

    start(main, grace=0.5)
    """
    started = time.monotonic()
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == FORCED
    assert time.monotonic() - started < 20  # not the 60 s of the sleep
    assert_forced_on_time(result, 0.5)
    report = result.stderr
    assert "did not finish within the grace period (0.5 s)" in report
    assert "trigger: SIGTERM" in report
    assert "is it blocked?" in report
    assert "Thread 'MainThread' (non-daemon" in report
    assert "time.sleep(60)  # BLOCKING LINE" in report


def test_task_swallowing_cancellation_is_named(tmp_path: Path, backend: Backend) -> None:
    """A task that swallows cancellation is listed by name with its file:line."""
    body = """
    async def stubborn():
        while True:
            try:
                await anyio.sleep(60)  # SWALLOWING LINE
            except anyio.get_cancelled_exc_class():
                pass

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(stubborn, name="stubborn-consumer")
            say("READY")

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == FORCED
    assert_forced_on_time(result, 0.5)
    program = tmp_path / "child.py"
    lines = program.read_text().splitlines()
    number = next(n for n, text in enumerate(lines, 1) if text.endswith("# SWALLOWING LINE"))
    # The task spins: the report usually catches it on the swallowing line, but may catch
    # it between two turns of its loop, or inside the backend's sleep. Either way it is
    # named, with a file:line.
    where = re.search(r"'stubborn-consumer' at (\S+):(\d+) in (\w+)", result.stderr)
    assert where is not None, result.stderr
    if where[1] == str(program):
        assert where[3] == "stubborn"
        assert number - 3 <= int(where[2]) <= number + 2
    assert "phase: cancelling" in result.stderr


def test_signal_the_main_thread_cannot_handle_still_arms_the_deadline(
    tmp_path: Path, backend: Backend
) -> None:
    """The deadline holds even when the Python-level handler cannot run at all.

    A signal that lands just before the main thread enters a blocking call (or in
    another thread while it is blocked) leaves the handler waiting until the call
    returns. The program forces that case: the main thread blocks SIGTERM, so the
    kernel hands it to a helper thread, and then sleeps in sync code.
    """
    body = """
    blocked = threading.Event()

    def helper():
        blocked.wait()
        say("READY")
        time.sleep(60)

    async def main():
        threading.Thread(target=helper, daemon=True).start()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        # Just before the sleep: READY, then the test's SIGTERM, take far longer than the
        # few bytecodes left until the main thread sleeps.
        blocked.set()
        time.sleep(600)

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == FORCED
    assert "a signal arrived 0.5 s ago, but the main thread never ran its handler" in (
        result.stderr
    )
    # No trigger for the report to time: the deadline ran from the watchdog's sight of
    # the signal.
    assert_forced_on_time(result, 0.5, reported=False)


def test_the_longest_grace_accepted_still_escalates(tmp_path: Path, backend: Backend) -> None:
    """At the longest grace validation accepts, a second signal still ends the process.

    A grace past the clock's range once killed the watchdog thread, and with it the
    second and third signals: only SIGKILL ended the process.
    """
    body = """
    async def slow_hook():
        say("HOOK STARTED")
        await anyio.sleep(60)

    async def main():
        graceful_async.on_shutdown(slow_hook)
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=threading.TIMEOUT_MAX)
    """
    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    child.wait_for("HOOK STARTED")
    child.send(signal.SIGTERM)
    result = child.finish(timeout=10)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert "Traceback" not in result.stderr


def test_no_grace_at_all_says_so_in_the_report(tmp_path: Path, backend: Backend) -> None:
    """grace=0 ends the process at once, and the report does not blame a blocked thread."""
    body = """
    async def main():
        say("READY")
        with anyio.CancelScope(shield=True):  # never done: the watchdog must end it
            await anyio.sleep_forever()

    start(main, grace=0)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == FORCED
    # The watchdog may fire before the handler has made the trigger the report times.
    assert_forced_on_time(result, 0, reported=False)
    first = result.stderr.splitlines()[0]
    assert first in (
        "graceful_async: a signal arrived and the grace period is 0 s: ending at once; "
        "forcing exit with status 124",
        "graceful_async: shutdown did not finish within the grace period (0 s); "
        "forcing exit with status 124",
    ), result.stderr


@pytest.mark.parametrize("margin", [0.02, 0.005, 0.0])
def test_a_run_that_ends_at_the_deadline_logs_the_status_it_exits_with(
    tmp_path: Path, backend: Backend, margin: float
) -> None:
    """Ending a few ms before the deadline: the log and the process agree on the status.

    Either run() finishes first, logs 143 and exits 143, or the watchdog does, and then
    nothing logs a status the process never has.
    """
    body = f"""
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def until_the_deadline():
        # time_left() counts down to the soft deadline, 0.1 s before the deadline here.
        time.sleep(max(0.0, graceful_async.time_left() + 0.1 - {margin}))

    async def main():
        graceful_async.on_shutdown(until_the_deadline)
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=1)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    told = re.findall(r"exit status: (.*)", result.stderr)
    if result.returncode == FORCED:
        assert told == [], result.stderr
        assert "forcing exit with status 124" in result.stderr
    else:
        assert result.returncode == 128 + signal.SIGTERM, result.stderr
        assert told == ["143"], result.stderr


def test_a_stream_of_other_signals_does_not_hold_off_the_deadline(
    tmp_path: Path, backend: Backend
) -> None:
    """Signals that keep waking the watchdog (here SIGUSR2, flat out) do not delay it."""
    body = """
    signal.signal(signal.SIGUSR2, lambda signum, frame: None)

    def flood():
        while True:
            os.kill(os.getpid(), signal.SIGUSR2)

    async def main():
        threading.Thread(target=flood, daemon=True).start()
        say("READY")
        while True:
            time.sleep(0.01)  # the loop is stuck

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == FORCED
    assert "shutdown did not finish within the grace period (0.5 s)" in result.stderr
    assert_forced_on_time(result, 0.5)


def test_a_signal_main_took_over_arms_nothing(tmp_path: Path, backend: Backend) -> None:
    """If main installs its own handler for SIGTERM, that signal is main's business."""
    body = """
    async def main():
        signal.signal(signal.SIGTERM, lambda signum, frame: print("main's handler"))
        say("READY")
        await anyio.sleep(1.5)  # longer than grace: no deadline may be running
        print("main returned")

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == 0, result.stderr
    assert result.lines[1:] == ["main's handler", "main returned"]


def test_a_full_stderr_pipe_does_not_hold_off_the_forced_exit(
    tmp_path: Path, backend: Backend
) -> None:
    """Nobody reads our stderr and the pipe is full: the report is cut, the exit is not."""
    body = """
    def fill_stderr():
        while True:
            os.write(2, b"x" * 4096)  # blocks for good once the pipe is full

    async def main():
        threading.Thread(target=fill_stderr, daemon=True).start()
        say("READY")
        with anyio.CancelScope(shield=True):
            await anyio.sleep(60)

    start(main, grace=0.5)
    """
    program = write_program(tmp_path, body)
    proc = subprocess.Popen(
        [sys.executable, str(program)],
        env=backend.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # never read
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"READY\n"
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == FORCED
        # The report gives up after 1 s, the flush after 0.25 s: then the exit.
        took = time.monotonic() - signalled
        assert 0.5 <= took <= 0.5 + 1.0 + 0.25 + EXIT_LATENESS
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_hung_non_daemon_thread_does_not_hold_the_process(tmp_path: Path, backend: Backend) -> None:
    """A non-daemon thread that never returns is named, and the process ends anyway."""
    body = """
    async def main():
        threading.Thread(target=time.sleep, args=(600,), name="hung-worker").start()
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    # run() ended in time with 143, logged: the forced end of the interpreter's exit
    # keeps that status (it used to log 143 and exit 124).
    assert result.returncode == 128 + signal.SIGTERM
    assert (
        "the process did not exit within the grace period (0.5 s); forcing exit with status 143"
        in result.stderr
    )
    assert_forced_on_time(result, 0.5, status=128 + signal.SIGTERM)
    assert "phase: interpreter exit (joining non-daemon threads" in result.stderr
    assert "Thread 'hung-worker' (non-daemon" in result.stderr


@pytest.mark.parametrize(
    ("sig", "status", "shown"),
    [(signal.SIGTERM, 128 + signal.SIGTERM, 143), (signal.SIGINT, SIGINT_DEATH, 130)],
    ids=["SIGTERM", "SIGINT"],
)
def test_hung_atexit_handler_does_not_hold_the_process(
    tmp_path: Path, backend: Backend, sig: signal.Signals, status: int, shown: int
) -> None:
    """An atexit handler that never returns is cut at the deadline, with run()'s status.

    That is 143 after SIGTERM, and death by SIGINT after Ctrl+C, as run() logged.
    """
    body = """
    atexit.register(time.sleep, 600)

    async def main():
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(sig,))
    assert result.returncode == status, result.stderr
    assert "phase: interpreter exit" in result.stderr
    assert f"forcing exit with status {shown}" in result.stderr
    assert_forced_on_time(result, 0.5, status=status)


def test_idle_executor_threads_do_not_delay_the_exit(tmp_path: Path, backend: Backend) -> None:
    """Idle ThreadPoolExecutor workers stop at interpreter exit as usual: status 143, no report."""
    body = """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(2)

    async def main():
        assert pool.submit(lambda: 42).result() == 42
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == 143
    assert result.stderr == ""


def test_exit_guard_retires_when_the_exit_is_caught(tmp_path: Path, backend: Backend) -> None:
    """A program that catches run()'s SystemExit and carries on is not killed later."""
    body = """
    async def main():
        graceful_async.request_shutdown(exit_code=3)
        await anyio.sleep_forever()

    try:
        start(main, grace=0.2)
    except SystemExit as exc:
        say(f"caught {exc.code}")
    # At the deadline the guard sees the main thread alive, and ends without firing.
    for thread in threading.enumerate():
        if thread.name == "graceful_async exit watchdog":
            thread.join()
    say("still alive")
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 0, result.stderr
    assert result.lines == ["caught 3", "still alive"]


def test_blocking_hook_is_named(tmp_path: Path, backend: Backend) -> None:
    """A sync hook that blocks past the deadline shows up under the running hooks."""
    body = """
    async def main():
        graceful_async.on_shutdown(time.sleep, 600, name="flush-to-slow-disk")
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == FORCED
    assert "phase: hooks" in result.stderr
    assert_forced_on_time(result, 0.5)
    assert "Shutdown hooks still running (1):\n  flush-to-slow-disk (running for" in result.stderr


@pytest.mark.parametrize("stuck", ["loop", "atexit"])
def test_buffered_output_is_flushed_at_a_forced_exit(
    tmp_path: Path, backend: Backend, stuck: str
) -> None:
    """A print() still in stdout's buffer reaches the pipe when the exit is forced."""
    # Stuck in the loop, the watchdog forces the exit; stuck in an atexit handler, the
    # exit guard does. (What main printed, CPython flushes itself as the script ends,
    # before the atexit handlers: a print() there is what the guard must flush.)
    body = """
    # A pipe, and no PYTHONUNBUFFERED: print() leaves its line in the buffer.
    assert not sys.stdout.line_buffering and not sys.stdout.write_through

    def last_words_then_hang():
        print("last words")
        time.sleep(600)

    async def main():
        say("READY")
        try:
            await anyio.sleep_forever()
        finally:
            if sys.argv[1] == "loop":
                last_words_then_hang()

    if sys.argv[1] == "atexit":
        atexit.register(last_words_then_hang)
    start(main, grace=0.5)
    """
    env = backend.env()
    env.pop("PYTHONUNBUFFERED", None)
    child = Child([sys.executable, str(write_program(tmp_path, body)), stuck], env)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    # The exit guard keeps the status run() logged (143); the watchdog forces 124.
    status = FORCED if stuck == "loop" else 128 + signal.SIGTERM
    assert_forced_on_time(result, 0.5, status=status)
    assert result.lines == ["READY", "last words"]


def test_idle_watchdog_does_not_poll(backend: Backend) -> None:
    """Before any trigger the watchdog waits in epoll with no timeout: zero wake-ups."""
    seen: list[object] = []

    async def main() -> None:
        await anyio.sleep(0.05)
        watchdog = next(t for t in threading.enumerate() if t.name == "graceful_async watchdog")
        assert watchdog.daemon
        frame = sys._current_frames()[watchdog.ident]  # type: ignore[index]
        seen.append(frame.f_code.co_name)
        seen.append(frame.f_locals["timeout"])

    backend.run(main)
    assert seen == ["wait", None]  # _Poller.wait(timeout)


@pytest.mark.parametrize("trigger", ["return", "error", "exit"])
def test_trigger_descriptions(trigger: str) -> None:
    """Every trigger reads well in the log and the report."""
    from graceful_async._shutdown import Trigger

    kinds = {
        "return": (Trigger("return"), "main returned"),
        "error": (Trigger("error", reason="ValueError()"), "error in main (ValueError())"),
        "exit": (Trigger("exit", reason="3", exit_code=3), "sys.exit(3) called"),
    }
    given, expected = kinds[trigger]
    assert given.headline() == expected


def test_dump_signal_reports_and_the_service_carries_on(tmp_path: Path, backend: Backend) -> None:
    """dump_signal=SIGUSR1: tasks and threads on stderr, then business as usual."""
    body = """
    async def ticker():
        n = 0
        while True:
            await anyio.sleep(0.01)
            n += 1
            if n == 5:
                say("TICKING")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker, name="the-ticker")
            say("READY")
            try:
                await anyio.sleep_forever()
            finally:
                print("finally ran", graceful_async.shutdown_reason())

    start(main, dump_signal=signal.SIGUSR1)
    """
    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    child.send(signal.SIGUSR1)
    child.wait_for("TICKING")  # still running after the report
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[-1] == "finally ran SIGTERM"
    report = result.stderr
    assert report.startswith("graceful_async: report on request\n")
    assert "trigger: none; phase: running" in report
    assert "'the-ticker' at " in report
    assert "Thread 'MainThread'" in report
    assert "forcing exit" not in report


def test_dump_signal_reports_a_blocked_loop(tmp_path: Path, backend: Backend) -> None:
    """The report is written by the watchdog thread, so a loop stuck in sync code shows."""
    body = """
    async def main():
        say("READY")
        while True:
            time.sleep(0.01)  # blocks the loop for good

    start(main, dump_signal=signal.SIGUSR1, grace=0.5)
    """
    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    child.send(signal.SIGUSR1)
    # The report is built before its first line is written, and the watchdog writes it
    # whole before it looks at the deadline: the shutdown's report can only follow it.
    child.wait_for_stderr("graceful_async: report on request")
    signalled = time.monotonic()
    child.send(signal.SIGTERM)
    result = child.finish()
    took = time.monotonic() - signalled
    assert result.returncode == FORCED
    assert_fired_on_time(result.stderr, 0.5)
    assert 0.5 <= took <= 0.5 + EXIT_LATENESS, result.stderr
    live, _, final = result.stderr.partition("forcing exit with status")
    assert live.startswith("graceful_async: report on request\n")
    # Where the loop is stuck: in main, most often in time.sleep(); the report may also
    # catch the main thread between two sleeps, or running the signal handler.
    assert "in main" in live
    assert "in main" in final  # and the deadline's own report after it


def test_a_report_asked_for_just_before_the_end_is_still_written(
    backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    """A dump signal right before run() ends is not lost to the watchdog's own exit."""

    async def main() -> str:
        os.kill(os.getpid(), signal.SIGUSR1)
        return "done"

    assert backend.run(main, dump_signal=signal.SIGUSR1) == "done"
    assert "graceful_async: report on request" in capfd.readouterr().err

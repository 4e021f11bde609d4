"""Real signals to real child processes: statuses, cleanup, escalation, inherited SIG_IGN."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path
from types import FrameType

import anyio
import pytest

import graceful_async

from .support.helpers import (
    SIGINT_DEATH,
    Backend,
    Child,
    assert_forced_on_time,
    run_program,
    write_program,
)

# After READY nothing is flushed by hand: stdout is a pipe, so these lines only show up
# if the interpreter still flushes its buffers on the way out.
SERVICE = """
atexit.register(print, "atexit ran")

async def main():
    graceful_async.on_shutdown(print, "hook ran")
    try:
        say("READY")
        await anyio.sleep_forever()
    finally:
        with graceful_async.cleanup_scope(timeout=5):
            await anyio.sleep(0.01)
            print("finally ran")

start(main, exit_codes=EXIT_CODES)
"""


def service(exit_codes: str = "None") -> str:
    return SERVICE.replace("EXIT_CODES", exit_codes)


def test_sigterm_runs_cleanup_and_exits_143(tmp_path: Path, backend: Backend) -> None:
    """SIGTERM: finally, hook and atexit run; status 143; no traceback; output flushed."""
    result = run_program(tmp_path, service(), backend, send=(signal.SIGTERM,))
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[1:] == ["finally ran", "hook ran", "atexit ran"]
    assert result.stderr == ""


def test_sigint_dies_by_sigint(tmp_path: Path, backend: Backend) -> None:
    """SIGINT: cleanup runs, then the process dies *by* SIGINT, silently, after atexit."""
    result = run_program(tmp_path, service(), backend, send=(signal.SIGINT,))
    assert result.returncode == SIGINT_DEATH
    assert result.lines[1:] == ["finally ran", "hook ran", "atexit ran"]
    assert result.stderr == ""


def test_exit_codes_map_a_signal(tmp_path: Path, backend: Backend) -> None:
    """exit_codes={SIGTERM: 0} turns a SIGTERM shutdown into status 0."""
    result = run_program(tmp_path, service("{signal.SIGTERM: 0}"), backend, send=(signal.SIGTERM,))
    assert result.returncode == 0
    assert result.lines[1:] == ["finally ran", "hook ran", "atexit ran"]


def test_main_returning_exits_zero(tmp_path: Path, backend: Backend) -> None:
    """A main that finishes by itself leaves a normal, zero status."""
    body = """
    async def main():
        graceful_async.on_shutdown(say, "hook ran")
        return 0

    say(f"returned {start(main)}")
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 0
    assert result.lines == ["hook ran", "returned 0"]


def test_sys_exit_in_a_task_exits_with_its_status(tmp_path: Path, backend: Backend) -> None:
    """sys.exit(3) in a child task: graceful shutdown, status 3, no traceback."""
    body = """
    async def quitter():
        await anyio.sleep(0)
        sys.exit(3)

    async def main():
        graceful_async.on_shutdown(say, "hook ran")
        async with anyio.create_task_group() as tg:
            tg.start_soon(quitter)
            try:
                await anyio.sleep_forever()
            finally:
                say("finally ran")

    start(main)
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 3
    assert result.lines == ["finally ran", "hook ran"]
    assert result.stderr == ""


def test_error_in_main_exits_one_with_its_own_traceback(tmp_path: Path, backend: Backend) -> None:
    """An exception from main: hooks run, status 1, the user's traceback, no runner group."""
    body = """
    class PaymentError(Exception):
        pass

    async def main():
        graceful_async.on_shutdown(say, "hook ran")
        raise PaymentError("card declined")

    start(main)
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 1
    assert result.lines == ["hook ran"]
    assert result.stderr.rstrip().endswith("PaymentError: card declined")
    assert "ExceptionGroup" not in result.stderr


def test_second_signal_cancels_hooks_and_finishes(tmp_path: Path, backend: Backend) -> None:
    """A signal during the hooks never kills on the spot; it cancels them, status stays 143."""
    body = """
    atexit.register(say, "atexit ran")

    async def slow_hook():
        say("HOOK STARTED")
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            say("hook cancelled")
            raise

    async def main():
        graceful_async.on_shutdown(say, "earlier hook still ran")
        graceful_async.on_shutdown(slow_hook)
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=60)
    """
    from .support.helpers import Child, write_program

    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    child.wait_for("HOOK STARTED")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 143
    assert result.lines[2:] == ["hook cancelled", "earlier hook still ran", "atexit ran"]
    assert "second signal: cancelling everything still running" in result.stderr
    assert "shutdown hook slow_hook cancelled by a second signal" in result.stderr


def test_second_signal_gives_one_second_then_forces(tmp_path: Path, backend: Backend) -> None:
    """With a task that swallows cancellation, the 2nd signal ends it soon, not at grace."""
    body = """
    async def stubborn():
        while True:
            try:
                await anyio.sleep(60)
            except anyio.get_cancelled_exc_class():
                pass

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(stubborn, name="stubborn")
            say("READY")

    start(main, grace=60)
    """
    from .support.helpers import Child, write_program

    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    started = time.monotonic()
    # Two different signals: two pending SIGTERMs would merge into one.
    child.send(signal.SIGTERM)
    child.send(signal.SIGINT)
    result = child.finish()
    assert result.returncode == 124
    assert "did not finish within 1 s of the second signal" in result.stderr
    assert "'stubborn' at" in result.stderr
    assert time.monotonic() - started < 30  # nowhere near the 60 s grace
    # 1 s after the second signal, which followed the first at once.
    assert_forced_on_time(result, 1, reported=False)


def test_third_signal_ends_at_once(tmp_path: Path, backend: Backend) -> None:
    """Three signals: forced exit straight away, with the report saying why."""
    body = """
    async def main():
        say("READY")
        time.sleep(60)  # the loop is blocked in sync code

    start(main, grace=60, signals=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    """
    # Three different signals, since pending signals of one kind merge.
    result = run_program(
        tmp_path, body, backend, send=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    )
    assert result.returncode == 124
    assert "a third signal arrived" in result.stderr
    assert_forced_on_time(result, 0, reported=False)  # at once, not at the deadline


def test_ignored_sigint_stays_ignored(tmp_path: Path, backend: Backend) -> None:
    """A SIGINT inherited as SIG_IGN (a background job) is not taken over."""
    body = """
    async def main():
        say(f"SIGINT ignored: {signal.getsignal(signal.SIGINT) == signal.SIG_IGN}")
        say("READY")
        await anyio.sleep_forever()

    start(main)
    """
    from .support.helpers import Child, write_program

    program = write_program(tmp_path, body)
    launcher = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "os.execv(sys.executable, [sys.executable, sys.argv[1]])"
    )
    import sys

    child = Child([sys.executable, "-c", launcher, str(program)], backend.env())
    child.wait_for("READY")
    # Had SIGINT been handled it would be the first trigger (status -2). Signals pending
    # together are delivered lowest number first, so SIGINT is seen before SIGTERM.
    child.send(signal.SIGINT)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.lines[0] == "SIGINT ignored: True"
    assert result.returncode == 143


def test_non_daemon_threads_finish_before_the_exit(tmp_path: Path, backend: Backend) -> None:
    """A non-daemon thread still finishes its work after run(), and the status holds."""
    body = """
    run_ended = threading.Event()

    def worker():
        run_ended.wait()  # so it is still at work when run() ends
        say("thread finished")

    async def main():
        threading.Thread(target=worker).start()
        say("READY")
        await anyio.sleep_forever()

    try:
        start(main)
    finally:
        run_ended.set()
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == 143
    assert result.lines[1:] == ["thread finished"]


def test_signal_delivered_to_another_thread_still_wakes_the_loop(
    tmp_path: Path, backend: Backend
) -> None:
    """The kernel may hand a process's signal to any thread that does not block it.

    The C-level handler then runs in that thread, and nothing interrupts the main
    thread's wait in the loop's select(). The loop must wake anyway. The program makes
    the kernel's choice explicit with pthread_kill() from a worker thread.
    """
    body = """
    async def main():
        def deliver_here():
            time.sleep(0.3)  # until the main thread waits in select()
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

        try:
            say("READY")
            threading.Thread(target=deliver_here).start()
            await anyio.sleep_forever()
        finally:
            print("finally ran")

    start(main)
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines == ["READY", "finally ran"]


def test_signal_wakes_the_loop_while_the_watchdog_thread_cannot_run(
    tmp_path: Path, backend: Backend
) -> None:
    """The loop wakes on a signal by itself, not through the watchdog thread.

    libuv (uvloop) retries its epoll_wait() on EINTR without running any Python, and on
    CPython 3.11 under a tracer a thread that runs Python when a signal lands can spin
    until the main thread asks for the GIL. When the loop was woken by the watchdog
    passing the signal on, a watchdog caught that way left a second SIGTERM unhandled
    until the soft deadline. Here a tracer holds the watchdog thread still at its first
    call: the shutdown must start all the same.
    """
    body = """
    frozen, release = threading.Event(), threading.Event()

    def tracer(frame, event, arg):
        if threading.current_thread().name == "graceful_async watchdog" and not frozen.is_set():
            frozen.set()
            release.wait()
        return None

    threading.settrace(tracer)

    async def main():
        while not frozen.is_set():
            await anyio.sleep(0.01)
        try:
            say("READY")
            await anyio.sleep_forever()
        finally:
            print("finally ran")
            release.set()

    start(main, grace=20)
    """
    started = time.monotonic()
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.lines == ["READY", "finally ran"]
    assert time.monotonic() - started < 15  # well before the grace period; a hang is 20 s


SECOND_SIGNAL_RUNS = int(os.environ.get("GA_SECOND_SIGNAL_RUNS", "12"))


@pytest.mark.parametrize("run", range(SECOND_SIGNAL_RUNS))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_at_any_moment_never_kills_by_default(
    tmp_path: Path, backend: Backend, sig: signal.Signals, run: int
) -> None:
    """A second signal 0-25 ms after the first, on a main that ends at once, is ours.

    It lands during the hooks, the restoring of the handlers, the unwinding above run()
    or the interpreter's exit. Two SIGTERMs end with 143 and two Ctrl+Cs by SIGINT, with
    atexit handlers run and no traceback. GA_SECOND_SIGNAL_RUNS sets the runs per case;
    each run is a test of its own, so that the workers share them out.
    """
    body = """
    atexit.register(print, "atexit ran")

    async def main():
        say("READY")
        await anyio.sleep_forever()

    start(main)
    """
    program = write_program(tmp_path, body)
    delay = random.Random(f"{backend.id}-{sig}-{run}").uniform(0.0, 0.025)
    expected = SIGINT_DEATH if sig == signal.SIGINT else 128 + signal.SIGTERM
    child = Child.start(program, backend)
    child.wait_for("READY")
    child.send(sig)
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):  # it may be gone already
        child.send(sig)
    result = child.finish()
    what = f"run {run}, second signal after {delay * 1000:.1f} ms: {result}"
    assert result.returncode == expected, what
    assert result.lines == ["READY", "atexit ran"], what
    assert "Traceback" not in result.stderr, what


def test_handlers_after_a_caught_exit_give_way_once_the_grace_period_is_over(
    backend: Backend,
) -> None:
    """run() raised and the program carried on: the previous handler comes back.

    Until the deadline a further SIGTERM still belongs to the shutdown and is absorbed;
    after it, the previous handler gets the signal and is put back. The next run() sees
    through the stand-in too.
    """
    calls: list[int] = []

    def old_term(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    async def main() -> None:
        graceful_async.request_shutdown("done", exit_code=3)
        await anyio.sleep_forever()

    signal.signal(signal.SIGTERM, old_term)
    try:
        with pytest.raises(SystemExit) as exit_info:
            backend.run(main, grace=0.5)
        assert exit_info.value.code == 3
        assert signal.getsignal(signal.SIGTERM) is not old_term
        os.kill(os.getpid(), signal.SIGTERM)  # within the grace period: absorbed
        time.sleep(0.6)  # past the deadline
        assert calls == []
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is old_term

        with pytest.raises(SystemExit):
            backend.run(main, grace=0.5)

        async def returns() -> str:
            return "done"

        assert backend.run(returns) == "done"
        assert signal.getsignal(signal.SIGTERM) is old_term
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_after_a_caught_exit_the_default_action_comes_back(
    tmp_path: Path, backend: Backend
) -> None:
    """SIGTERM's default action is back once the grace period of a caught run() is over."""
    body = """
    async def main():
        graceful_async.request_shutdown("done")
        await anyio.sleep_forever()

    try:
        start(main, grace=0.3)
    except SystemExit:
        pass
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # the grace period, counted from the request
        time.sleep(0.05)
    say("READY")
    time.sleep(30)
    say("still running")
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert result.lines == ["READY"]

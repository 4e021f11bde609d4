"""Blocking code in threads: cooperating with the shutdown, and being cut at the deadline."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import graceful_async

from ..support.helpers import Backend, Child, assert_forced_on_time, run_program, write_program


def test_thread_loop_stops_cooperatively(tmp_path: Path, backend: Backend) -> None:
    """A to_thread loop that polls shutdown_requested() returns early; its unit finishes."""
    body = """
    import anyio.to_thread

    def poll_loop():
        done = 0
        while not graceful_async.shutdown_requested():
            with graceful_async.in_flight():
                time.sleep(0.02)
                done += 1
            if done == 3:
                say("READY")
        return done

    async def main():
        done = await anyio.to_thread.run_sync(poll_loop)
        print("thread returned", done >= 3, graceful_async.shutdown_reason())

    start(main)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    # main returned by itself after the signal: the signal's status still stands.
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[1:] == ["thread returned True SIGTERM"]
    assert result.stderr == ""


def test_request_shutdown_from_a_thread_drains(tmp_path: Path, backend: Backend) -> None:
    """A thread asks for the shutdown; the job in flight on the loop still finishes."""
    body = """
    import anyio.to_thread

    async def job():
        async with graceful_async.in_flight():
            await anyio.sleep(0.2)
            print("job finished")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(job)
            await anyio.sleep(0.01)
            await anyio.to_thread.run_sync(graceful_async.request_shutdown, "from a thread")
            await anyio.sleep_forever()

    start(main)
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 0
    assert result.lines == ["job finished"]


def test_thread_ignoring_the_shutdown_is_cut_at_the_deadline(
    tmp_path: Path, backend: Backend
) -> None:
    """A to_thread call that never checks is named in the report; the deadline holds."""
    body = """
    import anyio.to_thread

    def never_checks():
        say("READY")
        time.sleep(600)

    async def main():
        await anyio.to_thread.run_sync(never_checks)

    start(main, grace=0.5)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == graceful_async.FORCED_EXIT_STATUS
    assert "shutdown did not finish within the grace period (0.5 s)" in result.stderr
    assert "in never_checks" in result.stderr
    assert_forced_on_time(result, 0.5)


@pytest.mark.parametrize("how", ["signal", "return"])
def test_threads_still_see_the_shutdown_after_run_returns(
    tmp_path: Path, backend: Backend, how: str
) -> None:
    """A non-daemon thread polling shutdown_requested() stops, even after run() returned."""
    body = """
    def poll_loop():
        while not graceful_async.shutdown_requested():
            time.sleep(0.01)
        print("thread saw:", graceful_async.shutdown_reason(), flush=True)

    async def main():
        threading.Thread(target=poll_loop).start()  # not joined: outlives run()
        say("READY")
        if sys.argv[1] == "signal":
            await anyio.sleep_forever()

    start(main)
    print("run returned", flush=True)
    """
    child = Child.start(write_program(tmp_path, body), backend, how)
    child.wait_for("READY")
    if how == "signal":
        child.send(signal.SIGTERM)
    result = child.finish()
    expected = {"signal": "SIGTERM", "return": "main returned"}[how]
    assert f"thread saw: {expected}" in result.lines
    assert result.returncode == (128 + signal.SIGTERM if how == "signal" else 0)


def test_the_next_run_starts_afresh(backend: Backend) -> None:
    """The state a finished run leaves for the interpreter's exit ends when run() starts."""

    async def quick() -> None:
        await anyio.lowlevel.checkpoint()

    backend.run(quick)
    assert graceful_async.shutdown_requested()
    assert graceful_async.shutdown_reason() == "main returned"
    seen: list[object] = []

    async def look() -> None:
        seen.extend([graceful_async.shutdown_requested(), graceful_async.shutdown_reason()])

    backend.run(look)
    assert seen == [False, None]

"""@worker: restart policies, backoff, giving up, and how a failure shuts the program down."""

from __future__ import annotations

import inspect
import re
import signal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import graceful_async

from .support.helpers import Backend, Child, assert_forced_on_time, run_program, write_program


def test_worker_stays_an_async_function(backend: Backend) -> None:
    """Bare or with options, the result is an async function with the same name."""

    @graceful_async.worker
    async def bare(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x * 2

    @graceful_async.worker(restart="on-failure")
    async def configured(x: int) -> int:
        return x + 1

    assert inspect.iscoroutinefunction(bare)
    assert inspect.iscoroutinefunction(configured)
    assert bare.__name__ == "bare"
    assert configured.__qualname__.endswith("configured")

    async def main() -> list[int | None]:
        results: list[int | None] = []

        async def collect(fn: Any, x: int) -> None:
            results.append(await fn(x))

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, bare, 1)
        results.append(await configured(1))
        return results

    assert backend.run(main) == [2, 2]
    assert backend.run(bare, 5) == 10  # passed straight to run()


def test_on_failure_restarts_until_it_succeeds(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """Each restart is logged with the name, attempt and delay; success ends the worker."""
    calls: list[int] = []

    @graceful_async.worker(restart="on-failure", name="flaky", backoff=0.001, max_backoff=0.001)
    async def flaky() -> str:
        calls.append(len(calls) + 1)
        await anyio.lowlevel.checkpoint()
        if len(calls) < 3:
            raise ConnectionError("broker went away")
        return "done"

    assert backend.run(flaky) == "done"
    assert calls == [1, 2, 3]
    restarts = [r for r in logs.records if "restarting in" in r.getMessage()]
    assert [r.getMessage().split(" (")[-1] for r in restarts] == ["attempt 2)", "attempt 3)"]
    assert all(r.getMessage().startswith("worker 'flaky' failed;") for r in restarts)
    assert all(r.exc_info and r.exc_info[0] is ConnectionError for r in restarts)


def test_on_failure_does_not_restart_a_return(backend: Backend) -> None:
    """restart='on-failure' lets a worker that returns stay finished."""
    calls: list[str] = []

    @graceful_async.worker(restart="on-failure", backoff=0.001, max_backoff=0.001)
    async def once() -> None:
        calls.append("ran")

    backend.run(once)
    assert calls == ["ran"]


def test_always_restarts_a_return_until_shutdown(backend: Backend) -> None:
    """restart='always' restarts a worker that returns, but never once shutdown began."""
    calls: list[int] = []

    @graceful_async.worker(restart="always", max_restarts=None, backoff=0.001, max_backoff=0.001)
    async def tick() -> None:
        calls.append(1)
        if len(calls) == 4:
            graceful_async.request_shutdown()
        await anyio.lowlevel.checkpoint()

    with pytest.raises(SystemExit) as info:
        backend.run(tick)
    assert info.value.code == 0
    assert len(calls) == 4


def test_backoff_doubles_with_jitter_up_to_the_cap(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """Delays: backoff * 2**n, drawn between half and all of it, capped by max_backoff."""

    @graceful_async.worker(
        restart="on-failure", max_restarts=5, backoff=0.004, max_backoff=0.02, name="b"
    )
    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("nope")

    with pytest.raises(SystemExit) as info:
        backend.run(failing)
    assert info.value.code == 1
    delays = [
        float(m.group(1))
        for r in logs.records
        if (m := re.search(r"restarting in ([\d.]+) s", r.getMessage()))
    ]
    ceilings = [0.004, 0.008, 0.016, 0.02, 0.02]
    assert len(delays) == len(ceilings)
    for delay, ceiling in zip(delays, ceilings, strict=True):
        # The log rounds to 10 ms, so compare with that much slack.
        assert ceiling / 2 - 0.005 <= delay <= ceiling + 0.005


def test_unlimited_restarts_keep_a_capped_backoff() -> None:
    """max_restarts=None: thousands of restarts in the window; the wait stays capped."""
    calls: list[int] = []

    @graceful_async.worker(
        restart="on-failure", max_restarts=None, window=3600, backoff=1e-9, max_backoff=1e-9
    )
    async def flaky() -> int:
        calls.append(1)
        await anyio.lowlevel.checkpoint()
        if len(calls) <= 1100:  # past 2**1024, which no float can hold
            raise ValueError("again")
        return len(calls)

    assert anyio.run(flaky) == 1101


def test_too_many_restarts_give_up(backend: Backend, logs: pytest.LogCaptureFixture) -> None:
    """More than max_restarts within the window: the traceback is logged, status 1."""
    calls: list[int] = []

    @graceful_async.worker(
        restart="on-failure", max_restarts=2, name="crashy", backoff=0.001, max_backoff=0.001
    )
    async def crashy() -> None:
        calls.append(1)
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("boom")

    with pytest.raises(SystemExit) as info:
        backend.run(crashy)
    assert info.value.code == 1
    assert len(calls) == 3
    gave_up = [r for r in logs.records if "shutting down the program" in r.getMessage()]
    assert len(gave_up) == 1
    final = gave_up[0]
    assert final.levelname == "ERROR"
    assert "worker 'crashy' failed after 2 restart(s) within 60 s" in final.getMessage()
    assert final.exc_info is not None
    assert final.exc_info[0] is RuntimeError


def test_restarts_outside_the_window_do_not_count(backend: Backend) -> None:
    """Only restarts within the last `window` seconds count toward max_restarts."""
    calls: list[int] = []

    @graceful_async.worker(
        restart="on-failure", max_restarts=1, window=0.05, backoff=0.2, max_backoff=0.2
    )
    async def slow_flaky() -> str:
        calls.append(1)
        await anyio.lowlevel.checkpoint()
        if len(calls) < 4:
            raise ValueError("again")
        return "ok"

    # Each wait (0.1 to 0.2 s) outlasts the 0.05 s window, so the limit never bites.
    assert backend.run(slow_flaky) == "ok"
    assert len(calls) == 4


def test_always_gives_up_on_a_worker_that_keeps_returning(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """restart='always' with too many returns within the window is a failure too."""

    @graceful_async.worker(
        restart="always", max_restarts=2, name="quitter", backoff=0.001, max_backoff=0.001
    )
    async def quitter() -> None:
        await anyio.lowlevel.checkpoint()

    with pytest.raises(SystemExit) as info:
        backend.run(quitter)
    assert info.value.code == 1
    assert any("worker 'quitter' returned after 2 restart(s)" in m for m in logs.messages), (
        logs.messages
    )


def test_shutdown_cancellation_is_not_a_failure(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """The shutdown's cancel ends a worker quietly: no restart, no failure, status kept."""
    calls: list[int] = []

    @graceful_async.worker(restart="always", backoff=0.001, max_backoff=0.001)
    async def forever() -> None:
        calls.append(1)
        if len(calls) == 1:
            graceful_async.request_shutdown(exit_code=7)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(forever)
    assert info.value.code == 7
    assert calls == [1]
    assert not [m for m in logs.messages if "worker" in m]


def test_backoff_ends_early_at_shutdown(backend: Backend) -> None:
    """A worker waiting to restart is not restarted once the shutdown begins."""
    calls: list[int] = []

    @graceful_async.worker(restart="on-failure", backoff=60, max_backoff=60)
    async def failing() -> None:
        calls.append(1)
        await anyio.lowlevel.checkpoint()
        raise ValueError("fail once")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(failing)
            await anyio.sleep(0.05)
            graceful_async.request_shutdown()

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=120, drain=60)
    assert info.value.code == 0
    assert calls == [1]


def test_failure_during_shutdown_still_fails_the_run(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """A worker that raises while draining is not restarted, and the status becomes 1."""

    @graceful_async.worker(restart="always", name="late")
    async def late() -> None:
        async with graceful_async.in_flight():
            graceful_async.request_shutdown()
            await anyio.sleep(0.01)
            raise OSError("disk full while finishing")

    with pytest.raises(SystemExit) as info:
        backend.run(late)
    assert info.value.code == 1
    assert any("worker 'late' failed during the shutdown" in m for m in logs.messages)


def test_worker_failure_drains_its_siblings(tmp_path: Path, backend: Backend) -> None:
    """A worker that gives up: traceback logged, siblings drain and clean up, status 1."""
    body = """
    logging.basicConfig(level=logging.ERROR)

    @graceful_async.worker
    async def broken():
        await anyio.sleep(0.1)
        raise KeyError("missing config")

    async def sibling():
        try:
            async with graceful_async.in_flight():
                await anyio.sleep(0.3)
                print("sibling job finished")
            await anyio.sleep_forever()
        finally:
            print("sibling finally")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(broken)
            tg.start_soon(sibling)

    start(main)
    """
    result = run_program(tmp_path, body, backend)
    assert result.returncode == 1
    assert result.lines == ["sibling job finished", "sibling finally"]
    assert "worker 'broken' failed; shutting down the program" in result.stderr
    assert "KeyError: 'missing config'" in result.stderr
    assert result.stderr.count("Traceback") == 1


def test_worker_name_in_the_stuck_report(tmp_path: Path, backend: Backend) -> None:
    """A worker that will not stop is named in the report at the deadline."""
    body = """
    @graceful_async.worker(name="stubborn consumer")
    async def stubborn():
        say("READY")
        with anyio.CancelScope(shield=True):
            await anyio.sleep(60)

    start(stubborn, grace=0.5)
    """
    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == graceful_async.FORCED_EXIT_STATUS
    assert "Workers still running (1):\n  stubborn consumer (attempt 1)" in result.stderr
    assert_forced_on_time(result, 0.5)


def test_giving_up_outside_run_raises() -> None:
    """Without run(), nobody can be shut down: the worker's own exception propagates."""

    @graceful_async.worker(restart="on-failure", max_restarts=1, backoff=0.001, max_backoff=0.001)
    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise LookupError("no run")

    with pytest.raises(LookupError, match="no run"):
        anyio.run(failing)


def test_worker_on_another_threads_loop_is_outside_run(backend: Backend) -> None:
    """A worker on another thread's event loop is not run()'s: giving up raises there."""
    seen: list[str] = []

    @graceful_async.worker
    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise LookupError("other loop")

    def other_loop() -> None:
        try:
            anyio.run(failing)
        except LookupError as exc:
            seen.append(str(exc))

    async def main() -> None:
        await anyio.to_thread.run_sync(other_loop)

    backend.run(main)
    assert seen == ["other loop"]


def test_restart_outside_run() -> None:
    """Restarts work without run() too, with the same backoff."""
    calls: list[int] = []

    @graceful_async.worker(restart="on-failure", backoff=0.001, max_backoff=0.001)
    async def flaky() -> int:
        calls.append(1)
        await anyio.lowlevel.checkpoint()
        if len(calls) < 2:
            raise ValueError("once")
        return len(calls)

    assert anyio.run(flaky) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"restart": "sometimes"}, ValueError, "restart must be one of 'never', 'on-failure'"),
        ({"max_restarts": -1}, ValueError, "max_restarts must be an int >= 0 or None, got -1"),
        ({"max_restarts": 1.5}, TypeError, "max_restarts must be an int >= 0 or None"),
        ({"window": 0}, ValueError, r"window must be a finite number of seconds > 0, got 0"),
        ({"backoff": -1}, ValueError, r"backoff must be a finite number of seconds >= 0"),
        ({"backoff": "1"}, TypeError, r"backoff must be a finite number of seconds >= 0"),
        ({"max_backoff": float("inf")}, ValueError, "max_backoff must be a finite number"),
        ({"backoff": 2, "max_backoff": 1}, ValueError, r"max_backoff must be at least backoff"),
        ({"name": 3}, TypeError, "name must be a string or None, got 3"),
    ],
)
def test_options_are_checked_eagerly(kwargs: dict[str, Any], error: type, match: str) -> None:
    """Bad options fail at decoration time, naming the option."""
    with pytest.raises(error, match=match):
        graceful_async.worker(**kwargs)


def test_worker_needs_an_async_function() -> None:
    """A plain function is refused when decorated."""

    def sync() -> None:
        pass

    with pytest.raises(TypeError, match=r"worker\(\) needs an async function"):
        graceful_async.worker(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"worker\(\) needs an async function"):
        graceful_async.worker(restart="always")(sync)  # type: ignore[arg-type]

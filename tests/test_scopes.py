"""cleanup_scope(): awaiting in finally after cancellation, bounded and escalatable."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import graceful_async

from .support.helpers import Backend, Child, write_program

pytestmark = pytest.mark.anyio


async def test_without_cleanup_scope_an_await_in_finally_raises() -> None:
    """The pitfall: after a cancel, an unshielded await in finally raises again."""
    reached: list[str] = []
    with anyio.CancelScope() as scope:
        try:
            scope.cancel()
            await anyio.sleep_forever()
        finally:
            with pytest.raises(anyio.get_cancelled_exc_class()):
                await anyio.lowlevel.checkpoint()
            reached.append("after the failed await")
    assert reached == ["after the failed await"]


async def test_cleanup_scope_lets_finally_await() -> None:
    """The fix: inside cleanup_scope() the await completes."""
    reached: list[str] = []
    with anyio.CancelScope() as scope:
        try:
            scope.cancel()
            await anyio.sleep_forever()
        finally:
            with graceful_async.cleanup_scope(timeout=5) as cleanup:
                await anyio.sleep(0.01)
                reached.append("cleanup finished")
            assert not cleanup.cancelled_caught
    assert reached == ["cleanup finished"]


async def test_cleanup_scope_is_bounded_by_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A cleanup that overruns its timeout is cut, and the cut is logged."""
    with graceful_async.cleanup_scope(timeout=0.05) as scope:
        await anyio.sleep(30)
    assert scope.cancelled_caught
    assert any(
        r.levelno == logging.WARNING and "cleanup scope cut off" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("limit", "error", "match"),
    [
        (-1, ValueError, "timeout must be None or a finite number of seconds >= 0, got -1"),
        (float("inf"), ValueError, "got inf"),
        (True, TypeError, "got True"),
    ],
)
async def test_cleanup_scope_checks_timeout(limit: object, error: type, match: str) -> None:
    """A bad timeout is named in the error."""
    with pytest.raises(error, match=match), graceful_async.cleanup_scope(limit):  # type: ignore[arg-type]
        pytest.fail("the block must not run")


def test_cleanup_scope_is_bounded_by_the_grace_period(backend: Backend) -> None:
    """Under run(), a cleanup scope ends with the grace period's cooperative time."""
    took: list[float] = []

    async def main() -> None:
        try:
            graceful_async.request_shutdown()
            await anyio.sleep_forever()
        finally:
            start = time.monotonic()
            with graceful_async.cleanup_scope():
                await anyio.sleep(30)
            took.append(time.monotonic() - start)

    # In-process, so the watchdog's forced exit would end the test process: a grace
    # period whose exit reserve (0.2 s) a loaded machine still keeps to.
    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=2)
    assert info.value.code == 0
    assert len(took) == 1
    assert took[0] < 2  # cut at grace minus the exit reserve (1.8 s), never at 30 s


def test_open_cleanup_scope_is_clamped_when_shutdown_starts(backend: Backend) -> None:
    """A cleanup scope entered before the trigger is still bounded by the grace period."""
    took: list[float] = []

    async def main() -> None:
        start = time.monotonic()
        with graceful_async.cleanup_scope() as scope:
            graceful_async.request_shutdown()
            await anyio.sleep(30)
        took.append(time.monotonic() - start)
        assert scope.cancelled_caught

    # In-process, so the watchdog's forced exit would end the test process: a grace
    # period whose exit reserve (0.2 s) a loaded machine still keeps to.
    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=2)
    assert info.value.code == 0
    assert len(took) == 1
    assert took[0] < 2  # cut at grace minus the exit reserve (1.8 s), never at 30 s


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

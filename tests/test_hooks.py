"""on_shutdown(): order, bounds, failures, forms, and when registration is refused."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import graceful_async

from .support.helpers import Backend, run_program


def test_hooks_run_last_registered_first_after_the_tree_unwinds(backend: Backend) -> None:
    """Sync and async hooks run LIFO, with their args, after every finally in main."""
    order: list[str] = []

    async def async_hook(label: str) -> None:
        await anyio.lowlevel.checkpoint()
        order.append(label)

    async def main() -> None:
        graceful_async.on_shutdown(order.append, "first (sync)")
        graceful_async.on_shutdown(async_hook, "second (async)")
        graceful_async.on_shutdown(order.append, "third (sync)")
        try:
            graceful_async.request_shutdown()
            await anyio.sleep_forever()
        finally:
            order.append("main finally")

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 0
    assert order == ["main finally", "third (sync)", "second (async)", "first (sync)"]


@pytest.mark.parametrize("how", ["return", "error", "signal", "request"])
def test_hooks_run_whatever_ends_main(backend: Backend, how: str) -> None:
    """Hooks run when main returns, raises, is signalled or is asked to stop."""
    ran: list[str] = []

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, how)
        if how == "error":
            raise LookupError(how)
        if how == "signal":
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep_forever()
        if how == "request":
            graceful_async.request_shutdown()
            await anyio.sleep_forever()

    if how == "return":
        assert backend.run(main) is None
    else:
        with pytest.raises((SystemExit, LookupError)) as info:
            backend.run(main)
        outcome = {"error": "LookupError('error')", "signal": "SystemExit(143)"}
        assert repr(info.value) == outcome.get(how, "SystemExit(0)")
    assert ran == [how]


def test_hooks_registered_before_run_wait_for_it(backend: Backend) -> None:
    """A hook registered with no run() active runs when the next run() ends, once."""
    ran: list[str] = []
    graceful_async.on_shutdown(ran.append, "hook")

    async def main() -> None:
        ran.append("main")

    backend.run(main)
    backend.run(main)
    assert ran == ["main", "hook", "main"]


def test_decorator_forms_and_unregister(backend: Backend) -> None:
    """Bare and parametrized decorators register; unregister() removes; handles still call."""
    ran: list[str] = []

    async def main() -> None:
        @graceful_async.on_shutdown
        def bare() -> None:
            ran.append("bare")

        @graceful_async.on_shutdown(timeout=5, name="named hook")
        async def with_options() -> None:
            ran.append("with options")

        @graceful_async.on_shutdown
        def removed() -> None:
            pytest.fail("an unregistered hook must not run")

        removed.unregister()
        removed.unregister()  # twice is harmless
        assert with_options.name == "named hook"
        assert with_options.timeout == 5
        assert bare.name.endswith("bare")
        assert "named hook" in repr(with_options)
        bare()  # the handle still calls the function
        assert ran == ["bare"]

    backend.run(main)
    assert ran == ["bare", "with options", "bare"]


def test_a_hook_can_unregister_one_that_has_not_run_yet(backend: Backend) -> None:
    """unregister() during the hook phase still removes a hook that is still to come."""
    ran: list[str] = []

    async def main() -> None:
        first = graceful_async.on_shutdown(ran.append, "first")
        graceful_async.on_shutdown(first.unregister)  # runs first: last registered

    backend.run(main)
    assert ran == []


def test_failing_hook_is_logged_and_the_others_run(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged with its traceback; earlier hooks still run."""
    ran: list[str] = []

    def broken() -> None:
        raise OSError("disk on fire")

    async def also_broken() -> None:
        sys.exit(4)

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, "survivor")
        graceful_async.on_shutdown(broken)
        graceful_async.on_shutdown(also_broken)

    backend.run(main)
    assert ran == ["survivor"]
    failures = [r for r in logs.records if "failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING, logging.WARNING]
    assert "also_broken" in failures[0].getMessage()
    assert "broken" in failures[1].getMessage()
    assert failures[1].exc_info is not None
    assert "disk on fire" in logs.text


def test_overrunning_hook_is_cancelled_and_named(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """An async hook past its timeout is cancelled, logged by name, and the rest run."""
    ran: list[str] = []

    async def slow() -> None:
        try:
            await anyio.sleep(30)
        finally:
            ran.append("slow cancelled")

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, "next")
        graceful_async.on_shutdown(slow, timeout=0.05, name="slow-hook")

    backend.run(main)
    assert ran == ["slow cancelled", "next"]
    warning = next(r for r in logs.records if "overran" in r.getMessage())
    assert warning.levelno == logging.WARNING
    assert "slow-hook" in warning.getMessage()


def test_hooks_are_bounded_by_the_grace_period(backend: Backend) -> None:
    """A hook without a timeout still stops when the grace period's cooperative time ends."""
    took: list[float] = []

    async def slow() -> None:
        start = time.monotonic()
        try:
            await anyio.sleep(30)
        finally:
            took.append(time.monotonic() - start)

    async def main() -> None:
        graceful_async.on_shutdown(slow)

    backend.run(main, grace=0.5)
    assert len(took) == 1
    assert took[0] < 0.5  # cut at grace minus the exit reserve (0.45 s), never at 30 s


def test_overrunning_sync_hook_is_reported(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """A sync hook cannot be cancelled; overrunning its limit is still logged."""

    async def main() -> None:
        graceful_async.on_shutdown(time.sleep, 0.1, timeout=0.01, name="sleepy")

    backend.run(main)
    assert any("sleepy took" in r.getMessage() for r in logs.records)


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


def test_registering_during_the_hook_phase_is_refused(backend: Backend) -> None:
    """Once hooks are running, on_shutdown() raises a clear RuntimeError."""
    errors: list[str] = []

    def late() -> None:
        try:
            graceful_async.on_shutdown(print)
        except RuntimeError as exc:
            errors.append(str(exc))

    async def main() -> None:
        graceful_async.on_shutdown(late)

    backend.run(main)
    assert len(errors) == 1
    assert "hook phase has already begun" in errors[0]

    async def again() -> None:
        graceful_async.on_shutdown(print)  # open again once run() ended

    backend.run(again)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("not callable",), {}, TypeError, "fn must be a callable"),
        ((print,), {"timeout": -1}, ValueError, "timeout must be None or a finite number"),
        ((print,), {"timeout": float("nan")}, ValueError, "timeout must be None or a finite"),
        ((print,), {"timeout": "1"}, TypeError, "timeout must be None or a finite number"),
        ((print,), {"name": 5}, TypeError, "name must be a string or None, got 5"),
    ],
)
def test_on_shutdown_checks_its_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], error: type, match: str
) -> None:
    """Bad arguments are named in the error and nothing is registered."""
    with pytest.raises(error, match=match):
        graceful_async.on_shutdown(*args, **kwargs)  # type: ignore[call-overload]

"""What starts a shutdown, and what run() ends with: requests, sys.exit, errors, signals."""

from __future__ import annotations

import os
import signal
import sys
import threading

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import graceful_async

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from .support.helpers import Backend


def test_shutdown_requested_outside_run_is_false() -> None:
    """With no run() active there is nothing shutting down."""
    assert graceful_async.shutdown_requested() is False


def test_request_outside_run_is_refused() -> None:
    """request_shutdown() needs a running program and says so."""
    with pytest.raises(RuntimeError, match=r"needs an active graceful_async\.run\(\)"):
        graceful_async.request_shutdown()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"exit_code": -1}, ValueError, "exit_code must be an int from 0 to 255, got -1"),
        ({"exit_code": 256}, ValueError, "exit_code must be an int from 0 to 255, got 256"),
        ({"exit_code": "1"}, TypeError, "exit_code must be an int"),
        ({"exit_code": True}, TypeError, "exit_code must be an int"),
        ({"reason": 3}, TypeError, "reason must be a string or None, got 3"),
    ],
)
def test_request_checks_its_arguments(kwargs: dict[str, object], error: type, match: str) -> None:
    """Bad arguments to request_shutdown() are named in the error."""
    with pytest.raises(error, match=match):
        graceful_async.request_shutdown(**kwargs)  # type: ignore[arg-type]


def test_request_from_a_task(backend: Backend) -> None:
    """A task's request cancels the whole tree, runs finally and hooks, and exits with the code."""
    order: list[str] = []

    async def sibling() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            order.append("sibling finally")

    async def main() -> None:
        graceful_async.on_shutdown(order.append, "hook")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sibling)
            await anyio.lowlevel.checkpoint()
            assert not graceful_async.shutdown_requested()
            graceful_async.request_shutdown("done", exit_code=3)
            assert graceful_async.shutdown_requested()
            try:
                await anyio.sleep_forever()
            finally:
                order.append("main finally")

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 3
    assert sorted(order[:2]) == ["main finally", "sibling finally"]
    assert order[2:] == ["hook"]


def test_request_from_another_thread(backend: Backend) -> None:
    """request_shutdown() works from a worker thread, and the thread sees the flag."""
    seen: list[bool] = []

    def blocking() -> None:
        seen.append(graceful_async.shutdown_requested())
        graceful_async.request_shutdown("from a thread")
        seen.append(graceful_async.shutdown_requested())

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, blocking)
            await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 0
    assert seen == [False, True]


def test_request_from_a_plain_thread(backend: Backend) -> None:
    """A thread the program started itself can stop the program."""

    async def main() -> None:
        threading.Thread(target=graceful_async.request_shutdown, args=("bye",)).start()
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 0


def test_request_from_sync_code_on_the_loop_thread(backend: Backend) -> None:
    """A sync callback on the loop thread may request shutdown too."""

    def sync_callback() -> None:
        graceful_async.request_shutdown(exit_code=5)

    async def main() -> None:
        sync_callback()
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 5


def test_later_requests_do_not_change_the_first(backend: Backend) -> None:
    """The first trigger wins: a second request keeps the first exit code."""

    async def main() -> None:
        graceful_async.request_shutdown(exit_code=7)
        graceful_async.request_shutdown(exit_code=9)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 7


def test_sys_exit_in_a_child_task(backend: Backend) -> None:
    """sys.exit(n) deep in main's tree shuts down gracefully and exits with n."""
    order: list[str] = []

    async def leaf() -> None:
        await anyio.lowlevel.checkpoint()
        sys.exit(6)

    async def branch() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(leaf)
            try:
                await anyio.sleep_forever()
            finally:
                order.append("branch finally")

    async def main() -> None:
        graceful_async.on_shutdown(order.append, "hook")
        async with anyio.create_task_group() as tg:
            tg.start_soon(branch)
            try:
                await anyio.sleep_forever()
            finally:
                order.append("main finally")

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert type(info.value) is SystemExit
    assert info.value.code == 6
    assert order == ["branch finally", "main finally", "hook"]


def test_sys_exit_in_main(backend: Backend) -> None:
    """sys.exit() in main itself is passed through unchanged."""

    async def main() -> None:
        sys.exit("bye")

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == "bye"


def test_error_from_main_is_the_users_own_exception(backend: Backend) -> None:
    """An exception from main runs the hooks and leaves run() unwrapped."""
    hooks: list[str] = []
    error = ValueError("boom")

    async def main() -> None:
        graceful_async.on_shutdown(hooks.append, "hook")
        await anyio.lowlevel.checkpoint()
        raise error

    with pytest.raises(ValueError, match="boom") as info:
        backend.run(main)
    assert info.value is error
    assert hooks == ["hook"]


def test_error_and_exit_together_is_an_error(backend: Backend) -> None:
    """A group holding sys.exit() and a real error is an error: nothing is hidden."""

    async def exits() -> None:
        sys.exit(3)

    async def fails() -> None:
        raise KeyError("k")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(exits)
            tg.start_soon(fails)

    with pytest.raises(BaseExceptionGroup) as info:
        backend.run(main)
    assert info.group_contains(KeyError)
    assert info.group_contains(SystemExit)


def test_error_during_signal_shutdown_wins(backend: Backend) -> None:
    """A finally that raises while shutting down is reported, not replaced by the status."""

    async def main() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep_forever()
        finally:
            raise RuntimeError("cleanup broke")

    with pytest.raises(RuntimeError, match="cleanup broke"):
        backend.run(main)


def test_exit_in_finally_during_signal_shutdown_wins(backend: Backend) -> None:
    """sys.exit() chosen by the program during shutdown beats the signal's status."""

    async def main() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep_forever()
        finally:
            sys.exit(9)

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 9


@pytest.mark.parametrize(
    ("sig", "exit_codes", "expected"),
    [
        (signal.SIGTERM, None, 143),
        (signal.SIGHUP, None, 129),
        (signal.SIGTERM, {signal.SIGTERM: 0}, 0),
        (signal.SIGINT, {signal.SIGINT: 3}, 3),
    ],
)
def test_signal_exit_status(
    backend: Backend, sig: signal.Signals, exit_codes: dict[int, int] | None, expected: int
) -> None:
    """After signal N run() raises SystemExit(128 + N), or the mapped status."""

    async def main() -> None:
        os.kill(os.getpid(), sig)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(
            main, signals=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP), exit_codes=exit_codes
        )
    assert info.value.code == expected


def test_sigint_raises_a_quiet_keyboard_interrupt(backend: Backend) -> None:
    """After SIGINT run() raises KeyboardInterrupt, as asyncio.run() and trio.run() do."""
    hook_before = sys.excepthook

    async def main() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await anyio.sleep_forever()

    with pytest.raises(KeyboardInterrupt) as info:
        backend.run(main)
    assert type(info.value) is KeyboardInterrupt
    # The hook that hides its traceback stays only until the next run() ...
    assert sys.excepthook is not hook_before

    async def noop() -> None:
        pass

    backend.run(noop)
    assert sys.excepthook is hook_before


def test_quiet_hook_passes_other_exceptions_through(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only our own KeyboardInterrupt is hidden; anything else still prints."""

    async def main() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await anyio.sleep_forever()

    with pytest.raises(KeyboardInterrupt) as info:
        backend.run(main)
    hook = sys.excepthook
    try:
        hook(KeyboardInterrupt, info.value, None)
        assert sys.excepthook is not hook  # removed itself
        assert capsys.readouterr().err == ""
        hook(ValueError, ValueError("shown"), None)
        assert "ValueError: shown" in capsys.readouterr().err
    finally:
        sys.excepthook = sys.__excepthook__

"""Reload hooks: a real reload signal runs them on the loop, one at a time, never in shutdown."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import graceful_async
from graceful_async._config import make_config
from graceful_async._reload import _hooks

from .support.helpers import WAIT, Backend, Child, write_program


@pytest.fixture(autouse=True)
def _no_leftover_hooks() -> Iterator[None]:
    """Reload hooks stay registered across runs: each test starts and ends with none."""
    _hooks.clear()
    yield
    _hooks.clear()


def _hup() -> None:
    os.kill(os.getpid(), signal.SIGHUP)


async def _wait_until(condition: Callable[[], object]) -> None:
    with anyio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110 - the hooks under test change it
            await anyio.sleep(0.01)


def test_reload_runs_the_hooks_in_order_on_the_loop(backend: Backend) -> None:
    """SIGHUP runs every hook, sync and async, in registration order, in the loop's thread."""
    ran: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()

    def sync_hook(label: str) -> None:
        ran.append((label, threading.get_ident() == loop_thread))

    async def async_hook() -> None:
        await anyio.lowlevel.checkpoint()
        ran.append(("async", threading.get_ident() == loop_thread))

    async def main() -> str:
        graceful_async.on_reload(sync_hook, "first")
        graceful_async.on_reload(async_hook)
        graceful_async.on_reload(sync_hook, "last")
        _hup()
        await _wait_until(lambda: len(ran) == 3)
        _hup()
        await _wait_until(lambda: len(ran) == 6)
        return "still running"

    previous = signal.getsignal(signal.SIGHUP)
    assert backend.run(main, reload_signal=signal.SIGHUP) == "still running"
    assert ran == [("first", True), ("async", True), ("last", True)] * 2
    assert signal.getsignal(signal.SIGHUP) is previous


def test_a_failing_reload_hook_is_logged_and_the_service_goes_on(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged with its traceback; later hooks and reloads still run."""
    ran: list[str] = []

    @graceful_async.on_reload
    def broken() -> None:
        ran.append("broken")
        raise ValueError("bad config")

    @graceful_async.on_reload(name="fine")
    async def after() -> None:
        ran.append("after")

    async def main() -> None:
        _hup()
        await _wait_until(lambda: len(ran) == 2)
        _hup()
        await _wait_until(lambda: len(ran) == 4)

    backend.run(main, reload_signal=signal.SIGHUP)
    assert ran == ["broken", "after"] * 2
    failures = [r for r in logs.records if r.getMessage().startswith("reload hook")]
    assert [r.getMessage() for r in failures] == [
        "reload hook test_a_failing_reload_hook_is_logged_and_the_service_goes_on.<locals>"
        ".broken failed"
    ] * 2
    assert failures[0].exc_info is not None
    assert "reload done in" in logs.text
    assert "1 hook(s) failed" in logs.text


def test_a_reload_hook_that_exits_does_not_end_the_service(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """sys.exit() in a reload hook (argparse on a bad option) is logged; the service goes on."""
    ran: list[str] = []

    def reparse() -> None:
        ran.append("reparse")
        sys.exit(2)

    async def main() -> str:
        graceful_async.on_reload(reparse)
        graceful_async.on_reload(ran.append, "next")
        _hup()
        await _wait_until(lambda: len(ran) == 2)
        await anyio.sleep(0.05)
        return "still running"

    assert backend.run(main, reload_signal=signal.SIGHUP) == "still running"
    assert ran == ["reparse", "next"]
    assert "reload hook" in logs.text
    assert "SystemExit: 2" in logs.text


def test_reloads_never_overlap(backend: Backend) -> None:
    """Signals during a reload make one more reload after it, never a concurrent one."""
    running = 0
    most = 0
    runs = 0
    release = anyio.Event()

    async def slow() -> None:
        nonlocal running, most, runs
        running += 1
        most = max(most, running)
        runs += 1
        try:
            if runs == 1:
                await release.wait()
        finally:
            running -= 1

    async def main() -> None:
        graceful_async.on_reload(slow)
        _hup()
        await _wait_until(lambda: runs == 1)
        _hup()
        _hup()
        await anyio.sleep(0.1)  # the loop sees both while the first reload still runs
        release.set()
        await _wait_until(lambda: runs == 2 and running == 0)
        await anyio.sleep(0.1)

    backend.run(main, reload_signal=signal.SIGHUP)
    assert (runs, most) == (2, 1)


def test_a_reload_during_shutdown_is_ignored(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """Once the shutdown has begun a reload signal runs nothing, and says so."""
    ran: list[str] = []

    async def main() -> None:
        graceful_async.on_reload(ran.append, "reload")
        async with graceful_async.in_flight():
            graceful_async.request_shutdown("test")
            _hup()
            await anyio.sleep(0.2)

    with pytest.raises(SystemExit) as info:
        backend.run(main, reload_signal=signal.SIGHUP, grace=WAIT)
    assert info.value.code == 0
    assert ran == []
    assert "reload requested during shutdown: ignored" in logs.text


def test_a_reload_under_way_ends_before_the_shutdown_hooks(
    tmp_path: Path, backend: Backend
) -> None:
    """A stuck reload is cancelled with main at the end of the drain; then the hooks run."""
    program = write_program(
        tmp_path,
        """
        async def stuck_reload():
            say("reload started")
            try:
                await anyio.sleep_forever()
            finally:
                say("reload cancelled")

        async def main():
            graceful_async.on_reload(stuck_reload)
            graceful_async.on_shutdown(say, "shutdown hook")
            say("READY")
            await anyio.sleep_forever()

        start(main, reload_signal=signal.SIGHUP, grace=10)
        """,
    )
    child = Child.start(program, backend)
    child.wait_for("READY")
    child.send(signal.SIGHUP)
    child.wait_for("reload started")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[-2:] == ["reload cancelled", "shutdown hook"]


def test_a_reload_hook_timeout_cancels_it(backend: Backend, logs: pytest.LogCaptureFixture) -> None:
    """A hook that overruns its timeout is cancelled and logged; the next hook runs."""
    ran: list[str] = []

    async def main() -> None:
        graceful_async.on_reload(anyio.sleep_forever, timeout=0.05, name="forever")
        graceful_async.on_reload(ran.append, "next")
        _hup()
        await _wait_until(lambda: ran)

    backend.run(main, reload_signal=signal.SIGHUP)
    assert ran == ["next"]
    assert "reload hook forever overran its 0.05 s timeout and was cancelled" in logs.text


def test_reload_hooks_without_a_reload_signal_warn(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """Registering a reload hook in a run that has no reload_signal says it will not run."""

    async def main() -> None:
        graceful_async.on_reload(print, name="reprint")

    backend.run(main)
    assert "reload hook reprint registered, but run() was given no reload_signal" in logs.text


def test_reload_hook_handles() -> None:
    """The handle calls the function, shows its name, and unregisters once."""
    hook = graceful_async.on_reload(lambda x: x * 2, 1, name="double", timeout=3)
    assert hook(21) == 42
    assert repr(hook) == "<ReloadHook 'double' timeout=3>"
    assert list(_hooks) == [hook]
    hook.unregister()
    hook.unregister()
    assert list(_hooks) == []


# What a caller without a type checker may pass.
_untyped_on_reload: Any = graceful_async.on_reload


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: _untyped_on_reload(42), TypeError, "fn must be a callable"),
        (lambda: _untyped_on_reload(print, name=3), TypeError, "name must be a string"),
        (lambda: graceful_async.on_reload(print, timeout=-1), ValueError, "timeout must be"),
    ],
)
def test_on_reload_argument_errors(call: object, error: type, message: str) -> None:
    """Bad hooks are refused when registered, naming the argument."""
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]
    assert list(_hooks) == []


async def _main() -> None:
    """A main for the configuration checks; never run."""


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"reload_signal": "HUP"}, TypeError, "reload_signal must be None or a signal number"),
        ({"reload_signal": 0}, ValueError, "reload_signal must hold signal numbers"),
        ({"reload_signal": signal.SIGKILL}, ValueError, "cannot include SIGKILL"),
        (
            {"reload_signal": signal.SIGTERM},
            ValueError,
            "reload_signal must not be one of the shutdown signals, got SIGTERM",
        ),
        (
            {"reload_signal": signal.SIGUSR1, "dump_signal": signal.SIGUSR1},
            ValueError,
            "dump_signal and reload_signal must differ, both are SIGUSR1",
        ),
    ],
)
def test_reload_signal_errors(kwargs: dict[str, object], error: type, message: str) -> None:
    """A bad reload_signal is refused before anything runs."""
    dump = kwargs.pop("dump_signal", None)
    with pytest.raises(error, match=message):
        make_config(_main, "asyncio", None, 5, (signal.SIGTERM,), None, None, dump, **kwargs)


@pytest.mark.anyio
@pytest.mark.parametrize("delay", [0, 0.5])
async def test_a_signal_during_start_up_is_acted_on(delay: float) -> None:
    """A SIGTERM that lands before main starts, with reloads on, still ends the run: 143."""
    from graceful_async.testing import run_service

    async def main() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(WAIT):
        async with run_service(
            main, grace=4, pre_drain_delay=delay, reload_signal=signal.SIGHUP
        ) as service:
            service.send_signal(signal.SIGTERM)
    assert (service.result.exit_status, service.result.forced) == (143, False)

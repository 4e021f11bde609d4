"""graceful_async.testing: a program's shutdown, run inside the test's own event loop."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import graceful_async
from graceful_async.testing import ServiceResult, run_service

from .support.helpers import FIRE_LATENESS, WAIT, fired_after

pytestmark = pytest.mark.anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup


async def test_sigterm_runs_finally_blocks_and_hooks_and_exits_143() -> None:
    """A simulated SIGTERM: main's finally, then the hooks last-first, and status 143."""
    ran: list[str] = []

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, "first registered", name="first")
        graceful_async.on_shutdown(ran.append, "last registered", name="last")
        try:
            await anyio.sleep_forever()
        finally:
            ran.append("finally")

    async with run_service(main, grace=5) as service:
        await service.wait_ready()
        service.send_signal(signal.SIGTERM)
    assert ran == ["finally", "last registered", "first registered"]
    result = service.result
    assert result == ServiceResult(
        exit_status=143,
        reason="SIGTERM",
        value=None,
        error=None,
        hooks_run=("last", "first"),
        hooks_failed=(),
        forced=False,
        report=None,
    )


async def test_work_in_flight_finishes_in_the_drain() -> None:
    """The job in flight at the signal finishes before main's tree is cancelled."""
    done: list[str] = []
    started = anyio.Event()

    async def main() -> None:
        async with graceful_async.in_flight():
            started.set()
            await anyio.sleep(0.2)
            done.append("job")

    async with run_service(main, grace=10) as service:
        await started.wait()
        service.send_signal(signal.SIGTERM)
        assert not graceful_async.is_ready()
    assert done == ["job"]
    assert service.result.exit_status == 143


@pytest.mark.parametrize(
    ("end", "status", "reason"),
    [
        ("sigint", 130, "SIGINT"),
        ("return", 0, "main returned"),
        ("request", 3, "shutdown requested (deploy)"),
        ("exit", 4, "sys.exit(4)"),
        ("exit256", 0, "sys.exit(256)"),
        ("exit-1", 255, "sys.exit(-1)"),
        ("interrupt", 130, "error in main (KeyboardInterrupt())"),
    ],
)
async def test_exit_statuses(end: str, status: int, reason: str) -> None:
    """Each way to end gives the status the process would have ended with."""

    async def main() -> str:
        if end == "request":
            graceful_async.request_shutdown("deploy", exit_code=3)
        elif end == "exit":
            sys.exit(4)
        elif end.startswith("exit"):
            sys.exit(int(end[4:]))
        elif end == "interrupt":
            raise KeyboardInterrupt
        elif end == "sigint":
            await anyio.sleep_forever()
        return "value"

    async with run_service(main) as service:
        if end == "sigint":
            await service.wait_ready()
            service.send_signal(signal.SIGINT)
    result = await service.wait()
    assert (result.exit_status, result.reason) == (status, reason)
    assert result.value == ("value" if end in ("return", "request") else None)


async def test_tasks_the_test_starts_meanwhile_survive_and_the_test_goes_on() -> None:
    """A task the test starts while the service runs is not swept as the program's."""
    finished: list[str] = []

    async def client() -> None:
        await anyio.sleep(0.2)
        finished.append("client")

    async def main() -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        async with run_service(main, grace=2) as service:
            await service.wait_ready()
            tg.start_soon(client)
            await anyio.sleep(0.05)
            service.send_signal(signal.SIGTERM)
        finished.append("after the block")
    assert finished == ["after the block", "client"]


async def test_waiting_for_the_shutdown_first_thing_in_the_block_waits() -> None:
    """wait_shutdown_requested() in the block waits even before main has started."""
    seen: list[bool] = []

    async def main() -> None:
        await anyio.sleep_forever()

    async with run_service(main, grace=2) as service:
        with anyio.move_on_after(0.2) as scope:
            await graceful_async.wait_shutdown_requested()
        seen.append(scope.cancelled_caught)
        service.send_signal(signal.SIGTERM)
        await graceful_async.wait_shutdown_requested()
        seen.append(graceful_async.shutdown_requested())
    assert seen == [True, True]


@pytest.mark.parametrize("round_", [1, 2])
async def test_reload_hooks_do_not_leak_between_services(round_: int) -> None:
    """Reload hooks a service registers are gone once it ends."""
    ran: list[str] = []
    reloaded = anyio.Event()

    async def main() -> None:
        graceful_async.on_reload(ran.append, f"round {round_}")
        graceful_async.on_reload(reloaded.set)
        await anyio.sleep_forever()

    async with run_service(main, reload_signal=signal.SIGHUP) as service:
        await service.wait_ready()
        await anyio.sleep(0.01)
        service.send_signal(signal.SIGHUP)
        await reloaded.wait()
        service.send_signal(signal.SIGTERM)
    assert ran == [f"round {round_}"]
    assert graceful_async._reload._hooks == []


async def test_an_error_in_main_is_status_1_and_kept() -> None:
    """An exception escaping main gives status 1 and is handed back, not raised."""

    async def main() -> None:
        raise LookupError("gone")

    async with run_service(main) as service:
        pass
    assert service.result.exit_status == 1
    assert isinstance(service.result.error, LookupError)


async def test_failing_and_overrunning_hooks_are_reported() -> None:
    """Hooks that raise or overrun their limit are listed in hooks_failed."""

    def broken() -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        graceful_async.on_shutdown(anyio.sleep_forever, timeout=0.05, name="slow")
        graceful_async.on_shutdown(broken)
        graceful_async.on_shutdown(lambda: None, name="fine")

    async with run_service(main) as service:
        pass
    assert service.result.hooks_run == ("fine", broken.__qualname__, "slow")
    assert service.result.hooks_failed == (broken.__qualname__, "slow")


async def test_a_shutdown_that_overruns_the_grace_is_reported_as_forced() -> None:
    """At the deadline the result says forced, status 124, with the stuck report."""

    async def main() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1.0)  # shielded beyond the 0.3 s grace

    async with run_service(main, grace=0.3) as service:
        await service.wait_ready()
        service.send_signal(signal.SIGTERM)
    result = service.result
    assert (result.exit_status, result.forced) == (graceful_async.FORCED_EXIT_STATUS, True)
    assert result.report is not None
    assert "shutdown did not finish within the grace period (0.3 s)" in result.report
    assert 0.3 <= fired_after(result.report) <= 0.3 + FIRE_LATENESS


async def test_a_second_signal_cuts_cleanup_short() -> None:
    """Two signals: cleanup scopes are cancelled and the service still ends with 143."""
    cut: list[bool] = []
    cleaning = anyio.Event()

    async def main() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with graceful_async.cleanup_scope() as scope:
                cleaning.set()
                await anyio.sleep(30)
            cut.append(scope.cancelled_caught)

    with anyio.fail_after(10):
        async with run_service(main, grace=60) as service:
            await service.wait_ready()
            service.send_signal(signal.SIGTERM)
            await cleaning.wait()
            service.send_signal(signal.SIGTERM)
    assert cut == [True]
    assert service.result.exit_status == 143


async def test_the_tests_own_tasks_survive() -> None:
    """The sweep of stray tasks leaves alone the tasks the test itself runs."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def main() -> None:
        await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        async with run_service(main) as service:
            pass
        before = ticks
        await anyio.sleep(0.1)
        assert ticks > before
        tg.cancel_scope.cancel()
    assert service.result.exit_status == 0


async def test_readiness_reload_and_pre_drain_delay() -> None:
    """Manual readiness, a reload, and a pre-drain delay in which the service still works."""
    events: list[str] = []
    reloaded = anyio.Event()

    async def main() -> None:
        graceful_async.on_reload(reloaded.set)
        await anyio.sleep(0.05)
        graceful_async.set_ready()
        await graceful_async.wait_shutdown_requested()
        events.append("drain began")

    async with run_service(
        main, reload_signal=signal.SIGHUP, pre_drain_delay=0.2, ready_on_start=False
    ) as service:
        assert not graceful_async.is_ready()
        await service.wait_ready()
        service.send_signal(signal.SIGHUP)
        await reloaded.wait()
        service.send_signal(signal.SIGTERM)
        events.append(f"ready={graceful_async.is_ready()}")
        await anyio.sleep(0.05)
        events.append(f"requested={graceful_async.shutdown_requested()}")
    assert events == ["ready=False", "requested=False", "drain began"]
    assert service.result.exit_status == 143


async def test_misuse_is_reported() -> None:
    """Unknown signals, early results, and a service that never got ready are errors."""

    async def main() -> None:
        await anyio.sleep(0.05)

    async with run_service(main, ready_on_start=False) as service:
        with pytest.raises(ValueError, match=r"signum must be a signal the service handles"):
            service.send_signal(signal.SIGUSR2)
        with pytest.raises(RuntimeError, match=r"still running; await service.wait\(\)"):
            service.result  # noqa: B018
        with pytest.raises(RuntimeError, match="ended without being marked ready"):
            await service.wait_ready()
    with pytest.raises(TypeError, match="main must be an async function"):
        async with run_service(print):  # type: ignore[arg-type]
            pass


async def test_an_error_in_the_test_cancels_the_service() -> None:
    """If the block raises, the service is cancelled and the error propagates."""
    cancelled: list[bool] = []
    running = anyio.Event()

    async def main() -> None:
        try:
            running.set()
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async def failing_test() -> None:
        async with run_service(main):
            await running.wait()
            raise ValueError("test failed")

    with pytest.raises((ValueError, ExceptionGroup)):
        await failing_test()
    assert cancelled == [True]


def test_the_how_to_example_passes(tmp_path: Path) -> None:
    """The complete example test in docs/howto/testing.md runs and passes as written."""
    page = (Path(__file__).parent.parent / "docs" / "howto" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(# (\w+\.py)\n.*?)```", page, flags=re.DOTALL)
    files = {name: code for code, name in blocks}
    assert set(files) == {"service.py", "test_service.py"}
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_service.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout

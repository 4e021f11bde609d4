"""Readiness: set_ready(), is_ready(), and the pre-drain delay before the drain begins."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import graceful_async
from graceful_async._config import make_config

from .support.helpers import WAIT, Backend, Child, write_program


async def _main() -> None:
    """A main for the configuration checks; never run."""


def test_readiness_outside_run() -> None:
    """Outside run() nothing is ready, and set_ready() says what it needs."""
    assert graceful_async.is_ready() is False
    with pytest.raises(RuntimeError, match=r"set_ready\(\) needs an active graceful_async.run"):
        graceful_async.set_ready()


def test_ready_on_start_and_not_ready_at_the_trigger(backend: Backend) -> None:
    """By default main starts ready; a request makes it not ready at once."""
    seen: list[bool] = []

    async def main() -> None:
        seen.append(graceful_async.is_ready())
        graceful_async.request_shutdown("test")
        seen.append(graceful_async.is_ready())
        graceful_async.set_ready()  # once the shutdown has begun, it changes nothing
        seen.append(graceful_async.is_ready())
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 0
    assert seen == [True, False, False]
    assert graceful_async.is_ready() is False  # and not after run() either


def test_ready_when_the_program_says_so(backend: Backend) -> None:
    """With ready_on_start=False the service is not ready until set_ready()."""
    seen: list[bool] = []

    async def main() -> None:
        seen.append(graceful_async.is_ready())
        await anyio.lowlevel.checkpoint()
        seen.append(graceful_async.is_ready())
        await anyio.to_thread.run_sync(graceful_async.set_ready)  # from any thread
        seen.append(graceful_async.is_ready())
        graceful_async.set_ready()  # again: nothing changes
        seen.append(graceful_async.is_ready())

    backend.run(main, ready_on_start=False)
    assert seen == [False, False, True, True]


def test_pre_drain_delay_keeps_serving_while_not_ready(backend: Backend) -> None:
    """During the delay drain() still hands out work and the shutdown is not yet visible."""
    during: list[tuple[int, bool, bool, str | None]] = []
    after: list[tuple[bool, str | None]] = []
    send, receive = anyio.create_memory_object_stream[int](10)

    async def consume() -> None:
        async for item in graceful_async.drain(receive):
            during.append(
                (
                    item,
                    graceful_async.is_ready(),
                    graceful_async.shutdown_requested(),
                    graceful_async.shutdown_reason(),
                )
            )

    async def produce() -> None:
        await graceful_async.wait_shutdown_requested()
        after.append((graceful_async.shutdown_requested(), graceful_async.shutdown_reason()))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            tg.start_soon(produce)
            tg.start_soon(_close_after_run, send, receive)
            await anyio.sleep(0.05)
            graceful_async.request_shutdown("deploy")
            # Work that arrives in the delay is still taken and done.
            for item in range(3):
                await send.send(item)
                await anyio.sleep(0.01)

    with pytest.raises(SystemExit) as exc_info:
        backend.run(main, grace=WAIT, pre_drain_delay=0.5)
    assert exc_info.value.code == 0
    assert during == [(0, False, False, None), (1, False, False, None), (2, False, False, None)]
    assert after == [(True, "shutdown requested (deploy)")]


async def _close_after_run(
    *streams: MemoryObjectSendStream[int] | MemoryObjectReceiveStream[int],
) -> None:
    """Close the streams once main's tree is cancelled."""
    try:
        await anyio.sleep_forever()
    finally:
        for stream in streams:
            stream.close()


def test_second_signal_cuts_the_pre_drain_delay_short(tmp_path: Path, backend: Backend) -> None:
    """A long delay ends at a second SIGTERM: the drain begins and the program ends."""
    program = write_program(
        tmp_path,
        """
        async def main():
            say("READY")
            await graceful_async.wait_shutdown_requested()
            say(f"drain began {graceful_async.shutdown_reason()}")

        logging.basicConfig(level=logging.INFO)
        start(main, grace=100, pre_drain_delay=45)
        """,
    )
    child = Child.start(program, backend)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    child.wait_for_stderr("pre-drain delay")  # the first signal has begun the delay
    child.send(signal.SIGTERM)
    result = child.finish(timeout=WAIT)  # far less than the 45 s delay
    assert result.returncode == 128 + signal.SIGTERM
    assert "drain began SIGTERM" in result.lines
    assert "pre-drain delay (45.0 s)" in result.stderr


def test_sigterm_in_the_pre_drain_delay_logs_and_exits_143(
    tmp_path: Path, backend: Backend
) -> None:
    """A real SIGTERM: not ready at once, the drain after the delay, then exit 143."""
    program = write_program(
        tmp_path,
        """
        async def watch():
            while graceful_async.is_ready():
                await anyio.sleep(0.01)
            say(f"not ready; requested={graceful_async.shutdown_requested()}")

        async def main():
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                say("READY")
                await graceful_async.wait_shutdown_requested()
                say("drain began")

        logging.basicConfig(level=logging.INFO)
        start(main, grace=10, pre_drain_delay=0.3)
        """,
    )
    child = Child.start(program, backend)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[-2:] == ["not ready; requested=False", "drain began"]
    assert "pre-drain phase took" in result.stderr


def test_pre_drain_delay_does_not_delay_a_returning_main(backend: Backend) -> None:
    """main that returns during the delay ends the run without waiting for the delay."""

    async def main() -> str:
        graceful_async.request_shutdown()
        return "done"

    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=300, pre_drain_delay=100)
    assert info.value.code == 0
    assert time.monotonic() - started < WAIT  # a hang bound: the delay is 100 s


# --- configuration


def test_pre_drain_delay_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delay: argument, environment, and what it leaves the drain by default."""

    def config(**kwargs: object) -> tuple[float, float]:
        c = make_config(_main, "asyncio", None, 10, (), None, kwargs.pop("drain", None), **kwargs)
        return c.pre_drain_delay, c.drain

    assert config() == (0.0, 5.0)
    assert config(pre_drain_delay=4.9) == (4.9, 2.55)
    assert config(pre_drain_delay=4, drain=5.5) == (4.0, 5.5)
    monkeypatch.setenv("GRACEFUL_ASYNC_PRE_DRAIN_DELAY", "2")
    assert config() == (2.0, 4.0)
    assert config(pre_drain_delay=0) == (0.0, 5.0)  # the argument wins


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pre_drain_delay": -1}, ValueError, "pre_drain_delay must be a finite number"),
        ({"pre_drain_delay": "5"}, TypeError, "pre_drain_delay must be a finite number"),
        (
            {"pre_drain_delay": 5},
            ValueError,
            r"pre_drain_delay must be shorter than half the grace period \(10 s\), got 5",
        ),
        (
            {"pre_drain_delay": 4, "drain": 6},
            ValueError,
            r"drain must be shorter than the grace period \(10 s\) less the pre-drain delay",
        ),
        ({"ready_on_start": 1}, TypeError, "ready_on_start must be True or False, got 1"),
    ],
)
def test_pre_drain_delay_errors(kwargs: dict[str, object], error: type, message: str) -> None:
    """Bad delays and flags are refused before anything runs, naming the argument."""
    drain = kwargs.pop("drain", None)
    with pytest.raises(error, match=message):
        make_config(_main, "asyncio", None, 10, (), None, drain, **kwargs)


def test_pre_drain_delay_from_a_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad GRACEFUL_ASYNC_PRE_DRAIN_DELAY names the variable."""
    monkeypatch.setenv("GRACEFUL_ASYNC_PRE_DRAIN_DELAY", "soon")
    with pytest.raises(ValueError, match="environment variable GRACEFUL_ASYNC_PRE_DRAIN_DELAY"):
        make_config(_main, "asyncio", None, 10, (), None)
    monkeypatch.setenv("GRACEFUL_ASYNC_PRE_DRAIN_DELAY", "6")
    with pytest.raises(ValueError, match="GRACEFUL_ASYNC_PRE_DRAIN_DELAY must be shorter"):
        make_config(_main, "asyncio", None, 10, (), None)

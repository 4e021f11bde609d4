"""Logging: one line per step at INFO, warnings that get out even with no logging set up."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from pathlib import Path

import anyio
import pytest

import graceful_async

from .support.helpers import Backend, run_program


def test_signal_shutdown_log_lines(backend: Backend, logs: pytest.LogCaptureFixture) -> None:
    """The trigger, each phase with its duration, and the total, on logger graceful_async."""

    async def main() -> None:
        graceful_async.on_shutdown(lambda: None)
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=8)
    assert info.value.code == 143
    ours = [r for r in logs.records if r.name == "graceful_async"]
    messages = [r.getMessage() for r in ours]
    assert all(r.levelno == logging.INFO for r in ours)
    assert messages[0] == "SIGTERM received, shutting down (grace 8.0 s)"
    assert re.fullmatch(
        r"cancelling phase took \d+\.\d{3} s \(main's task tree unwound; "
        r"0 stray task\(s\) cancelled\)",
        messages[1],
    )
    assert re.fullmatch(r"hooks phase took \d+\.\d{3} s \(1 hook\(s\) ran\)", messages[2])
    assert re.fullmatch(r"shutdown complete in \d+\.\d{3} s; exit status: 143", messages[3])
    assert len(messages) == 4


def test_request_and_sigint_are_named(backend: Backend, logs: pytest.LogCaptureFixture) -> None:
    """A request names its reason; SIGINT's final line says how the process will end."""

    async def requested() -> None:
        graceful_async.request_shutdown("maintenance")
        await anyio.sleep_forever()

    async def interrupted() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(requested, grace=3)
    assert info.value.code == 0
    with pytest.raises(KeyboardInterrupt):
        backend.run(interrupted)
    messages = [r.getMessage() for r in logs.records]
    assert "shutdown requested (maintenance), shutting down (grace 3.0 s)" in messages
    assert messages[-1].endswith("exit status: death by SIGINT")


def test_sys_exit_without_a_code_is_logged_as_such(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """sys.exit() reads as sys.exit() in the log and ends with status 0."""

    async def main() -> None:
        sys.exit()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code is None
    messages = [r.getMessage() for r in logs.records if r.name == "graceful_async"]
    assert messages[0].startswith("sys.exit() called, shutting down")
    assert messages[-1].endswith("exit status: 0")


def test_stray_asyncio_tasks_are_cancelled_before_hooks(logs: pytest.LogCaptureFixture) -> None:
    """Plain asyncio tasks outside anyio's tree are cancelled and awaited before the hooks."""
    import asyncio

    order: list[str] = []

    async def stray() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            order.append("stray finally")

    async def main() -> None:
        graceful_async.on_shutdown(order.append, "hook")
        task = asyncio.create_task(stray())
        await asyncio.sleep(0)
        assert not task.done()

    graceful_async.run(main)
    assert order == ["stray finally", "hook"]
    assert any("1 stray task(s) cancelled" in r.getMessage() for r in logs.records)


def test_silent_without_logging_config(tmp_path: Path, backend: Backend) -> None:
    """With logging never configured, a clean shutdown prints nothing at all."""
    body = """
    async def main():
        say("READY")
        await anyio.sleep_forever()

    start(main)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == 143
    assert result.stderr == ""


def test_warnings_reach_stderr_without_logging_config(tmp_path: Path, backend: Backend) -> None:
    """With logging never configured, a failing hook still shows, with its traceback."""
    body = """
    def broken_hook():
        raise OSError("disk full")

    async def main():
        graceful_async.on_shutdown(broken_hook)
        say("READY")
        await anyio.sleep_forever()

    start(main)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == 143
    assert "shutdown hook" in result.stderr
    assert "broken_hook failed" in result.stderr
    assert "OSError: disk full" in result.stderr

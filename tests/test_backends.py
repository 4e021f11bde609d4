"""The backends: listing the live tasks, and describing where each one waits."""

from __future__ import annotations

import anyio

from graceful_async._backends import TaskInfo, _retrying


def test_task_listing_retries_races() -> None:
    """A task set that changes while being read is read again; a hopeless one gives []."""
    attempts: list[int] = []

    def flaky() -> list[TaskInfo]:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("Set changed size during iteration")
        return [TaskInfo("t", "here")]

    def hopeless() -> list[TaskInfo]:
        raise RuntimeError("Set changed size during iteration")

    assert _retrying(flaky)() == [TaskInfo("t", "here")]
    assert _retrying(hopeless)() == []


def test_describe_unstarted_coroutine() -> None:
    """A coroutine with no frames left is described, not crashed on."""
    from graceful_async._backends import describe_coroutine

    async def nothing() -> None:
        pass

    coro = nothing()
    anyio.run(lambda: coro)
    assert describe_coroutine(coro) == "(not started or finished)"

"""The few things asyncio and trio need done differently, side by side.

Each backend is one small object, chosen once by name (`backend_named`) or from the
running loop (`running_backend`), as anyio chooses its ``AsyncBackend``: the rest of the
code calls its methods and never asks which backend it is. The differences: how to run
the loop, how to list the live tasks for the stuck report (from the watchdog thread, so
only reading), how to name the current task, and sweeping up plain asyncio tasks that
live outside anyio's task tree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

import anyio


@dataclass(frozen=True)
class TaskInfo:
    name: str
    where: str


TaskLister = Callable[[], list[TaskInfo]]
T = TypeVar("T")


def _frames(coro: Any) -> Iterator[FrameType]:
    # Follow the chain of awaits down to the innermost coroutine or generator.
    seen = 0
    while coro is not None and seen < 1000:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            frame = getattr(coro, "ag_frame", None)
        if frame is not None:
            yield frame
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )


def describe_coroutine(coro: Any) -> str:
    """The innermost user frame of ``coro``'s await chain as ``file:line in function``."""
    frames = list(_frames(coro))
    if not frames:
        return "(not started or finished)"
    user = [f for f in frames if not f.f_code.co_filename.startswith(_library_dirs())]
    frame = (user or frames)[-1]
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _library_dirs() -> tuple[str, ...]:
    # Frames in these packages are machinery, not the place a user wants to be pointed
    # at. Only packages already imported can be on a stack, so nothing is imported here
    # (importing asyncio alone would add some 30 ms to every start-up on trio).
    modules = (sys.modules.get(name) for name in ("anyio", "asyncio", "trio"))
    return tuple(
        os.path.dirname(module.__file__) + os.sep
        for module in modules
        if module is not None and module.__file__
    )


class Backend:
    """What run() needs from an event loop backend; one subclass per backend."""

    #: The name `graceful_async.run` takes: ``"asyncio"`` or ``"trio"``.
    name: str
    #: The package the backend needs beyond the standard library, if any (an extra).
    package: str | None = None
    #: Whether its loop can be uvloop's (``backend_options={"use_uvloop": True}``).
    takes_uvloop = False

    def option_names(self) -> tuple[str, ...]:
        """The keys ``backend_options`` may hold."""
        raise NotImplementedError

    def run(
        self,
        options: dict[str, Any],
        fn: Callable[[], Coroutine[Any, Any, T]],
        on_escape: Callable[[BaseException], None],
    ) -> T:
        """Run ``fn()`` to completion on a new loop, like `anyio.run`.

        ``on_escape`` hears of a SystemExit or KeyboardInterrupt that a task let out of
        the loop, where the backend lets it (asyncio); the loop then goes on.
        """
        raise NotImplementedError

    def task_lister(self) -> TaskLister:
        """Make a function that lists this loop's live tasks from any thread.

        Must be called on the event loop. The watchdog calls the result from its own
        thread while the loop may be running, so it only reads and retries on races.
        """
        raise NotImplementedError

    def current_task_getter(self) -> Callable[[], object]:
        """The backend's own, fast way to get the current task (per-task bookkeeping)."""
        raise NotImplementedError

    def cancel_stray_tasks(self, own: set[object]) -> list[Any]:
        """Cancel the tasks that live outside main's task tree, and return them.

        On asyncio a program may start plain tasks with ``asyncio.create_task()``;
        anyio's cancel scope does not reach them, and they would otherwise only be
        cancelled after our hooks, with no time limit. Trio has no such tasks.
        """
        return []

    async def wait_for_tasks(self, tasks: list[Any]) -> None:
        """Wait until ``tasks`` from `cancel_stray_tasks` are done."""

    def free_cycles(self) -> int | None:
        """Free what cancelled tasks left in reference cycles (``fast_exit``); how many.

        None where the backend's cancelled tasks leave no such cycles (trio).
        """
        return None


class _Trio(Backend):
    name = "trio"
    package = "trio"

    def option_names(self) -> tuple[str, ...]:
        import inspect

        import trio

        parameters = inspect.signature(trio.run).parameters.values()
        return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)

    def run(
        self,
        options: dict[str, Any],
        fn: Callable[[], Coroutine[Any, Any, T]],
        on_escape: Callable[[BaseException], None],
    ) -> T:
        return anyio.run(fn, backend="trio", backend_options=options)

    def task_lister(self) -> TaskLister:
        import trio

        # Start from the task running main, which leaves out trio's own system tasks.
        root = trio.lowlevel.current_task()

        def list_trio() -> list[TaskInfo]:
            found: list[TaskInfo] = []
            stack = [root]
            while stack:
                task = stack.pop()
                name = "main" if task is root else task.name
                found.append(TaskInfo(name, describe_coroutine(task.coro)))
                for nursery in list(task.child_nurseries):
                    stack.extend(list(nursery.child_tasks))
            return found

        return _retrying(list_trio)

    def current_task_getter(self) -> Callable[[], object]:
        import trio

        return trio.lowlevel.current_task


class _Asyncio(Backend):
    name = "asyncio"
    takes_uvloop = True

    def option_names(self) -> tuple[str, ...]:
        return ASYNCIO_OPTIONS

    def run(
        self,
        options: dict[str, Any],
        fn: Callable[[], Coroutine[Any, Any, T]],
        on_escape: Callable[[BaseException], None],
    ) -> T:
        # We drive the loop ourselves (anyio works in any asyncio loop) for one reason:
        # asyncio lets SystemExit and KeyboardInterrupt raised in a task escape the loop
        # at once, and asyncio.Runner would then cancel every task with no time limit
        # before we ever saw them. Here ``on_escape`` hears of the exception first (so
        # the shutdown and its deadline start), and the loop resumes so that main's tree
        # unwinds in order; the exception also reaches main through its task groups.
        import asyncio

        factory = options.get("loop_factory")
        if factory is None and options.get("use_uvloop"):
            import uvloop

            factory = uvloop.new_event_loop
        loop: asyncio.AbstractEventLoop = (
            factory() if factory is not None else asyncio.new_event_loop()
        )
        if options.get("debug") is not None:
            loop.set_debug(bool(options["debug"]))
        asyncio.set_event_loop(loop)
        try:
            task = loop.create_task(fn())
            while True:
                try:
                    return loop.run_until_complete(task)
                except (SystemExit, KeyboardInterrupt) as exc:
                    if task.done():
                        raise
                    on_escape(exc)
        finally:
            try:
                _cancel_remaining(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def task_lister(self) -> TaskLister:
        import asyncio

        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()

        def list_asyncio() -> list[TaskInfo]:
            return [
                TaskInfo(
                    "main" if task is main_task else task.get_name(),
                    describe_coroutine(task.get_coro()),
                )
                for task in asyncio.all_tasks(loop)
            ]

        return _retrying(list_asyncio)

    def current_task_getter(self) -> Callable[[], object]:
        import asyncio

        return asyncio.current_task

    def cancel_stray_tasks(self, own: set[object]) -> list[Any]:
        import asyncio

        stray = [t for t in asyncio.all_tasks() if t not in own and not t.done()]
        for task in stray:
            task.cancel()
        return stray

    async def wait_for_tasks(self, tasks: list[Any]) -> None:
        if tasks:
            import asyncio

            await asyncio.wait(tasks)

    def free_cycles(self) -> int | None:
        from ._garbage import free_task_group_cycles

        return free_task_group_cycles()


ASYNCIO_OPTIONS = ("debug", "loop_factory", "use_uvloop")

_BACKENDS: dict[str, Backend] = {b.name: b for b in (_Asyncio(), _Trio())}
BACKEND_NAMES = tuple(_BACKENDS)


def backend_named(name: str) -> Backend:
    """The backend called ``name`` (one of `BACKEND_NAMES`)."""
    return _BACKENDS[name]


def running_backend() -> Backend:
    """The backend of the running event loop."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _BACKENDS["trio"]
    return _BACKENDS["asyncio"]


def _retrying(lister: TaskLister) -> TaskLister:
    # The loop thread may change the task sets while we iterate them.
    def retry() -> list[TaskInfo]:
        for _ in range(100):
            try:
                return lister()
            except RuntimeError:  # "changed size during iteration"
                continue
        return []

    return retry


def _cancel_remaining(loop: Any) -> None:
    import asyncio

    remaining = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in remaining:
        task.cancel()
    if remaining:
        loop.run_until_complete(asyncio.gather(*remaining, return_exceptions=True))

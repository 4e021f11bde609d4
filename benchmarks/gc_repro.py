"""Cancelled tasks of an anyio task group on asyncio leave about 28 objects each in cycles.

Usage: python -m benchmarks gc-repro [N]     (N tasks, default 10,000)
       python gc_repro.py [N]                 (this file alone: it needs only anyio)

A self-contained reproduction, meant to be pasted into an anyio issue; it uses neither
graceful_async nor the rest of this package. It starts N tasks that sleep forever, cancels
them, and times the gc.collect() that follows, for:

- anyio task group: the tasks are started with ``TaskGroup.start_soon()`` and cancelled
  with the group's cancel scope;
- plain asyncio tasks: the same sleeps as ``asyncio.create_task()`` tasks, cancelled with
  ``Task.cancel()`` and awaited with ``asyncio.gather()``;
- (trio, if installed: the task group on anyio's trio backend.)

Both asyncio cases run under ``anyio.run(backend="asyncio")``, with the automatic garbage
collector off until the explicit collection, so that it finds all the cyclic garbage. A
process that exits pays for that garbage too: the interpreter's last collection at exit
frees it, after the program has returned and before the process is gone.

What keeps the objects alive, found with anyio 4.16.0 on CPython 3.11 and confirmed by
the walk this script prints (``explain()``): ``TaskGroup._spawn()`` in
``anyio/_backends/_asyncio.py`` adds a done callback, ``task_done``, to every task. For a
cancelled task it runs::

    try:
        exc = _task.exception()
    except CancelledError as e:
        while isinstance(e.__context__, CancelledError):
            e = e.__context__
        exc = e

``Task.exception()`` raises the task's CancelledError again, inside ``task_done``, so the
exception's ``__traceback__`` now begins with a traceback entry for ``task_done``'s own
frame, and that frame's local ``exc`` holds the exception: a reference cycle
(exception -> traceback -> frame of task_done -> local ``exc`` -> exception). Only the
cyclic collector can free it, and with it everything the cycle reaches: the rest of the
traceback (the frames of the cancelled coroutines, from anyio's ``TaskHandle._run_coro``
down to ``asyncio.sleep``, with their locals: the sleep's Future and TimerHandle), the
callback's own closure, and the Task with its coroutine and contexts: 28 objects per task
as gc.collect() counts them here (the deeper a task's coroutine, the more frames and
traceback entries). Plain asyncio tasks leave none: nothing holds their exception in a
frame that its traceback points to.

Deleting the local before ``task_done`` returns breaks the cycle: with ``del exc`` in a
``finally`` around the rest of the callback, the same run at 10,000 tasks leaves no
garbage (0 objects, against about 280,000 without it).
"""

from __future__ import annotations

import asyncio
import gc
import math
import platform
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from types import FrameType

import anyio


async def task_group(n: int) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()


async def plain_tasks(n: int) -> None:
    tasks = [asyncio.create_task(asyncio.sleep(math.inf)) for _ in range(n)]
    await asyncio.sleep(0)  # let every task reach its sleep
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def measure(
    label: str, main: Callable[[int], Awaitable[None]], n: int, backend: str = "asyncio"
) -> None:
    gc.collect()
    gc.disable()
    try:
        anyio.run(main, n, backend=backend)
        start = time.perf_counter()
        found = gc.collect()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    print(
        f"{label:<38} gc.collect(): {elapsed * 1e3:7.1f} ms, {found:>9,} objects "
        f"({found / n:.1f} per task)"
    )


def explain(n: int = 1_000) -> None:
    """Show what a cancelled task of a task group leaves, and the cycle that holds it."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collection finds, to look at it
    try:
        anyio.run(task_group, n, backend="asyncio")
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        gc.enable()
    kinds = Counter(type(obj).__name__ for obj in garbage)
    per_task = {kind: round(count / n) for kind, count in kinds.most_common() if count >= n}
    print(f"\nWhat each cancelled task of a task group leaves ({sum(per_task.values())}):")
    print("  " + (", ".join(f"{count} {kind}" for kind, count in per_task.items()) or "nothing"))
    exc = next((obj for obj in garbage if isinstance(obj, asyncio.CancelledError)), None)
    if exc is None:
        print("\nNo CancelledError among them: this anyio leaves no such cycle.")
        return
    # Asked before anything here looks at frame locals, which would add referrers.
    referrers = [r for r in gc.get_referrers(exc) if r is not garbage]
    print("\nOne task's CancelledError: its traceback, and which frame holds the exception")
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        where = f"{frame.f_code.co_filename.rsplit('site-packages/', 1)[-1]}:{tb.tb_lineno}"
        print(f"  {frame.f_code.co_name:<14} {where}{_holds(frame, exc)}")
        tb = tb.tb_next
    print("\nWhat refers to that exception: " + ", ".join(map(_describe, referrers)))


def _holds(frame: FrameType, exc: BaseException) -> str:
    names = [name for name, value in frame.f_locals.items() if value is exc]
    return f"  <- its local {', '.join(names)} is this exception" if names else ""


def _describe(obj: object) -> str:
    if isinstance(obj, FrameType):
        return f"the frame of {obj.f_code.co_name}"
    return type(obj).__name__


def main(n: int = 10_000) -> None:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"{n:,} cancelled tasks; {python}, anyio {version('anyio')}\n")
    measure("anyio task group (asyncio backend)", task_group, n)
    measure("plain asyncio tasks (asyncio backend)", plain_tasks, n)
    try:
        import trio  # noqa: F401
    except ImportError:
        pass
    else:
        measure("anyio task group (trio backend)", task_group, n, backend="trio")
    explain()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(int(sys.argv[1]))
    else:
        main()

"""What every exit-latency child shares: its command line, the two workloads, the stamps.

A child is started as ``python -m benchmarks._child_<contender> BACKEND USE_UVLOOP WORKLOAD
N [FLAG...]`` and runs one of two workloads of N idle tasks until it is stopped:

- ``anyio``: N tasks started in an anyio task group, each in ``anyio.sleep_forever()``.
- ``asyncio``: N plain tasks made with ``asyncio.create_task()``, each in
  ``asyncio.sleep(math.inf)`` (what ``anyio.sleep_forever()`` does on asyncio), awaited
  with ``asyncio.gather()``, so that cancelling the workload cancels them all.

Either prints ``READY`` once every task is parked. After its runner has returned, a child
calls ``runner_returned()``, which prints ``RETURNED <perf_counter>`` and, with the flag
``collect`` (a diagnostic, not the measurement), runs gc.collect() and prints
``COLLECTED <perf_counter> <objects found>``: how much cyclic garbage the shutdown left
for the interpreter's teardown. On Linux, perf_counter() is CLOCK_MONOTONIC, a clock the
parent shares, so it can split the exit latency at RETURNED.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

Workload = Callable[[int], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ChildArgs:
    backend: str
    use_uvloop: bool
    workload: Workload
    n_tasks: int
    flags: frozenset[str]

    @property
    def backend_options(self) -> dict[str, Any] | None:
        return {"use_uvloop": True} if self.use_uvloop else None


async def anyio_tasks(n: int) -> None:
    import anyio

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        print("READY", flush=True)
        await anyio.sleep_forever()


async def asyncio_tasks(n: int) -> None:
    tasks = [asyncio.create_task(asyncio.sleep(math.inf)) for _ in range(n)]
    # The new tasks were scheduled before this one resumes, so after one pass of the
    # loop each of them has reached its sleep.
    await asyncio.sleep(0)
    print("READY", flush=True)
    await asyncio.gather(*tasks)


WORKLOADS: dict[str, Workload] = {
    "anyio": anyio_tasks,
    "asyncio": asyncio_tasks,
}


def parse_argv(argv: list[str] | None = None) -> ChildArgs:
    backend, use_uvloop, workload, n, *flags = sys.argv[1:] if argv is None else argv
    return ChildArgs(backend, use_uvloop == "1", WORKLOADS[workload], int(n), frozenset(flags))


def runner_returned(args: ChildArgs) -> None:
    print(f"RETURNED {time.perf_counter()!r}", flush=True)
    if "collect" in args.flags:
        found = gc.collect()
        print(f"COLLECTED {time.perf_counter()!r} {found}", flush=True)

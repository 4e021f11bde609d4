"""Benchmark child: N idle tasks under graceful_async.run(), waiting for SIGTERM.

Usage: python _child_graceful.py BACKEND USE_UVLOOP N [collect]

Prints ``READY`` once every task is parked, and ``RETURNED <perf_counter>`` when run()
hands back control (here by raising SystemExit(143)), so the parent can split the exit
latency into "shutdown inside run()" and "interpreter teardown after it". On Linux,
perf_counter() is CLOCK_MONOTONIC, which parent and child share.

With ``collect`` (a diagnostic, not the measurement), it then runs gc.collect() and
prints ``COLLECTED <perf_counter> <objects found>``: how much cyclic garbage the
shutdown left for the interpreter's teardown.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import anyio

import graceful_async


async def idle() -> None:
    await anyio.sleep_forever()


async def main(n: int) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(idle)
        await anyio.wait_all_tasks_blocked()
        print("READY", flush=True)
        await anyio.sleep_forever()


def cli() -> None:
    backend, use_uvloop, n = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
    collect = sys.argv[4:] == ["collect"]
    options: dict[str, Any] | None = {"use_uvloop": True} if use_uvloop else None
    try:
        graceful_async.run(main, n, backend=backend, backend_options=options)
    finally:
        print(f"RETURNED {time.perf_counter()!r}", flush=True)
        if collect:
            found = gc.collect()
            print(f"COLLECTED {time.perf_counter()!r} {found}", flush=True)


if __name__ == "__main__":
    cli()

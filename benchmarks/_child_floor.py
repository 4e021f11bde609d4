"""Benchmark child: the floor. N idle tasks under bare anyio.run(), waiting for SIGTERM.

Usage: python _child_floor.py BACKEND USE_UVLOOP N [collect]

The same process shape as ``_child_graceful.py`` without graceful_async: main listens
for SIGTERM itself, cancels the task group on the first one, and the process then exits
with status 143 (128 + SIGTERM), as graceful_async.run() does. It prints the same
``READY``, ``RETURNED`` and, with ``collect``, ``COLLECTED`` lines.
"""

from __future__ import annotations

import gc
import signal
import sys
import time
from typing import Any

import anyio


async def idle() -> None:
    await anyio.sleep_forever()


async def main(n: int) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(idle)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            await anyio.wait_all_tasks_blocked()
            print("READY", flush=True)
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


def cli() -> None:
    backend, use_uvloop, n = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
    collect = sys.argv[4:] == ["collect"]
    options: dict[str, Any] | None = {"use_uvloop": True} if use_uvloop else None
    anyio.run(main, n, backend=backend, backend_options=options)
    print(f"RETURNED {time.perf_counter()!r}", flush=True)
    if collect:
        found = gc.collect()
        print(f"COLLECTED {time.perf_counter()!r} {found}", flush=True)
    sys.exit(143)


if __name__ == "__main__":
    cli()

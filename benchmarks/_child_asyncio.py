"""Benchmark child: a workload of N idle tasks under asyncio.run() and a hand-written handler.

Usage: python -m benchmarks._child_asyncio BACKEND USE_UVLOOP WORKLOAD N [collect] [uncaught]

What many services write by hand: main installs ``loop.add_signal_handler(SIGTERM, ...)``
that cancels the main task, and the program turns the CancelledError that asyncio.run()
then raises into status 143. uvloop.run() stands in for asyncio.run() on uvloop (BACKEND
is always asyncio). With the flag ``uncaught`` the program leaves the CancelledError
alone, as the shortest version of this code does: the interpreter prints its traceback
and the process exits with status 1. That variant is only run to record its status.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ._child_workloads import Workload, parse_argv, runner_returned


async def main(workload: Workload, n: int) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await workload(n)


def cli() -> None:
    args = parse_argv()
    run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    if args.use_uvloop:
        import uvloop

        run = uvloop.run
    try:
        run(main(args.workload, args.n_tasks))
    except asyncio.CancelledError:
        if "uncaught" in args.flags:
            runner_returned(args)
            raise
    runner_returned(args)
    sys.exit(143)


if __name__ == "__main__":
    cli()

"""Benchmark child: the floor. A workload of N idle tasks under bare anyio.run().

Usage: python -m benchmarks._child_floor BACKEND USE_UVLOOP WORKLOAD N [collect]

The same process shape as ``_child_graceful.py`` without graceful_async: main listens for
SIGTERM itself, runs the workload in a task group, cancels the group on the first signal,
and the program then exits with status 143 (128 + SIGTERM), as graceful_async.run() does.
See ``_child_workloads.py`` for the workloads and the lines the child prints.
"""

from __future__ import annotations

import signal
import sys

import anyio

from ._child_workloads import Workload, parse_argv, runner_returned


async def main(workload: Workload, n: int) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(workload, n)
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


def cli() -> None:
    args = parse_argv()
    anyio.run(
        main,
        args.workload,
        args.n_tasks,
        backend=args.backend,
        backend_options=args.backend_options,
    )
    runner_returned(args)
    sys.exit(143)


if __name__ == "__main__":
    cli()

"""Benchmark child: a workload of N idle tasks under aiomisc's entrypoint.

Usage: python -m benchmarks._child_aiomisc BACKEND USE_UVLOOP WORKLOAD N [collect] [run]

The long-running form from aiomisc's documentation: ``with aiomisc.entrypoint() as loop``,
main started as a task, ``loop.run_forever()``. On SIGTERM the entrypoint cancels every
task, stops the loop and closes it; the process exits with status 0. aiomisc picks uvloop
by itself whenever it is installed, so the loop factory is passed explicitly. BACKEND is
always asyncio.

With the flag ``run`` the child uses ``aiomisc.run(main())`` instead, which runs main with
run_until_complete(). That variant is only run to record its exit status. On SIGTERM
aiomisc starts a shutdown task that cancels every task, main included, and then stops the
loop; which of the two ends first depends on the loop. On asyncio's, main does: the
entrypoint then closes the loop, which cancels the unfinished shutdown task, and aiomisc
logs "Shutdown did not happen in 60.0 seconds, aborting." and exits with status 70 at
once. On uvloop the shutdown task stops the loop first, and run_until_complete() raises
"RuntimeError: Event loop stopped before Future completed.": status 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomisc

from ._child_workloads import parse_argv, runner_returned


def cli() -> None:
    args = parse_argv()
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if args.use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    try:
        if "run" in args.flags:
            aiomisc.run(args.workload(args.n_tasks), loop_factory=factory)
        else:
            with aiomisc.entrypoint(loop_factory=factory) as loop:
                loop.create_task(args.workload(args.n_tasks))
                loop.run_forever()
    finally:
        runner_returned(args)


if __name__ == "__main__":
    cli()

"""Benchmark child: a workload of N idle tasks under aiorun.run().

Usage: python -m benchmarks._child_aiorun BACKEND USE_UVLOOP WORKLOAD N [collect]

``aiorun.run(main(), stop_on_unhandled_errors=True, use_uvloop=...)``: on SIGTERM aiorun
stops the loop, cancels every task, waits for them, closes the loop and returns, so the
process exits with status 0. BACKEND is always asyncio.
"""

from __future__ import annotations

import aiorun

from ._child_workloads import parse_argv, runner_returned


def cli() -> None:
    args = parse_argv()
    aiorun.run(
        args.workload(args.n_tasks),
        stop_on_unhandled_errors=True,
        use_uvloop=args.use_uvloop,
    )
    runner_returned(args)


if __name__ == "__main__":
    cli()

"""Benchmark child: a workload of N idle tasks under graceful_async.run(), until SIGTERM.

Usage: python -m benchmarks._child_graceful BACKEND USE_UVLOOP WORKLOAD N [fast_exit] [collect]

run() turns SIGTERM into the cancellation of main's task tree and ends the process with
status 143 (128 + SIGTERM) by raising SystemExit(143). With the flag ``fast_exit``, run()
gets ``fast_exit=True``. See ``_child_workloads.py`` for the workloads and the lines the
child prints.
"""

from __future__ import annotations

import graceful_async

from ._child_workloads import parse_argv, runner_returned


def cli() -> None:
    args = parse_argv()
    try:
        graceful_async.run(
            args.workload,
            args.n_tasks,
            backend=args.backend,
            backend_options=args.backend_options,
            fast_exit="fast_exit" in args.flags,
        )
    finally:
        runner_returned(args)


if __name__ == "__main__":
    cli()

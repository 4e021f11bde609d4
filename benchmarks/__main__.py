"""The benchmarks' one entry point: ``python -m benchmarks COMMAND [options]``.

Commands:

- ``run``: every timing suite in one run, or those that ``--only`` names (``make bench``
  and ``make bench-quick``); see ``run.py``.
- ``behaviour``: how each runner behaves when a service is stopped (``make bench``); see
  ``behaviour.py``.
- ``gc-repro``: anyio's task-group garbage, reproduced with anyio alone; see
  ``gc_repro.py``.

``python -m benchmarks COMMAND --help`` lists a command's options. Run it from the
repository root, or with the root on PYTHONPATH: the child programs find this package the
same way. docs/benchmarks.md explains what is measured and the results.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from . import behaviour, gc_repro, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="graceful-async's benchmarks; docs/benchmarks.md explains them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_arguments(
        commands.add_parser(
            "run",
            help="every timing suite, or those of --only (make bench, make bench-quick)",
            description=_summary(run),
        )
    )
    behaviour.add_arguments(
        commands.add_parser(
            "behaviour",
            help="how each runner behaves when a service is stopped (make bench)",
            description=_summary(behaviour),
        )
    )
    gc_repro_parser = commands.add_parser(
        "gc-repro",
        help="anyio's task-group garbage, reproduced with anyio alone",
        description=_summary(gc_repro),
    )
    gc_repro_parser.add_argument(
        "tasks",
        nargs="?",
        type=int,
        default=10_000,
        metavar="N",
        help="how many tasks to start and cancel (default 10,000)",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return run.main(args)
    if args.command == "behaviour":
        behaviour.main(args)
    else:
        gc_repro.main(args.tasks)
    return 0


def _summary(module: ModuleType) -> str:
    """The first line of a module's docstring."""
    return (module.__doc__ or "").splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())

"""Who is measured: the contenders, the backends and workloads each one runs, and the cells.

A cell is one (backend, workload) pair; within a cell every contender that runs it is
measured back to back, so that drift of a shared machine hits them alike. With a baseline
(``run --baseline REV``), each of graceful_async's variants gets a twin that runs the same
child program with graceful_async as it was at REV (`with_baseline`); `Envs` gives each
contender the environment that imports its copy.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = __name__.rpartition(".")[0]  # "benchmarks"
PYTHON = sys.executable

#: Benchmark label -> (anyio backend, use uvloop).
BACKENDS: dict[str, tuple[str, bool]] = {
    "asyncio": ("asyncio", False),
    "asyncio+uvloop": ("asyncio", True),
    "trio": ("trio", False),
}
ASYNCIO_FAMILY = ("asyncio", "asyncio+uvloop")
#: Workload -> what it is (see _child_workloads.py).
WORKLOADS = {
    "anyio": "N tasks in an anyio task group",
    "asyncio": "N plain tasks from asyncio.create_task(), awaited with asyncio.gather()",
}

GRACEFUL = "graceful_async"
GRACEFUL_FAST = "graceful_async, fast exit"
FLOOR = "anyio (bare)"
#: graceful_async itself, in each of its variants: none of them is an alternative.
OURS = (GRACEFUL, GRACEFUL_FAST)


@dataclass(frozen=True)
class Contender:
    name: str
    child: str  # the module of this package that the child process runs
    backends: tuple[str, ...]
    #: The exit status it gives on SIGTERM; any other is an error. None: not checked.
    status: int | None
    description: str
    requires: tuple[str, ...] = ()  # modules it imports besides anyio
    flags: tuple[str, ...] = ()  # extra words for the child's command line
    #: Only run once to record its exit status, not timed.
    status_only: bool = False
    workloads: tuple[str, ...] = field(default=tuple(WORKLOADS))
    #: The contender whose program this one runs with the baseline's graceful_async;
    #: None: it imports the copy of the working tree, like every contender without one.
    baseline_of: str | None = None

    @property
    def command(self) -> list[str]:
        return child_command(self.child)

    @property
    def original(self) -> str:
        """The contender whose program this one runs: itself, or the one it is a baseline of."""
        return self.baseline_of or self.name


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        GRACEFUL,
        "_child_graceful",
        tuple(BACKENDS),
        143,
        "graceful_async.run(main, backend=...)",
    ),
    Contender(
        GRACEFUL_FAST,
        "_child_graceful",
        ASYNCIO_FAMILY,  # fast_exit does nothing on trio, which leaves no such garbage
        143,
        "graceful_async.run(main, backend=..., fast_exit=True)",
        flags=("fast_exit",),
    ),
    Contender(
        FLOOR,
        "_child_floor",
        tuple(BACKENDS),
        143,
        "anyio.run(); main runs the workload in a task group and cancels it on the first "
        "SIGTERM from anyio.open_signal_receiver(); then sys.exit(143)",
    ),
    Contender(
        "asyncio.run",
        "_child_asyncio",
        ASYNCIO_FAMILY,
        143,
        "asyncio.run() (uvloop.run() on uvloop); main's loop.add_signal_handler(SIGTERM) "
        "cancels the main task; CancelledError caught around asyncio.run(), then "
        "sys.exit(143)",
    ),
    Contender(
        "aiorun",
        "_child_aiorun",
        ASYNCIO_FAMILY,
        0,
        "aiorun.run(main(), stop_on_unhandled_errors=True, use_uvloop=...)",
        requires=("aiorun",),
    ),
    Contender(
        "aiomisc",
        "_child_aiomisc",
        ASYNCIO_FAMILY,
        0,
        "with aiomisc.entrypoint(loop_factory=...) as loop: loop.create_task(main()); "
        "loop.run_forever()",
        requires=("aiomisc",),
    ),
    Contender(
        "asyncio.run, uncaught",
        "_child_asyncio",
        ASYNCIO_FAMILY,
        None,
        "as asyncio.run, without catching the CancelledError",
        flags=("uncaught",),
        status_only=True,
    ),
    Contender(
        "aiomisc.run",
        "_child_aiomisc",
        ASYNCIO_FAMILY,
        None,
        "aiomisc.run(main(), loop_factory=...)",
        requires=("aiomisc",),
        flags=("run",),
        status_only=True,
    ),
)


def with_baseline(contenders: Iterable[Contender], rev: str) -> tuple[Contender, ...]:
    """``contenders`` with a baseline twin, "NAME @REV", after each of graceful_async's.

    A twin runs the same child with the same flags; only its environment differs (`Envs`),
    so that it imports graceful_async as it was at ``rev``.
    """
    found: list[Contender] = []
    for contender in contenders:
        found.append(contender)
        if contender.name in OURS:
            twin = replace(
                contender,
                name=f"{contender.name} @{rev}",
                description=f"{contender.description}, with graceful_async as at {rev}",
                baseline_of=contender.name,
            )
            found.append(twin)
    return tuple(found)


@dataclass(frozen=True)
class Envs:
    """The environment of each contender's children, by the copy of graceful_async it imports.

    Both put their copy first on PYTHONPATH; `_bench_env.snapshot_env` makes them and checks
    that a child imports that copy.
    """

    current: dict[str, str]  # the copy of the working tree, taken at the start
    baseline: dict[str, str] | None = None  # the copy of ``--baseline REV``, if one was asked

    def of(self, contender: Contender) -> dict[str, str]:
        if contender.baseline_of is None:
            return self.current
        if self.baseline is None:
            raise ValueError(f"{contender.name!r} needs the baseline's copy, and none was made")
        return self.baseline


def child_command(module: str) -> list[str]:
    """The command that runs one of this package's child programs.

    A child runs as ``python -m benchmarks._child_...``, so that it imports the workloads
    it shares with the others as part of the package. It finds the package as this
    process did: through the working directory or PYTHONPATH, which it inherits.
    """
    return [PYTHON, "-m", f"{PACKAGE}.{module}"]


def workloads_for(backend: str) -> tuple[str, ...]:
    """The anyio workload runs everywhere; plain asyncio tasks only on asyncio's loops."""
    return tuple(WORKLOADS) if backend in ASYNCIO_FAMILY else ("anyio",)


def available(contenders: Iterable[Contender], envs: Envs) -> dict[str, str]:
    """The contenders that cannot run here, each with the reason (a missing package)."""
    missing: dict[str, str] = {}
    for contender in contenders:
        for module in contender.requires:
            found = subprocess.run(
                [PYTHON, "-c", f"import {module}"],
                env=envs.of(contender),
                capture_output=True,
                check=False,
            )
            if found.returncode != 0:
                missing[contender.name] = f"{module} is not installed (pip install --group bench)"
    return missing


def timed(contenders: Sequence[Contender], skipped: dict[str, str]) -> list[Contender]:
    return [c for c in contenders if not c.status_only and c.name not in skipped]


def cells(contenders: Sequence[Contender]) -> list[tuple[str, str, list[Contender]]]:
    """(backend, workload, the contenders that run it), in a fixed order."""
    found = []
    for backend in BACKENDS:
        for workload in workloads_for(backend):
            runs = [c for c in contenders if backend in c.backends and workload in c.workloads]
            if runs:
                found.append((backend, workload, runs))
    return found


def rotated(items: Sequence[Contender], rep: int) -> list[Contender]:
    """``items`` starting at position rep (mod len), so each takes every place in turn."""
    shift = rep % len(items)
    return [*items[shift:], *items[:shift]]

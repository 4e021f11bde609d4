"""Benchmark child: the in-process cost of graceful_async.run() against anyio.run().

Usage: python -m benchmarks._child_inprocess BACKEND USE_UVLOOP CALLS BLOCK

Runs a trivial main CALLS times through each runner, alternating blocks of BLOCK calls so
that drift hits both alike, after a few discarded warm-up calls (imports, first loop).
Prints one JSON object: the per-call times in seconds, keyed by contender.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio

import graceful_async

WARMUP_CALLS = 5


async def main() -> None:
    pass


def cli() -> None:
    backend, use_uvloop = sys.argv[1], sys.argv[2] == "1"
    calls, block = int(sys.argv[3]), int(sys.argv[4])
    options: dict[str, Any] | None = {"use_uvloop": True} if use_uvloop else None

    def with_graceful() -> None:
        graceful_async.run(main, backend=backend, backend_options=options)

    def with_anyio() -> None:
        anyio.run(main, backend=backend, backend_options=options)

    runners: dict[str, Callable[[], None]] = {
        "graceful_async": with_graceful,
        "anyio (bare)": with_anyio,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(WARMUP_CALLS):
            run()
    blocks = 0
    while any(len(found) < calls for found in times.values()):
        # Alternate which runner goes first in each round of blocks.
        order = list(runners.items()) if blocks % 2 == 0 else list(reversed(runners.items()))
        blocks += 1
        for name, run in order:
            for _ in range(min(block, calls - len(times[name]))):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    print(json.dumps(times))


if __name__ == "__main__":
    cli()

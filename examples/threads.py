"""Blocking work in threads that stops cooperatively: stop it with Ctrl+C or `kill -TERM`.

Two threads, started with anyio.to_thread.run_sync, each work through batches with
blocking calls. Cancellation cannot reach into a thread, so each one polls
graceful_async.shutdown_requested() between batches and returns once the shutdown has
begun. Each batch is marked with graceful_async.in_flight(), so the drain phase lets the
batch in hand finish before the rest of the program is cancelled.

Run it with:  python examples/threads.py [--backend asyncio|trio] [--uvloop]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import random
import sys
import time

import anyio
import anyio.to_thread

import graceful_async

log = logging.getLogger("threads")


def crunch(name: str) -> int:
    """Work through batches until the shutdown begins; runs in a worker thread."""
    done = 0
    for batch in itertools.count(1):
        # Enter in_flight() before looking at the flag: a shutdown that begins after the
        # look then waits for this batch, and one that began before it takes no batch.
        with graceful_async.in_flight():
            if graceful_async.shutdown_requested():
                break
            log.info("%s started batch %d", name, batch)
            time.sleep(random.uniform(0.2, 0.6))  # blocking work: a cancel cannot stop it
            done += 1
            log.info("%s finished batch %d", name, batch)
    log.info("%s stopped after %d batch(es): %s", name, done, graceful_async.shutdown_reason())
    return done


async def main() -> None:
    pid = os.getpid()
    log.info("threads running as pid %d: press Ctrl+C or run `kill -TERM %d`", pid, pid)
    async with anyio.create_task_group() as tg:
        for n in (1, 2):
            name = f"thread-{n}"
            tg.start_soon(anyio.to_thread.run_sync, crunch, name, name=name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--uvloop", action="store_true", help="run asyncio on uvloop")
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)-14s %(message)s", stream=sys.stdout
    )
    graceful_async.run(
        main,
        backend=options.backend,
        backend_options={"use_uvloop": True} if options.uvloop else None,
    )

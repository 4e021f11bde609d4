"""A small service to stop with Ctrl+C (or `kill -TERM <pid>`) and watch shut down.

Three workers take jobs from a queue. When you stop it, the workers are cancelled, each
one finishes its cleanup inside a cleanup_scope, the shutdown hooks run last-registered
first, and the process exits with the status a shell expects.

Run it with:  python examples/demo.py [--backend asyncio|trio] [--uvloop]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys

import anyio
from anyio.abc import ObjectReceiveStream

import graceful_async

log = logging.getLogger("demo")


async def worker(name: str, jobs: ObjectReceiveStream[int]) -> None:
    done = 0
    try:
        async for job in jobs:
            await anyio.sleep(random.uniform(0.2, 0.8))  # pretend to work
            done += 1
            log.info("%s finished job %d", name, job)
    finally:
        # A plain `await` here would raise at once: the task is already cancelled.
        with graceful_async.cleanup_scope(timeout=1):
            await anyio.sleep(0.1)  # pretend to hand back a lease
            log.info("%s cleaned up after %d job(s)", name, done)


async def main() -> None:
    send, receive = anyio.create_memory_object_stream[int](10)
    graceful_async.on_shutdown(log.info, "hook: closing the database (registered first, runs last)")

    @graceful_async.on_shutdown(timeout=2)
    async def flush_metrics() -> None:
        await anyio.sleep(0.05)
        log.info("hook: metrics flushed")

    log.info(
        "demo running as pid %d: press Ctrl+C or run `kill -TERM %d`", os.getpid(), os.getpid()
    )
    async with anyio.create_task_group() as tg, send, receive:
        for n in range(3):
            tg.start_soon(worker, f"worker-{n}", receive.clone(), name=f"worker-{n}")
        job = 0
        while True:
            job += 1
            await send.send(job)
            await anyio.sleep(0.3)


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
        signals=(signal.SIGINT, signal.SIGTERM),
    )

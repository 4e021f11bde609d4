"""A queue worker that never loses a job: stop it with Ctrl+C or `kill -TERM <pid>`.

A producer puts jobs on a queue (an anyio memory object stream) faster than two
consumers can handle them. When you stop the program, the consumers take no new job,
each one finishes the job in hand, and the jobs nobody took stay in the queue. The last
line counts them: every job queued was either done or is still in the queue.

Run it with:  python examples/queue_worker.py [--backend asyncio|trio] [--uvloop]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import sys

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import graceful_async

log = logging.getLogger("queue_worker")


class Tally:
    """How many jobs were queued, and how many were done."""

    def __init__(self) -> None:
        self.queued = 0
        self.done = 0


@graceful_async.worker(restart="on-failure")
async def consume(name: str, jobs: MemoryObjectReceiveStream[int], tally: Tally) -> None:
    # drain() hands out one job at a time. Once the shutdown begins it takes no new job,
    # and the loop ends normally; the job in hand counts as in flight until the body is
    # done with it, so the drain phase lets it finish.
    async for job in graceful_async.drain(jobs):
        log.info("%s started job %d", name, job)
        await anyio.sleep(random.uniform(0.2, 0.6))  # pretend to work
        tally.done += 1
        log.info("%s finished job %d", name, job)
    log.info("%s takes no more jobs", name)


async def produce(jobs: MemoryObjectSendStream[int], tally: Tally) -> None:
    job = 0
    while True:
        job += 1
        # The stream's buffer is unbounded, so send() never waits: it is either cancelled
        # before it queues the job, or it queues it and returns. So the count is exact.
        await jobs.send(job)
        tally.queued += 1
        await anyio.sleep(random.uniform(0.05, 0.2))


async def main() -> None:
    send, receive = anyio.create_memory_object_stream[int](math.inf)
    tally = Tally()

    def summary() -> None:
        left = receive.statistics().current_buffer_used
        log.info("done %d, left %d in the queue, of %d queued", tally.done, left, tally.queued)

    graceful_async.on_shutdown(summary)
    pid = os.getpid()
    log.info("queue worker running as pid %d: press Ctrl+C or run `kill -TERM %d`", pid, pid)
    async with send, receive, anyio.create_task_group() as tg:
        for n in (1, 2):
            tg.start_soon(consume, f"consumer-{n}", receive.clone(), tally, name=f"consumer-{n}")
        tg.start_soon(produce, send, tally, name="producer")


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

"""A job-queue worker on SQLite that does every job once: stop it, start it again.

The jobs live in a table of a SQLite database file. Several workers each claim one job at
a time, work on it, and mark it done. Stop the program with Ctrl+C or `kill -TERM <pid>`:
the workers take no new job, each one finishes the job in hand, and the rest stay queued
for the next run. Start it again and it carries on where it stopped. Across any number of
stops and restarts every job is done once: none is lost, and none is done twice.

Run it with:
    python examples/sqlite_jobs.py --seed 40 [--db jobs.sqlite3] [--workers 4] [--work 0.5]
        [--backend asyncio|trio] [--uvloop]
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import logging
import os
import random
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

import anyio
import anyio.to_thread

import graceful_async

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("sqlite_jobs")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id         INTEGER PRIMARY KEY,
    payload    TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done')),
    claimed_by TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
-- The effect of each job. Deliberately no UNIQUE (job_id): a job done twice would show
-- here as two rows.
CREATE TABLE IF NOT EXISTS results (
    job_id  INTEGER NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL,
    worker  TEXT NOT NULL,
    output  TEXT NOT NULL
);
"""

# UPDATE ... RETURNING arrived in SQLite 3.35 (2021). An older library claims with a
# SELECT and an UPDATE inside one write transaction instead.
HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

POLL = 0.5  # seconds between looks at an empty queue
RELEASE_TIME = 0.5  # seconds a cut-off job's release may take, even after a second signal


@dataclass(frozen=True)
class Job:
    id: int
    payload: str
    # The claim's number (jobs.attempts after the claim). finish() and release() only
    # touch the job if it still carries this number: a fence against a stale claim.
    attempt: int


class LostClaimError(Exception):
    """Raised when a job to finish is no longer running under this worker's claim."""


class Store:
    """The queue's SQL, in blocking calls. Each method is one whole transaction.

    One connection, used by one thread at a time (see `Database`), rather than one per
    thread: SQLite lets one writer in at a time anyway and nearly every call here writes,
    so more connections in this process would only wait on each other's locks; and
    anyio's worker threads come and go, so connections kept per thread would be opened
    and never closed. ``check_same_thread=False`` lets whichever worker thread anyio
    picks use it. Each method commits or rolls back before it returns, so no transaction
    is ever open between two calls, which may run in two different threads.
    """

    def __init__(self, path: str) -> None:
        # isolation_level=None: no implicit transactions; each method says where its
        # transaction begins and ends. timeout is SQLite's busy timeout: how long to wait
        # when another process (the sqlite3 shell, a test) holds the lock.
        self._conn = sqlite3.connect(
            path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        # WAL: readers (the sqlite3 shell, say) can look while a worker writes, and a
        # commit costs one append to the log. NORMAL sync is durable enough with WAL.
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a transaction never reads first
        # and then fails to upgrade to a writer because another one got there first.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def requeue_stale(self) -> int:
        """Put back every job left running by a process that was killed; how many."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'queued', claimed_by = NULL WHERE state = 'running'"
            )
            return cursor.rowcount

    def seed(self, total: int) -> int:
        """Add jobs until the table holds ``total`` in all; how many were added."""
        with self._transaction() as conn:
            have: int = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            added = range(have + 1, total + 1)
            conn.executemany("INSERT INTO jobs (payload) VALUES (?)", [(str(n),) for n in added])
            return len(added)

    def claim(self, worker: str) -> Job | None:
        """Move the oldest queued job to running, for ``worker``; None if none is queued."""
        if HAS_RETURNING:
            # One statement, so one atomic step: two workers can never claim the same job.
            # fetchall() runs the statement to its end, which commits it.
            rows = self._conn.execute(
                "UPDATE jobs SET state = 'running', claimed_by = ?, attempts = attempts + 1"
                " WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1)"
                " RETURNING id, payload, attempts",
                (worker,),
            ).fetchall()
        else:  # SQLite older than 3.35
            with self._transaction() as conn:
                rows = conn.execute(
                    "SELECT id, payload, attempts + 1 FROM jobs"
                    " WHERE state = 'queued' ORDER BY id LIMIT 1"
                ).fetchall()
                if rows:
                    conn.execute(
                        "UPDATE jobs SET state = 'running', claimed_by = ?, attempts = ?"
                        " WHERE id = ?",
                        (worker, rows[0][2], rows[0][0]),
                    )
        return Job(*rows[0]) if rows else None

    def finish(self, job: Job, worker: str, output: str) -> None:
        """Write the job's result and mark it done, both or neither."""
        # One transaction for the effect and the state: a crash can never leave a job
        # done without its result, nor a result for a job that will be done again.
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO results (job_id, attempt, worker, output) VALUES (?, ?, ?, ?)",
                (job.id, job.attempt, worker, output),
            )
            cursor = conn.execute(
                "UPDATE jobs SET state = 'done'"
                " WHERE id = ? AND state = 'running' AND attempts = ?",
                (job.id, job.attempt),
            )
            if cursor.rowcount != 1:  # raising rolls the result back too
                raise LostClaimError(f"job {job.id} is no longer claimed by {worker}")

    def release(self, job: Job) -> bool:
        """Put a claimed job back in the queue; False if it was not running any more."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'queued', claimed_by = NULL"
                " WHERE id = ? AND state = 'running' AND attempts = ?",
                (job.id, job.attempt),
            )
            return cursor.rowcount == 1

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        counts = dict.fromkeys(("queued", "running", "done"), 0)
        counts.update(self._conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        return counts

    def close(self) -> None:
        self._conn.close()


class Database:
    """The async side of `Store`: each call runs in a worker thread, one at a time."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # One token: the connection is never used by two threads at once.
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str) -> Database:
        return cls(await anyio.to_thread.run_sync(Store, path))

    async def run(
        self, method: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        # The thread call cannot be abandoned (anyio's default): once a transaction has
        # started, this task waits for its outcome even if it is cancelled meanwhile, so
        # it always knows whether its job was claimed, finished or released.
        call = functools.partial(method, self._store, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)


@dataclass
class Tally:
    """What this run did, for the last lines of the log."""

    claimed: int = 0
    done: int = 0
    released: int = 0
    idle: bool = False


async def claims(db: Database, worker: str, tally: Tally) -> AsyncIterator[Job]:
    """Claim jobs one at a time, forever; look again every POLL seconds when none is queued."""
    while True:
        job = await db.run(Store.claim, worker)
        if job is None:
            if not tally.idle:
                log.info("no job queued; looking again every %g s", POLL)
                tally.idle = True
            await anyio.sleep(POLL)
            continue
        tally.idle = False
        tally.claimed += 1
        log.info("%s claimed job %d (attempt %d)", worker, job.id, job.attempt)
        # No await between the claim and the yield: the job cannot be lost in between.
        yield job


async def do(db: Database, worker: str, job: Job, work: float, tally: Tally) -> None:
    """Work on a claimed job; on any way out but success, put it back in the queue."""
    try:
        await anyio.sleep(random.uniform(0.5, 1.5) * work)  # pretend to work
        await db.run(Store.finish, job, worker, output=str(int(job.payload) ** 2))
    except BaseException:
        # Cut off (at the drain deadline, or by a second signal) or failed: a claimed job
        # must not stay running, so put it back. The task may be cancelled by now, so the
        # await needs a shielded scope to run at all. Not cleanup_scope(): a second
        # signal (Ctrl+C pressed twice) cancels those at once, and this is the one piece
        # of cleanup that must happen even then. It is one short write to a local file,
        # so a shield bounded well inside the 1 s that a second signal leaves is enough.
        # Only a third signal or SIGKILL can still leave the job running; the next start
        # re-queues it.
        with anyio.move_on_after(RELEASE_TIME, shield=True):
            if await db.run(Store.release, job):
                tally.released += 1
                log.info("%s released job %d back to the queue", worker, job.id)
        raise
    tally.done += 1
    log.info("%s done job %d", worker, job.id)


@graceful_async.worker(restart="on-failure")
async def work_jobs(worker: str, db: Database, work: float, tally: Tally) -> None:
    # drain() hands out one claimed job at a time and counts it as in flight until the
    # body is done with it, so the drain phase lets it finish. Once the shutdown begins,
    # no new job is claimed and the loop ends normally. aclosing() closes the claims()
    # generator here and now rather than whenever it is garbage collected.
    async with aclosing(graceful_async.drain(claims(db, worker, tally))) as jobs:
        async for job in jobs:
            await do(db, worker, job, work, tally)
    log.info("%s takes no more jobs", worker)


async def main(options: argparse.Namespace) -> None:
    db = await Database.open(options.db)
    tally = Tally()
    try:
        # Only a process that ended without its cleanup leaves a job running: SIGKILL
        # (which cannot be caught or handled), a power cut, a third signal or the
        # watchdog's forced exit. A stop by one or two signals finishes or releases each
        # job in hand. So this is where the jobs of such a process are recovered, and it
        # is the only path on which a job's work may be done again; finish() writes the
        # result and the done state in one transaction, so it still leaves exactly one
        # result. It is only safe because no other process works this database (see
        # __main__).
        requeued = await db.run(Store.requeue_stale)
        if requeued:
            log.warning("re-queued %d job(s) left running by a process that was killed", requeued)
        if options.seed and (added := await db.run(Store.seed, options.seed)):
            log.info("seeded %d new job(s)", added)
        counts = await db.run(Store.counts)
        log.info("%s: done %d, queued %d", options.db, counts["done"], counts["queued"])
        pid = os.getpid()
        log.info(
            "sqlite_jobs running as pid %d with %d workers: press Ctrl+C or run `kill -TERM %d`",
            pid,
            options.workers,
            pid,
        )
        async with anyio.create_task_group() as tg:
            for n in range(1, options.workers + 1):
                name = f"worker-{n}"
                tg.start_soon(work_jobs, name, db, options.work, tally, name=name)
    finally:
        with graceful_async.cleanup_scope(timeout=2):
            counts = await db.run(Store.counts)
            log.info(
                "this run: claimed %d, done %d, released %d",
                tally.claimed,
                tally.done,
                tally.released,
            )
            log.info(
                "done %d, queued %d, running %d",
                counts["done"],
                counts["queued"],
                counts["running"],
            )
            await db.run(Store.close)


def count(text: str, minimum: int = 0) -> int:
    value = int(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="jobs.sqlite3", help="the database file")
    parser.add_argument(
        "--workers", type=functools.partial(count, minimum=1), default=4, help="concurrent workers"
    )
    parser.add_argument(
        "--seed", type=count, default=0, metavar="N", help="add jobs until there are N in all"
    )
    parser.add_argument("--work", type=seconds, default=0.5, help="mean seconds per job")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--uvloop", action="store_true", help="run asyncio on uvloop")
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)-14s %(message)s", stream=sys.stdout
    )
    # Re-queueing the running jobs at start-up assumes they belong to a dead process, so
    # one process at a time may work a database. The lock dies with the process, even
    # one killed with SIGKILL; run more workers with --workers instead.
    with open(f"{options.db}.lock", "wb") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(f"another process is working {options.db}; only one may at a time")
        graceful_async.run(
            main,
            options,
            backend=options.backend,
            backend_options={"use_uvloop": True} if options.uvloop else None,
        )

"""examples/sqlite_jobs.py does every job exactly once, across signals, restarts and SIGKILL."""

from __future__ import annotations

import importlib.util
import random
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from ..support.helpers import SIGINT_DEATH, Backend, Child, Result

SQLITE_JOBS = Path(__file__).parents[2] / "examples" / "sqlite_jobs.py"
LOGGER = " sqlite_jobs "  # in every line the example itself logs
READY = "sqlite_jobs running as pid"
EMPTY = "no job queued"
WORKERS = 4  # the example's default


def start(db: Path, backend: Backend, *args: str, **env: str) -> Child:
    """Start the example on ``db``; return once its signal handlers are in place."""
    argv = [sys.executable, str(SQLITE_JOBS), "--db", str(db), "--backend", backend.name]
    if backend.options.get("use_uvloop"):
        argv.append("--uvloop")
    child = Child([*argv, *args], {**backend.env(), **env})
    child.wait_for(READY, partial=True)
    return child


def read_until(child: Child, what: str, count: int) -> None:
    """Read the log until ``count`` lines containing ``what``, or until the queue is empty."""
    seen = 0
    while seen < count:
        child.wait_for(LOGGER, partial=True)
        line = child.lines[-1]
        if EMPTY in line:
            return
        seen += what in line


def jobs_in(lines: list[str], verb: str) -> list[int]:
    """The ids of the jobs in lines '<worker> <verb> job <id>...'."""
    found = [re.search(rf"worker-\d+ {verb} job (\d+)", line) for line in lines]
    return [int(match[1]) for match in found if match]


@dataclass
class Snapshot:
    """The database as the example left it."""

    states: dict[int, str]
    attempts: dict[int, int]
    results: Counter[int]  # job id -> result rows

    @classmethod
    def read(cls, db: Path) -> Snapshot:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT id, state, attempts FROM jobs").fetchall()
            results = Counter(job for (job,) in conn.execute("SELECT job_id FROM results"))
        return cls(
            {job: state for job, state, _ in rows},
            {job: attempts for job, _, attempts in rows},
            results,
        )

    def count(self, state: str) -> int:
        return sum(s == state for s in self.states.values())


def check_stopped_cleanly(result: Result, status: int, *, summary: bool = True) -> None:
    """The status is right, and each job this run claimed was either done or released."""
    assert result.returncode == status, result.stderr
    assert result.stderr == ""
    claimed = jobs_in(result.lines, "claimed")
    assert sorted(claimed) == sorted(
        jobs_in(result.lines, "done") + jobs_in(result.lines, "released")
    )
    if summary:  # it is written in a cleanup_scope, which a second signal cuts off
        assert re.search(r"^.* done \d+, queued \d+, running 0$", result.stdout, re.MULTILINE)


@pytest.mark.timeout(240)
def test_every_job_is_done_once_across_sigterms(backend: Backend, tmp_path: Path) -> None:
    """Stopped with SIGTERM at varied moments and restarted, the workers do every job once."""
    db = tmp_path / "jobs.sqlite3"
    total = 200
    rng = random.Random(backend.id)  # varied moments, the same ones on every run
    released: Counter[int] = Counter()
    rounds = 0
    while True:  # bounded below
        rounds += 1
        child = start(db, backend, "--seed", str(total), "--work", "0.02")
        # 0: at once, when the workers may not even have claimed their first job.
        read_until(child, " done job ", rng.choice((0, 1, 3, 10, 20, 40)))
        time.sleep(rng.uniform(0, 0.02))  # now and then mid-job rather than between jobs
        child.send(signal.SIGTERM)
        result = child.finish()
        check_stopped_cleanly(result, 143)
        released.update(jobs_in(result.lines, "released"))
        snapshot = Snapshot.read(db)
        assert snapshot.count("running") == 0
        if snapshot.count("done") == total:
            break
        assert rounds < 60, f"{snapshot.count('queued')} job(s) still queued after {rounds} rounds"

    assert f"done {total}, queued 0, running 0" in result.stdout
    assert sorted(snapshot.states) == list(range(1, total + 1))
    assert snapshot.results == Counter(dict.fromkeys(snapshot.states, 1))
    # Every claim ended in "done" or in a release that the log shows: none went missing.
    assert snapshot.attempts == {job: 1 + released[job] for job in snapshot.states}


def test_jobs_cut_off_at_the_drain_deadline_go_back_to_the_queue(
    backend: Backend, tmp_path: Path
) -> None:
    """Jobs still running when the drain time is up are released, none is left running."""
    db = tmp_path / "jobs.sqlite3"
    child = start(db, backend, "--seed", "8", "--work", "20", GRACEFUL_ASYNC_DRAIN="0.2")
    read_until(child, " claimed job ", WORKERS)
    child.send(signal.SIGTERM)
    result = child.finish()
    check_stopped_cleanly(result, 143)
    assert "drain time is up" in result.stdout
    assert len(jobs_in(result.lines, "released")) == WORKERS
    snapshot = Snapshot.read(db)
    assert snapshot.count("queued") == 8
    assert not snapshot.results
    assert sorted(snapshot.attempts.values()) == [0] * 4 + [1] * WORKERS


def test_a_second_signal_still_releases_the_jobs_in_hand(backend: Backend, tmp_path: Path) -> None:
    """A second SIGTERM cuts the drain phase short, yet every job in hand goes back to the queue."""
    db = tmp_path / "jobs.sqlite3"
    child = start(db, backend, "--seed", "8", "--work", "20")
    read_until(child, " claimed job ", WORKERS)
    child.send(signal.SIGTERM)
    child.wait_for("SIGTERM received", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    check_stopped_cleanly(result, 143, summary=False)
    assert "second signal" in result.stdout
    assert len(jobs_in(result.lines, "released")) == WORKERS
    snapshot = Snapshot.read(db)
    assert snapshot.count("running") == 0
    assert snapshot.count("queued") == 8


def test_jobs_of_a_killed_process_are_requeued_and_done_once(
    backend: Backend, tmp_path: Path
) -> None:
    """SIGKILL leaves jobs running; the next start re-queues them, and each is done once."""
    db = tmp_path / "jobs.sqlite3"
    child = start(db, backend, "--seed", "20", "--work", "20")
    read_until(child, " claimed job ", WORKERS)
    child.send(signal.SIGKILL)
    assert child.finish().returncode == -signal.SIGKILL
    killed = {job for job, state in Snapshot.read(db).states.items() if state == "running"}
    assert len(killed) == WORKERS

    child = start(db, backend, "--work", "0.02")
    assert any(f"re-queued {WORKERS} job(s) left running" in line for line in child.lines)
    read_until(child, EMPTY, 1)
    child.send(signal.SIGTERM)
    result = child.finish()
    check_stopped_cleanly(result, 143)
    assert "done 20, queued 0, running 0" in result.stdout
    snapshot = Snapshot.read(db)
    assert snapshot.results == Counter(dict.fromkeys(range(1, 21), 1))
    assert snapshot.attempts == {job: 2 if job in killed else 1 for job in range(1, 21)}


def test_ctrl_c_finishes_the_jobs_in_hand(backend: Backend, tmp_path: Path) -> None:
    """Ctrl+C, as in `make demo`, finishes each job in hand and dies by SIGINT."""
    db = tmp_path / "jobs.sqlite3"
    child = start(db, backend, "--seed", "40", "--work", "0.3")
    read_until(child, " done job ", 2)
    child.send(signal.SIGINT)
    result = child.finish()
    check_stopped_cleanly(result, SIGINT_DEATH)
    assert not jobs_in(result.lines, "released")
    assert sum(line.endswith("takes no more jobs") for line in result.lines) == WORKERS


def test_one_process_per_database(tmp_path: Path) -> None:
    """A second process on the same database refuses to start, as re-queueing needs."""
    db = tmp_path / "jobs.sqlite3"
    backend = Backend("asyncio")
    first = start(db, backend, "--seed", "4", "--work", "20")
    second = Child([sys.executable, str(SQLITE_JOBS), "--db", str(db)], backend.env())
    refused = second.finish()
    first.send(signal.SIGTERM)
    first.finish()
    assert refused.returncode == 1
    assert refused.stderr == f"another process is working {db}; only one may at a time\n"


def load_example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example as a module, for its blocking SQL calls; its __main__ part does not run."""
    spec = importlib.util.spec_from_file_location("sqlite_jobs", SQLITE_JOBS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("returning", [True, False], ids=["RETURNING", "SELECT+UPDATE"])
def test_claims_are_atomic_and_fenced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    """Both ways to claim (SQLite before 3.35 and after) agree; a stale claim changes nothing."""
    example = load_example(monkeypatch)
    monkeypatch.setattr(example, "HAS_RETURNING", returning)
    store = example.Store(str(tmp_path / "jobs.sqlite3"))
    try:
        assert store.seed(2) == 2
        assert store.seed(2) == 0
        first, second = store.claim("a"), store.claim("b")
        assert (first.id, first.attempt, second.id, second.attempt) == (1, 1, 2, 1)
        assert store.claim("c") is None
        assert store.release(first)
        again = store.claim("c")
        assert (again.id, again.attempt) == (1, 2)
        # The first claim is stale now: it can neither release nor finish the job.
        assert not store.release(first)
        with pytest.raises(example.LostClaimError):
            store.finish(first, "a", "1")
        store.finish(again, "c", "1")
        assert store.counts() == {"queued": 0, "running": 1, "done": 1}
    finally:
        store.close()
    snapshot = Snapshot.read(tmp_path / "jobs.sqlite3")
    assert snapshot.results == Counter({1: 1})
    assert snapshot.attempts == {1: 2, 2: 1}

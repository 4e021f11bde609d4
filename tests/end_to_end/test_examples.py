"""The examples do what their docstrings and the docs say."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

from ..support.helpers import Backend, Child

EXAMPLES = Path(__file__).parents[2] / "examples"
QUEUE_WORKER = EXAMPLES / "queue_worker.py"
THREADS = EXAMPLES / "threads.py"
# examples/sqlite_jobs.py, the README demo, has a file of its own: test_sqlite_jobs.py.


def start_example(example: Path, backend: Backend) -> Child:
    args = ["--backend", backend.name] + (["--uvloop"] if backend.options else [])
    return Child([sys.executable, str(example), *args], backend.env())


def units(lines: list[str], verb: str) -> list[str]:
    """Who did ``verb`` to which unit, from lines ending '<who> <verb> <n>'."""
    found = [re.search(rf"(\S+) {verb} (\d+)$", line) for line in lines]
    return [f"{match[1]} {match[2]}" for match in found if match]


def check_in_hand_finished(lines: list[str], noun: str) -> None:
    """Each unit in hand at the signal finished after it, and every unit started finished."""
    signalled = next(i for i, line in enumerate(lines) if "SIGTERM received" in line)
    before, after = lines[:signalled], lines[signalled:]
    in_hand = set(units(before, f"started {noun}")) - set(units(before, f"finished {noun}"))
    assert in_hand <= set(units(after, f"finished {noun}"))
    assert sorted(units(lines, f"started {noun}")) == sorted(units(lines, f"finished {noun}"))


def test_queue_worker_loses_no_job(backend: Backend) -> None:
    """After SIGTERM the jobs in hand finish, and every queued job is done or still queued."""
    child = start_example(QUEUE_WORKER, backend)
    child.wait_for("started job 3", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 143
    assert result.stderr == ""

    check_in_hand_finished(result.lines, "job")
    # Both loops ended by taking no more jobs, not by being cancelled.
    assert sum(line.endswith("takes no more jobs") for line in result.lines) == 2

    summary = re.search(r"done (\d+), left (\d+) in the queue, of (\d+) queued", result.stdout)
    assert summary is not None, result.stdout
    done, left, queued = map(int, summary.groups())
    assert done == len(units(result.lines, "finished job"))
    assert done + left == queued


def test_threads_stop_cooperatively(backend: Backend) -> None:
    """After SIGTERM each thread finishes its batch in hand, then returns by itself."""
    child = start_example(THREADS, backend)
    child.wait_for("started batch 2", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 143
    assert result.stderr == ""

    check_in_hand_finished(result.lines, "batch")
    stopped = [line for line in result.lines if "stopped after" in line]
    assert len(stopped) == 2
    assert all(line.endswith("batch(es): SIGTERM") for line in stopped)

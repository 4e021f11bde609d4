"""The soak's short form: the SQLite job queue stopped at random moments does each job once.

The full form, 200 rounds, is `make soak` (tests/support/soak.py).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from ..support.helpers import BACKENDS
from ..support.soak import SIGNALS, Snapshot, soak

ROUNDS = 18  # three blocks of six: each backend with each signal, three times


@pytest.mark.timeout(300)
def test_every_job_is_done_once_across_random_stops(tmp_path: Path) -> None:
    """SIGTERM or SIGINT at random moments on every backend, then a restart: each job once."""
    db = tmp_path / "jobs.sqlite3"
    # A new plan on every run; the seed is in the output and in any failure message.
    runner = soak(db, ROUNDS, random.randrange(2**32), span=1.0)
    covered = Counter((r.plan.backend.id, r.plan.signum) for r in runner.rounds)
    assert covered == {(backend.id, signum): 3 for backend in BACKENDS for signum in SIGNALS}
    snapshot = Snapshot.read(db)
    assert snapshot.states
    assert snapshot.results == Counter(dict.fromkeys(snapshot.states, 1))

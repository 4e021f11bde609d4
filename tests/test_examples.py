"""The README's demo does what the README says."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from .helpers import SIGINT_DEATH, Backend, Child

DEMO = Path(__file__).parent.parent / "examples" / "demo.py"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_shuts_down_gracefully(backend: Backend, sig: signal.Signals) -> None:
    """Every worker cleans up, both hooks run, and the status matches the signal."""
    args = ["--backend", backend.name] + (["--uvloop"] if backend.options else [])
    child = Child([sys.executable, str(DEMO), *args], backend.env())
    child.wait_for("finished job 2", partial=True)
    child.send(sig)
    result = child.finish()
    assert result.returncode == (SIGINT_DEATH if sig == signal.SIGINT else 143)
    assert sum("cleaned up after" in line for line in result.lines) == 3
    hooks = [line.split("hook: ")[1] for line in result.lines if "hook: " in line]
    assert hooks == ["metrics flushed", "closing the database (registered first, runs last)"]
    assert f"{sig.name} received, shutting down" in result.stdout
    assert result.stderr == ""

"""import graceful_async stays light: what only run() needs is loaded by run().

benchmarks/startup.py times the import (the goal: under 10 ms on top of import anyio);
these tests pin the modules that made it slow, without timing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .support.helpers import WAIT

# Each costs a few milliseconds to import; the event loop or the feature loads it.
DEFERRED = {
    "asyncio": "the backend, started by run()",
    "ctypes": "start_child(), for the parent-death signal",
    "importlib.util": "run(), to check the backend",
    "logging": "the first log line, from inside the event loop",
    "random": "a worker's restart delay",
    "socket": "run()'s wake-up sockets and the systemd notifier",
    "subprocess": "start_child()",
    "trio": "the backend, started by run()",
    "uvloop": "the backend, started by run()",
}

CHILD = """\
import json, sys
import anyio
before = set(sys.modules)
import graceful_async
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.fixture(scope="module")
def added_to_anyio() -> set[str]:
    """The modules a fresh interpreter loads for import graceful_async after import anyio."""
    # Without coverage's subprocess hook: it would load much of the standard library first.
    env = {name: value for name, value in os.environ.items() if not name.startswith("COVERAGE")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    added = set(json.loads(done.stdout))
    assert "graceful_async._runner" in added, "the child did not import graceful_async"
    return added


def test_import_leaves_run_time_modules_unloaded(added_to_anyio: set[str]) -> None:
    """No module that only run time needs is loaded by the import."""
    loaded = {name: DEFERRED[name] for name in sorted(added_to_anyio & DEFERRED.keys())}
    assert not loaded, f"import each where it is needed instead (module: where): {loaded}"


def test_import_leaves_anyios_core_unloaded(added_to_anyio: set[str]) -> None:
    """No anyio module beyond import anyio's own: anyio loads its core on first use."""
    loaded = sorted(name for name in added_to_anyio if name.split(".")[0] == "anyio")
    assert not loaded, f"import these inside functions, or under TYPE_CHECKING: {loaded}"

"""As PID 1 a default signal action does nothing; every exit path must still end the process."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import WAIT, Backend, write_program


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=WAIT, check=False
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _can_unshare(), reason="needs permission to make a PID namespace"
)

BODY = """
async def main():
    assert os.getpid() == 1
    graceful_async.on_shutdown(print, "hook ran")
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    if sys.argv[2] == "block":
        time.sleep(60)
    await anyio.sleep_forever()

start(main, grace=0.5)
"""


@pytest.mark.parametrize(
    ("sig", "behaviour", "status", "hook_runs"),
    [
        # CPython's death by SIGINT does nothing as PID 1; it then exits with 130 instead.
        ("SIGINT", "cooperate", 128 + signal.SIGINT, True),
        ("SIGTERM", "cooperate", 128 + signal.SIGTERM, True),
        ("SIGTERM", "block", 124, False),
    ],
)
def test_exit_paths_as_pid_1(
    tmp_path: Path, backend: Backend, sig: str, behaviour: str, status: int, hook_runs: bool
) -> None:
    """SIGINT, SIGTERM and the forced exit all end PID 1 with the documented status."""
    program = write_program(tmp_path, BODY)
    result = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, str(program), sig, behaviour],
        env=backend.env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == status, result.stderr
    assert ("hook ran" in result.stdout) is hook_runs

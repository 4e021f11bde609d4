"""As PID 1 a default signal action does nothing; every exit path must still end the process."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.helpers import WAIT, Backend, tool_missing, write_program

# A PID namespace needs CAP_SYS_ADMIN. Without root, a user namespace that maps us to
# root grants it inside, where the kernel lets unprivileged users make one.
UNSHARES = (
    ["unshare", "--pid", "--fork"],
    ["unshare", "--user", "--map-root-user", "--pid", "--fork"],
)


def _makes_a_pid_namespace(unshare: list[str]) -> bool:
    if shutil.which(unshare[0]) is None:
        return False
    probe = subprocess.run([*unshare, "true"], capture_output=True, timeout=WAIT, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def unshare() -> list[str]:
    """The first unshare command that makes a PID namespace here."""
    works = next((argv for argv in UNSHARES if _makes_a_pid_namespace(argv)), None)
    if works is None:
        tool_missing("needs unshare, and root or unprivileged user namespaces")
    return works


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
    tmp_path: Path,
    backend: Backend,
    unshare: list[str],
    sig: str,
    behaviour: str,
    status: int,
    hook_runs: bool,
) -> None:
    """SIGINT, SIGTERM and the forced exit all end PID 1 with the documented status."""
    program = write_program(tmp_path, BODY)
    result = subprocess.run(
        [*unshare, sys.executable, str(program), sig, behaviour],
        env=backend.env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == status, result.stderr
    assert ("hook ran" in result.stdout) is hook_runs

"""A real Ctrl+C through a pseudo-terminal, and a bash loop that must stop on it."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..support.helpers import WAIT, Backend, tool_missing, write_program

# Make the program a session leader with the pty as its controlling terminal, so the
# terminal's line discipline turns a typed ^C into SIGINT for its foreground group.
LAUNCHER = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)

SERVICE = """
async def main():
    try:
        say("READY")
        await anyio.sleep_forever()
    finally:
        with graceful_async.cleanup_scope(timeout=5):
            await anyio.sleep(0.01)
            say("finally ran")

start(main)
"""


class Terminal:
    """A program running on a pseudo-terminal that the test types into."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        self.output = b""

    def read_until(self, marker: bytes, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            if not self._read(deadline - time.monotonic()):
                raise AssertionError(f"no {marker!r} on the terminal; got {self.output!r}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: every process on the terminal has gone
            return False
        self.output += chunk
        return bool(chunk)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self) -> tuple[int, str]:
        deadline = time.monotonic() + WAIT
        while self._read(deadline - time.monotonic()):
            pass
        try:
            returncode = self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running; terminal shows {self.output!r}") from None
        finally:
            os.close(self.master)
        return returncode, self.output.decode(errors="replace")


def test_ctrl_c_on_a_terminal(tmp_path: Path, backend: Backend) -> None:
    """Typing ^C runs the cleanup, and the process dies by SIGINT without a traceback."""
    program = write_program(tmp_path, SERVICE)
    terminal = Terminal([sys.executable, str(program)], backend.env())
    terminal.read_until(b"READY")
    terminal.type(b"\x03")
    returncode, output = terminal.finish()
    assert returncode == -signal.SIGINT
    assert "finally ran" in output
    assert "Traceback" not in output


def test_ctrl_c_stops_a_bash_loop(tmp_path: Path, backend: Backend) -> None:
    """bash stops `for` on ^C only if the child died by SIGINT: status 130 is not enough."""
    if shutil.which("bash") is None:
        tool_missing("needs bash")
    program = write_program(tmp_path, SERVICE)
    loop = (
        f'for i in 1 2 3; do "{sys.executable}" "{program}"; echo "after run $i"; done; '
        'echo "loop finished"'
    )
    terminal = Terminal(["bash", "-c", loop], backend.env())
    terminal.read_until(b"READY")
    terminal.type(b"\x03")
    returncode, output = terminal.finish()
    assert "finally ran" in output
    assert "after run" not in output
    assert "loop finished" not in output
    assert returncode == -signal.SIGINT  # bash itself gave up by SIGINT, as it should

"""Shared test helpers: the backends, and child programs driven with real signals."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import graceful_async

# Generous: these bound hangs, they never measure.
WAIT = 30.0

# A test run under systemd must not talk to the real service manager.
SYSTEMD_VARIABLES = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})


@dataclass(frozen=True)
class Backend:
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return "asyncio+uvloop" if self.options.get("use_uvloop") else self.name

    def run(self, main: Any, *args: Any, **kwargs: Any) -> Any:
        return graceful_async.run(
            main, *args, backend=self.name, backend_options=self.options, **kwargs
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["GA_BACKEND"] = self.name
        env["GA_UVLOOP"] = "1" if self.options.get("use_uvloop") else ""
        env["GA_HANG_REPORT"] = str(Path(__file__).with_name("hang_report.py"))
        for name in list(env):
            if name.startswith("GRACEFUL_ASYNC_") or name in SYSTEMD_VARIABLES:
                del env[name]
        return env


BACKENDS = [Backend("asyncio"), Backend("asyncio", {"use_uvloop": True}), Backend("trio")]

# Every child program starts with this. `start()` runs main on the backend the test
# chose; `say()` writes a line the test can wait for.
PRELUDE = """\
import atexit, faulthandler, logging, os, signal, sys, threading, time
import anyio
import graceful_async

# A hang shows every thread's stack in the test's failure message, and what the stacks
# alone do not show (tests/hang_report.py).
faulthandler.dump_traceback_later(25)
if os.environ.get("GA_HANG_REPORT"):
    import importlib.util as _util
    _spec = _util.spec_from_file_location("hang_report", os.environ["GA_HANG_REPORT"])
    _hang_report = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_hang_report)
    _hang_report.start(24)

BACKEND = os.environ["GA_BACKEND"]
OPTIONS = {"use_uvloop": True} if os.environ.get("GA_UVLOOP") else {}

def say(line):
    print(line, flush=True)

def start(main, *args, **kwargs):
    return graceful_async.run(main, *args, backend=BACKEND, backend_options=OPTIONS, **kwargs)
"""


def write_program(tmp_path: Path, body: str, name: str = "child.py") -> Path:
    path = tmp_path / name
    path.write_text(PRELUDE + textwrap.dedent(body))
    return path


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    lines: list[str]


class Child:
    """A child Python program whose stdout lines the test can wait for."""

    def __init__(self, argv: list[str], env: dict[str, str], **popen: Any) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []
        self._stderr: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True),
            threading.Thread(
                target=self._collect, args=(self.proc.stderr, self._stderr), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def start(cls, program: Path, backend: Backend, *args: str, **env: str) -> Child:
        return cls([sys.executable, str(program), *args], {**backend.env(), **env})

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @staticmethod
    def _collect(stream: IO[str], into: list[str]) -> None:
        into.append(stream.read())

    def wait_for(self, expected: str, timeout: float = WAIT, *, partial: bool = False) -> None:
        """Read stdout until the line ``expected`` (or one containing it) arrives."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(f"no {expected!r} line within {timeout} s") from None
            if line is None:
                self._lines.put(None)  # finish() reads up to the end marker too
                result = self.finish()
                raise AssertionError(f"child ended before {expected!r}: {result}")
            self.lines.append(line)
            if line == expected or (partial and expected in line):
                return

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:
            reader.join(WAIT)  # they end at EOF, now that the child is gone
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def finish(self, timeout: float = WAIT) -> Result:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            stderr = "".join(self._stderr)
            raise AssertionError(
                f"child still running after {timeout} s; stderr:\n{stderr}"
            ) from None
        for reader in self._readers:
            reader.join(WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        while True:
            line = self._lines.get()
            if line is None:
                break
            self.lines.append(line)
        return Result(
            self.proc.returncode, "\n".join(self.lines), "".join(self._stderr), self.lines
        )


def run_program(
    tmp_path: Path, body: str, backend: Backend, *, send: tuple[int, ...] = (), **env: str
) -> Result:
    """Start a program, wait for READY, send each signal in turn, and collect the result."""
    child = Child.start(write_program(tmp_path, body), backend, **env)
    if send:
        child.wait_for("READY")
        for sig in send:
            child.send(sig)
    return child.finish()


SIGINT_DEATH = -signal.SIGINT

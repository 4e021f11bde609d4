"""Shared test helpers: the backends, and child programs driven with real signals."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

import graceful_async

# Generous: these bound hangs, they never measure.
WAIT = 30.0

# These two do measure. Each is wide enough for a busy machine under coverage, and narrow
# enough that a watchdog 1.5 s late fails.
#
# How late the watchdog may fire after its deadline, by its own clock: the stuck report's
# "time since shutdown began". Measured on two busy cores: 30 ms at most, also under
# coverage.
FIRE_LATENESS = 0.3
# How long a forced process may take to end after its deadline, by the test's clock from
# the first signal: the handler, the watchdog's wake-up, the report, the flush and
# os._exit(). Measured on two busy cores: 0.12 s at most, 0.31 s under coverage.
EXIT_LATENESS = 1.0

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
# alone do not show (tests/support/hang_report.py).
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


def tool_missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``, what it needs and cannot have here.

    On CI (``CI`` set) fail it instead: a skip there goes unseen, and the test with it.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; on CI (CI is set) that fails the test", pytrace=False)
    pytest.skip(reason)


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
    #: Seconds from the first signal the test sent until the child ended (None: no signal).
    took: float | None = None


def fired_after(report: str) -> float:
    """The seconds from the trigger to the forced exit, as the stuck report gives them."""
    forced = report.partition("forcing exit with status")[2]
    found = re.search(r"time since shutdown began: ([\d.]+) s", forced)
    assert found is not None, report
    return float(found[1])


def assert_fired_on_time(report: str, grace: float) -> None:
    """Assert that the stuck report puts the forced exit ``grace`` seconds after the trigger.

    Give or take FIRE_LATENESS: the report counts from the trigger, which the signal
    handler makes, and the watchdog may have seen the signal, and begun its own count, a
    little before the handler ran. That the exit came no earlier than the deadline is
    for the test's clock to say, from the moment it sent the signal.
    """
    assert grace - FIRE_LATENESS <= fired_after(report) <= grace + FIRE_LATENESS, report


def assert_forced_on_time(
    result: Result,
    grace: float,
    *,
    reported: bool = True,
    status: int = graceful_async.FORCED_EXIT_STATUS,
) -> None:
    """Assert a forced exit (124) that came ``grace`` seconds after the first signal.

    By the test's clock the process ended within EXIT_LATENESS of that; with ``reported``
    (the deadline ran from the trigger, which the report times) the watchdog also says
    it fired within FIRE_LATENESS of its deadline. ``status`` is the returncode: a forced
    end of the interpreter's exit keeps the status run() decided.
    """
    assert result.returncode == status, result.stderr
    if reported:
        assert_fired_on_time(result.stderr, grace)
    assert result.took is not None, "no signal was sent"
    assert grace <= result.took <= grace + EXIT_LATENESS, (
        f"forced {result.took:.2f} s after the signal\n{result.stderr}"
    )


class Child:
    """A child Python program whose stdout and stderr lines the test can wait for."""

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
        # Every stderr line as it comes (the reader appends, wait_for_stderr() reads).
        self._stderr: list[str] = []
        self._stderr_changed = threading.Condition()
        self._stderr_ended = False
        self._stderr_seen = 0  # how many lines wait_for_stderr() has looked at
        self.signalled_at: float | None = None
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr,), daemon=True),
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

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            with self._stderr_changed:
                self._stderr.append(line)
                self._stderr_changed.notify_all()
        with self._stderr_changed:
            self._stderr_ended = True
            self._stderr_changed.notify_all()

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

    def wait_for_stderr(self, expected: str, timeout: float = WAIT) -> str:
        """Read stderr until a line containing ``expected`` arrives; return that line.

        The lines stay in the result's ``stderr``; a later call looks only at later lines.
        """
        deadline = time.monotonic() + timeout
        with self._stderr_changed:
            while True:
                while self._stderr_seen < len(self._stderr):
                    line = self._stderr[self._stderr_seen]
                    self._stderr_seen += 1
                    if expected in line:
                        return line
                left = deadline - time.monotonic()
                if self._stderr_ended or left <= 0:
                    break
                self._stderr_changed.wait(left)
        if self._stderr_ended:
            result = self.finish()
            raise AssertionError(f"child ended before {expected!r} on stderr: {result}")
        self.kill()
        raise AssertionError(f"no {expected!r} on stderr within {timeout} s")

    def send(self, sig: int) -> None:
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
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
            ended_at = time.monotonic()
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
        took = None if self.signalled_at is None else ended_at - self.signalled_at
        return Result(
            self.proc.returncode,
            "\n".join(self.lines),
            "".join(self._stderr),
            self.lines,
            took,
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


# The statuses tests look for: a child's death by SIGINT, and the watchdog's forced exit.
SIGINT_DEATH = -signal.SIGINT
FORCED = graceful_async.FORCED_EXIT_STATUS

"""Running the benchmark's children and timing them, one sample at a time."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
EXPECTED_STATUS = 128 + signal.SIGTERM

#: Benchmark label -> (anyio backend, use uvloop).
BACKENDS: dict[str, tuple[str, bool]] = {
    "asyncio": ("asyncio", False),
    "asyncio+uvloop": ("asyncio", True),
    "trio": ("trio", False),
}
GRACEFUL = "graceful_async"
FLOOR = "anyio (bare)"
CHILDREN = {GRACEFUL: HERE / "_child_graceful.py", FLOOR: HERE / "_child_floor.py"}

READY_TIMEOUT = 180.0  # starting 100,000 tasks takes seconds; a busy machine, many more
EXIT_TIMEOUT = 60.0
STARTUP_TIMEOUT = 60.0
#: Pause between READY and the signal, so that the child is parked in its event loop.
SETTLE = 0.1
#: The children stamp their own perf_counter(); comparable with ours only on a shared clock.
SHARED_CLOCK = time.get_clock_info("perf_counter").implementation == (
    "clock_gettime(CLOCK_MONOTONIC)"
)

STARTUP_CODE = {
    GRACEFUL: (
        "import graceful_async\n"
        "async def main(): pass\n"
        "graceful_async.run(main, backend={backend!r}, backend_options={options!r})\n"
    ),
    FLOOR: (
        "import anyio\n"
        "async def main(): pass\n"
        "anyio.run(main, backend={backend!r}, backend_options={options!r})\n"
    ),
}


class BenchError(Exception):
    """Raised when a child misbehaves: no READY, a hang, or the wrong exit status."""


def _stderr_tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    text = stderr.read().decode("utf-8", "replace").strip()
    return text[-1500:] or "(no stderr)"


def _read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"no {marker!r} line within {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BenchError(f"the child closed stdout before printing {marker!r}")
            data += chunk
    return data


def _read_rest(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_exactly(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Reap ``proc`` and return its status and the perf_counter() right after reaping.

    Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which would quantize the
    measurement. A blocking waitpid() returns as soon as the child is gone; a timer
    thread kills the child if it is not gone in time, so nothing hangs.
    """
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        status = proc.wait()
        reaped = time.perf_counter()
    finally:
        timer.cancel()
    if expired.is_set():
        raise BenchError(f"the child did not exit within {timeout:g} s and was killed")
    return status, reaped


def exit_latency(
    contender: str, backend: str, n_tasks: int, env: dict[str, str], *, collect: bool = False
) -> dict[str, float]:
    """Spawn one child, signal it once it is READY, and time it until it is reaped.

    Returns the seconds from the signal until the child was reaped (``total``) and until
    its run() or anyio.run() had returned (``in_run``, from the child's own clock). With
    ``collect``, also the seconds the child's gc.collect() took after that (``collect``)
    and how many objects it found (``garbage``).
    """
    anyio_backend, use_uvloop = BACKENDS[backend]
    argv = [PYTHON, str(CHILDREN[contender]), anyio_backend, str(int(use_uvloop)), str(n_tasks)]
    if collect:
        argv.append("collect")
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, bufsize=0, env=env)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            try:
                _read_until(fd, b"READY\n", READY_TIMEOUT)
            except BenchError as exc:
                proc.kill()
                proc.wait()
                raise BenchError(f"{exc}; stderr: {_stderr_tail(stderr)}") from None
            time.sleep(SETTLE)
            sent = time.perf_counter()
            os.kill(proc.pid, signal.SIGTERM)
            status, reaped = _wait_exactly(proc, EXIT_TIMEOUT)
            output = _read_rest(fd).decode()
        finally:
            proc.stdout.close()
            if proc.poll() is None:  # interrupted: leave no child behind
                proc.kill()
                proc.wait()
        if status != EXPECTED_STATUS:
            raise BenchError(
                f"exit status {status}, expected {EXPECTED_STATUS}; stderr: {_stderr_tail(stderr)}"
            )
    stamps = {line.split()[0]: line.split()[1:] for line in output.splitlines() if line}
    if not SHARED_CLOCK or "RETURNED" not in stamps:
        return {"total": reaped - sent, "in_run": math.nan}
    times = {"total": reaped - sent, "in_run": float(stamps["RETURNED"][0]) - sent}
    if collect:
        if "COLLECTED" not in stamps:
            raise BenchError(f"no COLLECTED line in the child's output: {output!r}")
        collected, found = stamps["COLLECTED"]
        times["collect"] = float(collected) - float(stamps["RETURNED"][0])
        times["garbage"] = int(found)
    return times


def startup_time(contender: str, backend: str, env: dict[str, str]) -> float:
    """Wall time of a whole ``python -c`` process that runs a trivial main."""
    anyio_backend, use_uvloop = BACKENDS[backend]
    options = {"use_uvloop": True} if use_uvloop else None
    code = STARTUP_CODE[contender].format(backend=anyio_backend, options=options)
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [PYTHON, "-c", code], stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
        status, reaped = _wait_exactly(proc, STARTUP_TIMEOUT)
        if status != 0:
            raise BenchError(f"exit status {status}, expected 0; stderr: {_stderr_tail(stderr)}")
    return reaped - start


def inprocess_times(
    backend: str, calls: int, block: int, env: dict[str, str]
) -> dict[str, list[float]]:
    """Per-call times of run() and anyio.run() of a trivial main, from one child."""
    anyio_backend, use_uvloop = BACKENDS[backend]
    argv = [
        PYTHON,
        str(HERE / "_child_inprocess.py"),
        anyio_backend,
        str(int(use_uvloop)),
        str(calls),
        str(block),
    ]
    done = subprocess.run(
        argv, capture_output=True, timeout=STARTUP_TIMEOUT * 5, check=False, env=env
    )
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")[-1500:]
        raise BenchError(f"exit status {done.returncode}; stderr: {stderr}")
    times: dict[str, list[float]] = json.loads(done.stdout)
    return times

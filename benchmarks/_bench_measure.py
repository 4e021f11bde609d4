"""Running the benchmark's children and measuring them, one sample at a time."""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ._bench_contenders import BACKENDS, FLOOR, GRACEFUL, PYTHON, Contender, child_command

#: The module of the child that times run() calls inside one process.
INPROCESS_CHILD = "_child_inprocess"
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
#: Times one import in a fresh interpreter; the empty module name times nothing.
IMPORT_CODE = (
    "import time\nstart = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)\n"
)


class BenchError(Exception):
    """Raised when a child misbehaves: no READY, a hang, or the wrong exit status."""


@dataclass(frozen=True)
class Reaped:
    status: int  # as Popen.returncode: the exit status, or -N for death by signal N
    at: float  # perf_counter() right after the child was reaped
    usage: resource.struct_rusage  # the child's, from wait4()

    @property
    def cpu(self) -> float:
        return self.usage.ru_utime + self.usage.ru_stime


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


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> Reaped:
    """Reap ``proc`` with a blocking wait4(): its status, the time, and its resource usage.

    Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which would quantize the
    measurement. A blocking wait4() returns as soon as the child is gone, and also gives
    the child's CPU time and peak RSS. A timer thread kills the child if it is not gone
    in time, so nothing hangs.
    """
    expired = threading.Event()
    reaped = threading.Event()

    def expire() -> None:
        # The pid cannot have been reused before wait4() returned, and is not killed after.
        if not reaped.is_set():
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        _, wait_status, usage = os.wait4(proc.pid, 0)
        at = time.perf_counter()
        reaped.set()
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    if expired.is_set():
        raise BenchError(f"the child did not exit within {timeout:g} s and was killed")
    return Reaped(proc.returncode, at, usage)


@contextlib.contextmanager
def _ready_child(
    argv: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], int, IO[bytes]]]:
    """Start a child and yield (it, its stdout fd, its stderr file) once it printed READY."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, bufsize=0, env=env)
        assert proc.stdout is not None
        try:
            try:
                _read_until(proc.stdout.fileno(), b"READY\n", READY_TIMEOUT)
            except BenchError as exc:
                raise BenchError(f"{exc}; stderr: {_stderr_tail(stderr)}") from None
            yield proc, proc.stdout.fileno(), stderr
        finally:
            proc.stdout.close()
            if proc.returncode is None and proc.poll() is None:  # leave no child behind
                proc.kill()
                proc.wait()


def child_argv(contender: Contender, backend: str, workload: str, n_tasks: int) -> list[str]:
    anyio_backend, use_uvloop = BACKENDS[backend]
    return [
        *contender.command,
        anyio_backend,
        str(int(use_uvloop)),
        workload,
        str(n_tasks),
        *contender.flags,
    ]


def _check_status(contender: Contender, reaped: Reaped, stderr: IO[bytes]) -> None:
    if contender.status is not None and reaped.status != contender.status:
        raise BenchError(
            f"exit status {reaped.status}, expected {contender.status}; "
            f"stderr: {_stderr_tail(stderr)}"
        )


def exit_latency(
    contender: Contender,
    backend: str,
    workload: str,
    n_tasks: int,
    env: dict[str, str],
    *,
    collect: bool = False,
) -> dict[str, Any]:
    """Spawn one child, signal it once it is READY, and time it until it is reaped.

    Returns the seconds from the signal until the child was reaped (``total``) and until
    its runner had returned (``in_run``, from the child's own clock), its exit status, its
    peak RSS in KiB (``maxrss_kib``) and its CPU seconds (``cpu``). With ``collect``, also
    the seconds the child's gc.collect() took after its runner returned (``collect``) and
    how many objects it found (``garbage``).
    """
    argv = child_argv(contender, backend, workload, n_tasks) + (["collect"] if collect else [])
    with _ready_child(argv, env) as (proc, fd, stderr):
        time.sleep(SETTLE)
        sent = time.perf_counter()
        os.kill(proc.pid, signal.SIGTERM)
        reaped = _reap(proc, EXIT_TIMEOUT)
        output = _read_rest(fd).decode()
        _check_status(contender, reaped, stderr)
    sample: dict[str, Any] = {
        "total": reaped.at - sent,
        "in_run": math.nan,
        "status": reaped.status,
        # ru_maxrss is in KiB on Linux (bytes on macOS).
        "maxrss_kib": reaped.usage.ru_maxrss,
        "cpu": reaped.cpu,
    }
    stamps = {line.split()[0]: line.split()[1:] for line in output.splitlines() if line}
    if not SHARED_CLOCK or "RETURNED" not in stamps:
        return sample
    sample["in_run"] = float(stamps["RETURNED"][0]) - sent
    if collect:
        if "COLLECTED" not in stamps:
            raise BenchError(f"no COLLECTED line in the child's output: {output!r}")
        collected, found = stamps["COLLECTED"]
        sample["collect"] = float(collected) - float(stamps["RETURNED"][0])
        sample["garbage"] = int(found)
    return sample


def exit_status(
    contender: Contender, backend: str, workload: str, env: dict[str, str]
) -> dict[str, Any]:
    """The exit status of one idle child on SIGTERM, and the last lines of its stderr."""
    with _ready_child(child_argv(contender, backend, workload, 1), env) as (proc, _, stderr):
        time.sleep(SETTLE)
        os.kill(proc.pid, signal.SIGTERM)
        reaped = _reap(proc, EXIT_TIMEOUT)
        stderr.seek(0)
        lines = stderr.read().decode("utf-8", "replace").strip().splitlines()
    return {"status": reaped.status, "stderr_tail": lines[-3:]}


def _threads_snapshot(pid: int) -> dict[str, int]:
    """CPU nanoseconds and context switches of all of a process's threads, from /proc."""
    totals = {"cpu_ns": 0, "voluntary": 0, "involuntary": 0, "threads": 0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise BenchError("the child ended during its idle window") from None
    for tid in tids:
        task = Path(f"/proc/{pid}/task/{tid}")
        try:
            # The first field of schedstat: nanoseconds spent on a CPU, to the nanosecond.
            cpu_ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        switches = dict(line.split(":\t") for line in status if "ctxt_switches" in line)
        totals["cpu_ns"] += cpu_ns
        totals["voluntary"] += int(switches["voluntary_ctxt_switches"])
        totals["involuntary"] += int(switches["nonvoluntary_ctxt_switches"])
        totals["threads"] += 1
    return totals


IDLE_SUPPORTED = Path("/proc/self/task").is_dir() and Path("/proc/self/schedstat").is_file()


def idle_cpu(
    contender: Contender,
    backend: str,
    workload: str,
    n_tasks: int,
    env: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    """What an idle child costs over ``seconds``: CPU time and wake-ups, from /proc.

    The child is left alone between two snapshots of its threads, taken from outside, so
    that measuring it does not wake it. Wake-ups are the voluntary context switches: each
    is a thread going to sleep after something woke it.
    """
    with _ready_child(child_argv(contender, backend, workload, n_tasks), env) as (proc, _, stderr):
        time.sleep(SETTLE)
        start, before = time.perf_counter(), _threads_snapshot(proc.pid)
        time.sleep(seconds)
        end, after = time.perf_counter(), _threads_snapshot(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        reaped = _reap(proc, EXIT_TIMEOUT)
        _check_status(contender, reaped, stderr)
    return {
        "window": end - start,
        "cpu": (after["cpu_ns"] - before["cpu_ns"]) / 1e9,
        "wakeups": after["voluntary"] - before["voluntary"],
        "preempted": after["involuntary"] - before["involuntary"],
        "threads": after["threads"],
        "process_cpu": reaped.cpu,
        "status": reaped.status,
    }


def startup_time(contender: str, backend: str, env: dict[str, str]) -> float:
    """Wall time of a whole ``python -c`` process that runs a trivial main."""
    anyio_backend, use_uvloop = BACKENDS[backend]
    options = {"use_uvloop": True} if use_uvloop else None
    code = STARTUP_CODE[contender].format(backend=anyio_backend, options=options)
    return _timed_process([PYTHON, "-c", code], env)[0]


def _timed_process(argv: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    with tempfile.TemporaryFile() as stderr, tempfile.TemporaryFile() as stdout:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env)
        reaped = _reap(proc, STARTUP_TIMEOUT)
        if reaped.status != 0:
            raise BenchError(
                f"exit status {reaped.status}, expected 0; stderr: {_stderr_tail(stderr)}"
            )
        stdout.seek(0)
        return reaped.at - start, stdout.read()


def import_time(module: str, env: dict[str, str]) -> dict[str, float]:
    """One fresh interpreter importing ``module`` ("" for none): import and process time."""
    statement = f"import {module}" if module else "pass"
    total, output = _timed_process([PYTHON, "-c", IMPORT_CODE.format(statement=statement)], env)
    return {"import": float(output), "process": total}


def import_profile(module: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """``python -X importtime -c "import module"``: every module, in microseconds."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"exit status {done.returncode}; stderr: {done.stderr[-1500:]!r}")
    rows = []
    for line in done.stderr.decode().splitlines():
        # "import time:       123 |        456 |   package.module" (the header says "self")
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append(
            {
                "module": name.strip(),
                "depth": (len(name) - len(name.lstrip()) - 1) // 2,
                "self_us": int(self_us),
                "cumulative_us": int(cumulative_us),
            }
        )
    return rows


def inprocess_times(
    backend: str, calls: int, block: int, env: dict[str, str]
) -> dict[str, list[float]]:
    """Per-call times of run() and anyio.run() of a trivial main, from one child."""
    anyio_backend, use_uvloop = BACKENDS[backend]
    argv = [
        *child_command(INPROCESS_CHILD),
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

"""How each runner behaves when a service is stopped: the comparison's table of facts.

Usage: ``python -m benchmarks behaviour [--json PATH] [--markdown PATH] [--limit S]``

Not a timing benchmark: for each runner (graceful_async, ``asyncio.run``, ``trio.run``,
aiorun, aiomisc's entrypoint) it runs the same small service in a child process and
records what a supervisor would see in six situations:

- ``SIGTERM``: the signal ``docker stop``, Kubernetes and systemd send;
- ``SIGINT``: Ctrl+C;
- ``second SIGINT``: Ctrl+C again while a slow cleanup runs;
- ``swallowing task``: SIGTERM while a task catches every cancellation;
- ``stuck executor job``: SIGTERM while a job blocks in the default thread pool;
- ``SIGINT ignored``: SIGINT sent to a service that its parent started with SIGINT
  ignored, as a shell does for a background job, which must keep running.

For each it records the exit status as a shell shows it (``143``, ``killed by SIGINT``),
whether the worker's ``finally`` block ran, and the seconds from the signal until the
child was reaped. A child still running after ``--limit`` seconds (default 12) is killed
and recorded as such. The services are written in each runner's own idiom: the
runner-specific parts are the ``PROGRAMS`` below.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SCENARIOS = (
    "SIGTERM",
    "SIGINT",
    "second SIGINT",
    "swallowing task",
    "stuck executor job",
    "SIGINT ignored",
)

# Each program reads the scenario from argv[1]. Its worker prints "READY" once running,
# "CLEANUP STARTED" when its finally begins and "finally ran" when the finally ends.
_ASYNCIO_WORKER = """
import asyncio, sys, time
SCENARIO = sys.argv[1]

def say(line):
    print(line, flush=True)

async def worker():
    try:
        await asyncio.sleep(3600)
    finally:
        say("CLEANUP STARTED")
        if SCENARIO == "second SIGINT":
            await asyncio.sleep(30)  # a slow cleanup
        say("finally ran")

async def swallow():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass

async def main():
    tasks = [asyncio.ensure_future(worker())]
    if SCENARIO == "swallowing task":
        tasks.append(asyncio.ensure_future(swallow()))
    if SCENARIO == "stuck executor job":
        asyncio.get_running_loop().run_in_executor(None, time.sleep, 3600)
    await asyncio.sleep(0.05)
    say("READY")
    await asyncio.gather(*tasks)
"""

PROGRAMS: dict[str, str] = {
    "graceful_async": """
import sys, time
import anyio
import graceful_async
SCENARIO = sys.argv[1]

def say(line):
    print(line, flush=True)

async def worker():
    try:
        await anyio.sleep_forever()
    finally:
        say("CLEANUP STARTED")
        if SCENARIO == "second SIGINT":
            with graceful_async.cleanup_scope():  # a slow cleanup
                await anyio.sleep(30)
        say("finally ran")

async def swallow():
    while True:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            pass

async def main():
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        if SCENARIO == "swallowing task":
            tg.start_soon(swallow)
        if SCENARIO == "stuck executor job":
            tg.start_soon(anyio.to_thread.run_sync, time.sleep, 3600)
        await anyio.sleep(0.05)
        say("READY")

graceful_async.run(main)
""",
    "asyncio.run": _ASYNCIO_WORKER + "\nasyncio.run(main())\n",
    "trio.run": """
import sys, time
import trio
SCENARIO = sys.argv[1]

def say(line):
    print(line, flush=True)

async def worker():
    try:
        await trio.sleep_forever()
    finally:
        say("CLEANUP STARTED")
        if SCENARIO == "second SIGINT":
            with trio.CancelScope(shield=True):  # a slow cleanup
                await trio.sleep(30)
        say("finally ran")

async def swallow():
    while True:
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            pass

async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        if SCENARIO == "swallowing task":
            nursery.start_soon(swallow)
        if SCENARIO == "stuck executor job":
            nursery.start_soon(trio.to_thread.run_sync, time.sleep, 3600)
        await trio.sleep(0.05)
        say("READY")

trio.run(main)
""",
    "aiorun": _ASYNCIO_WORKER
    + "\nimport aiorun\naiorun.run(main(), stop_on_unhandled_errors=True, use_uvloop=False)\n",
    "aiomisc": _ASYNCIO_WORKER
    + """
import aiomisc
with aiomisc.entrypoint(loop_factory=asyncio.new_event_loop) as loop:
    loop.create_task(main())
    loop.run_forever()
""",
}


@dataclass
class Outcome:
    status: str
    finally_ran: bool
    seconds: float | None
    note: str = ""


def shell_status(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return str(returncode)


def run_case(program: Path, scenario: str, limit: float) -> Outcome:
    argv = [sys.executable, str(program), scenario]
    if scenario == "SIGINT ignored":
        # What a shell does for a background job: SIGINT ignored, then exec.
        argv = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    seen = {line: threading.Event() for line in ("READY", "CLEANUP STARTED")}

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            if line in seen:
                seen[line].set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if not seen["READY"].wait(30):
        proc.kill()
        proc.wait()
        return Outcome("did not start", False, None)
    first = signal.SIGTERM if scenario in ("SIGTERM", "swallowing task") else signal.SIGINT
    if scenario == "stuck executor job":
        first = signal.SIGTERM
    sent_at = time.monotonic()
    proc.send_signal(first)
    note = ""
    if scenario == "second SIGINT":
        if seen["CLEANUP STARTED"].wait(limit):
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGINT)
        else:
            note = "the first SIGINT started no cleanup"
    if scenario == "SIGINT ignored":
        try:
            proc.wait(2.0)
            note = "stopped by the SIGINT it should ignore"
        except subprocess.TimeoutExpired:
            note = "kept running, as it should; stopped with SIGTERM"
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(limit)
        seconds: float | None = time.monotonic() - sent_at
        status = shell_status(proc.returncode)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        seconds = None
        status = f"still running after {limit:g} s (killed)"
    reader.join(5)
    return Outcome(status, "finally ran" in lines, seconds, note)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": sys.version.split()[0]}
    for name in ("graceful-async", "anyio", "trio", "aiorun", "aiomisc"):
        found[name] = version(name)
    return found


def markdown(results: dict[str, dict[str, Outcome]]) -> str:
    runners = list(results)
    out = ["| situation | " + " | ".join(runners) + " |", "|---" * (len(runners) + 1) + "|"]
    for scenario in SCENARIOS:
        cells = []
        for runner in runners:
            o = results[runner][scenario]
            cell = o.status
            cell += ", finally ran" if o.finally_ran else ", finally lost"
            if o.seconds is not None:
                cell += f", {o.seconds:.2f} s"
            if o.note:
                cell += f" ({o.note})"
            cells.append(cell)
        out.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks behaviour``."""
    parser.add_argument(
        "--json",
        type=Path,
        default=HERE / "results" / "behaviour.json",
        metavar="PATH",
        help="where to write the outcomes (default benchmarks/results/behaviour.json)",
    )
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table here")
    parser.add_argument(
        "--limit",
        type=float,
        default=12.0,
        metavar="S",
        help="kill a child still running this many seconds after the signal (default 12)",
    )


def main(args: argparse.Namespace) -> None:
    """Run every runner through every situation; the table goes to stdout."""
    # The services must start as from a terminal, with SIGINT's default action: a parent
    # run as a background job (SIGINT ignored) would pass the ignoring on to every one.
    # A Python-level handler is reset to the default at exec, SIG_IGN is not.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    results: dict[str, dict[str, Outcome]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for runner, source in PROGRAMS.items():
            # Not named after the runner: the script's own name would shadow its import.
            program = Path(tmp) / f"service_{runner.replace('.', '_')}.py"
            program.write_text(textwrap.dedent(source))
            results[runner] = {}
            for scenario in SCENARIOS:
                print(f"{runner}: {scenario}", file=sys.stderr, flush=True)
                results[runner][scenario] = run_case(program, scenario, args.limit)
    table = markdown(results)
    print(table)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "limit_s": args.limit,
        "took_s": round(time.monotonic() - started, 1),
        "results": {r: {s: asdict(o) for s, o in cases.items()} for r, cases in results.items()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)

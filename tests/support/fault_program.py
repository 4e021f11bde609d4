"""One cell of the fault-injection matrix: a child process of tests/end_to_end/test_faults.py.

Usage: ``python fault_program.py TRIGGER MOMENT FAULT``, with the backend in ``GA_BACKEND``
and ``GA_UVLOOP`` as for the other child programs.

The program prints a line for everything the test checks: ``STARTING``, ``READY``, ``JOB
STARTED`` or ``HOOK RUNNING`` marks the moment at which the trigger comes (the test sends a
signal then; the program triggers itself right after printing ``TRIGGER <time>``), and
``finally ...``, ``hook ok ran``, ``job done`` and ``atexit ran`` say what ran; the
library's log lines come on stdout too, after ``LOG``. The last
hook to run waits (up to 1.5 s) for SIGUSR2, which the test sends once it has sent every
signal of the case: so each signal lands while run() is active, never after it has put
the default actions back.
"""

from __future__ import annotations

import atexit
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import anyio

import graceful_async

GRACE = 2.5
DRAIN = 1.5
JOB_SECONDS = 1.0

TRIGGERS = ("SIGINT", "SIGTERM", "request", "sys.exit", "exception")
MOMENTS = ("startup", "steady", "drain", "hooks")
FAULTS = (
    "none",
    "swallows-cancellation",
    "blocking-call",
    "hung-thread",
    "hook-raises",
    "hook-hangs",
    "second-signal",
    "signal-storm",
)


def say(line: str) -> None:
    print(line, flush=True)


class Program:
    def __init__(self, trigger: str, moment: str, fault: str) -> None:
        self.trigger = trigger
        self.moment = moment
        self.fault = fault
        self.storm_seen = 0
        self.test_done = threading.Event()

    # --- the faults

    async def swallow_cancellation(self) -> None:
        while True:
            try:
                await anyio.sleep(60)
            except anyio.get_cancelled_exc_class():
                pass

    def block(self) -> None:
        time.sleep(60)

    def hang_thread(self) -> None:
        # Non-daemon: the interpreter joins it on the way out, for ever.
        threading.Thread(target=threading.Event().wait, name="hung").start()

    def raise_in_hook(self) -> None:
        raise RuntimeError("hook failed")

    async def hang_in_hook(self) -> None:
        await anyio.sleep_forever()

    # --- the trigger, when the program fires it itself

    def fire(self) -> None:
        # The test sends its signals when it reads TRIGGER: a request must have been
        # made by then, or one of them could come first and be the trigger.
        now = time.monotonic()
        if self.trigger == "request":
            graceful_async.request_shutdown("fault matrix", exit_code=7)
        say(f"TRIGGER {now}")
        if self.trigger == "sys.exit":
            sys.exit(3)
        elif self.trigger == "exception":
            raise ValueError("task failed")

    async def fire_in_task(self) -> None:
        # sys.exit and the exception come from a task in main's tree, not main itself.
        async with anyio.create_task_group() as tg:

            async def task() -> None:
                self.fire()

            tg.start_soon(task)

    async def at_moment(self, line: str) -> None:
        say(line)
        if self.trigger not in ("SIGINT", "SIGTERM"):
            await self.fire_in_task()

    # --- the program

    async def idle_worker(self) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            say("finally worker")

    async def job(self) -> None:
        try:
            async with graceful_async.in_flight():
                await self.at_moment("JOB STARTED")
                await anyio.sleep(JOB_SECONDS)
                say("job done")
        finally:
            say("finally job")

    async def wait_for_test(self) -> None:
        # A threading.Event, which the signal handler may set between any two bytecodes,
        # waited for in a worker thread that a second signal's cancellation abandons.
        await anyio.to_thread.run_sync(self.test_done.wait, 1.5, abandon_on_cancel=True)

    async def trigger_hook(self) -> None:
        await self.at_moment("HOOK RUNNING")

    def register_hooks(self) -> None:
        # Hooks run last registered first: the test's sync point last of all, then the
        # misbehaving hooks, then "hook ok", then (at the moment "hooks") the trigger.
        graceful_async.on_shutdown(self.wait_for_test, name="wait for the test")
        if self.fault == "blocking-call":
            graceful_async.on_shutdown(self.block, name="blocking hook")
        elif self.fault == "hook-raises":
            graceful_async.on_shutdown(self.raise_in_hook, name="raising hook")
        elif self.fault == "hook-hangs":
            graceful_async.on_shutdown(self.hang_in_hook, name="hanging hook")
        elif self.fault == "swallows-cancellation" and self.moment == "hooks":
            graceful_async.on_shutdown(self.swallow_cancellation, name="swallowing hook")
        graceful_async.on_shutdown(say, "hook ok ran", name="hook ok")
        if self.moment == "hooks":
            graceful_async.on_shutdown(self.trigger_hook, name="trigger hook")

    async def main(self) -> None:
        self.register_hooks()
        if self.fault == "hung-thread":
            self.hang_thread()
        if self.moment == "hooks":
            say("MAIN RETURNS")
            return
        async with anyio.create_task_group() as tg:
            if self.fault == "swallows-cancellation":
                tg.start_soon(self.swallow_cancellation)
            try:
                if self.moment == "startup":
                    await self.at_moment("STARTING")
                # Start-up work (connecting to a database, say); at the moment "startup"
                # the trigger comes in the middle of it.
                await anyio.sleep(60 if self.moment == "startup" else 0.01)
            finally:
                say("finally startup")
            for _ in range(3):
                tg.start_soon(self.idle_worker)
            await anyio.wait_all_tasks_blocked()
            if self.moment == "steady":
                await self.at_moment("READY")
            elif self.moment == "drain":
                tg.start_soon(self.job)


def main() -> None:
    faulthandler.dump_traceback_later(30)
    # The library's log on stdout, so that the test can wait for "SIGTERM received".
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(message)s")
    trigger, moment, fault = sys.argv[1:4]
    program = Program(trigger, moment, fault)

    def storm(signum: int, frame: Any) -> None:
        program.storm_seen += 1

    def test_done(signum: int, frame: Any) -> None:
        program.test_done.set()

    signal.signal(signal.SIGUSR1, storm)
    signal.signal(signal.SIGUSR2, test_done)
    atexit.register(say, "atexit ran")
    options = {"use_uvloop": True} if os.environ.get("GA_UVLOOP") else {}
    graceful_async.run(
        program.main,
        backend=os.environ["GA_BACKEND"],
        backend_options=options,
        grace=GRACE,
        drain=DRAIN,
    )


if __name__ == "__main__":
    main()

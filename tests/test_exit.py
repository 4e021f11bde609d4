"""One verdict: the logged status, the process's real status and testing's status agree."""

from __future__ import annotations

import itertools
import re
import signal
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from graceful_async.testing import run_service

from .support.helpers import Backend, Child, write_program

TRIGGERS = ("SIGTERM", "SIGINT", "request", "exit", "error", "failure", "return")
MAIN_ENDINGS = ("plain", "interrupt", "error")  # what main's own finally does
HOOK_ENDINGS = ("ok", "raises")

# The same program runs as a real child process and in-process under run_service():
# ARGS, say() and start() are all the two runs set differently.
PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
TRIGGER, MAIN_END, HOOK_END = ARGS

def hook():
    if HOOK_END == "raises":
        raise RuntimeError("the hook failed")

@graceful_async.worker
async def failing():
    raise ValueError("the worker failed")

async def body():
    if TRIGGER in ("SIGTERM", "SIGINT"):
        say("READY")
        await anyio.sleep_forever()
    elif TRIGGER == "request":
        graceful_async.request_shutdown("asked", exit_code=3)
        await anyio.sleep_forever()
    elif TRIGGER == "exit":
        sys.exit(5)
    elif TRIGGER == "error":
        raise LookupError("main failed")
    elif TRIGGER == "failure":
        async with anyio.create_task_group() as tg:
            tg.start_soon(failing)
            await anyio.sleep_forever()
    return "value"

async def main():
    graceful_async.on_shutdown(hook)
    try:
        return await body()
    finally:
        if MAIN_END == "interrupt":
            raise KeyboardInterrupt
        if MAIN_END == "error":
            raise RuntimeError("main's finally failed")

start(main)
"""

CASES = list(itertools.product(TRIGGERS, MAIN_ENDINGS, HOOK_ENDINGS))


def logged_status(stderr: str) -> int:
    """The status the final log line names, as a number a shell would show."""
    told = re.findall(r"shutdown complete in [\d.]+ s; exit status: (.*)", stderr)
    assert len(told) == 1, stderr
    if told[0].startswith("death by SIGINT"):
        return 128 + signal.SIGINT
    if told[0] == "main's return value":
        return 0
    return int(told[0].split()[0])


def real_status(returncode: int) -> int:
    """Popen's returncode as a shell's $? shows it: -N (death by signal N) is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


async def status_from_testing(backend: Backend, trigger: str, main_end: str, hook_end: str) -> int:
    """The status graceful_async.testing gives for the same program, in this process."""
    import graceful_async

    mains: list[Any] = []
    namespace = {
        "ARGS": (trigger, main_end, hook_end),
        "anyio": anyio,
        "graceful_async": graceful_async,
        "say": lambda line: None,
        "start": mains.append,
    }
    exec(textwrap.dedent(PROGRAM), namespace)
    async with run_service(mains[0], grace=10) as service:
        if trigger in ("SIGTERM", "SIGINT"):
            await service.wait_ready()
            service.send_signal(getattr(signal, trigger))
    return service.result.exit_status


@pytest.mark.parametrize(("trigger", "main_end", "hook_end"), CASES)
def test_logged_real_and_testing_statuses_agree(
    tmp_path: Path, backend: Backend, trigger: str, main_end: str, hook_end: str
) -> None:
    """Every trigger, crossed with every way main and the hooks end: one status."""
    program = write_program(tmp_path, "ARGS = sys.argv[1:4]\n" + textwrap.dedent(PROGRAM))
    child = Child.start(program, backend, trigger, main_end, hook_end)
    if trigger in ("SIGTERM", "SIGINT"):
        child.wait_for("READY")
        child.send(getattr(signal, trigger))
    result = child.finish()
    real = real_status(result.returncode)
    assert logged_status(result.stderr) == real, result.stderr
    in_process = anyio.run(
        status_from_testing,
        backend,
        trigger,
        main_end,
        hook_end,
        backend=backend.name,
        backend_options=backend.options,
    )
    assert in_process == real, result.stderr

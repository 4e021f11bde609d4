"""run(fast_exit=True): the cancelled tasks' cyclic garbage is freed early, nothing is lost.

Real child processes, stopped with real signals. Each child disables the automatic garbage
collector until its atexit handler, so that only fast_exit frees that garbage before then,
never a collection that happened to run; the interpreter then exits with the collector on,
as usual (without it, CPython loses the buffer of a global file object at exit).
"""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import graceful_async

from .support.helpers import SIGINT_DEATH, WAIT, Backend, Child, Result, write_program

ASYNCIO_FAMILY = [Backend("asyncio"), Backend("asyncio", {"use_uvloop": True})]

# A service whose tasks, cancelled by the shutdown, hold files they never close: a plain
# file, a gzip file (its trailer is written only by close()) and a zip archive (its
# directory likewise). A global file is written and never closed either. The `marker`
# local lives in each cancelled task's frame; the atexit handler says whether it is
# still alive there, that is, whether the tasks' garbage still waits for a collection.
SERVICE = """\
import gc, gzip, weakref, zipfile
from pathlib import Path

gc.disable()
HERE = Path(os.environ["GA_DIR"])
log = open(HERE / "global.txt", "w")
log.write("global " * 1000)
markers = weakref.WeakSet()

class Marker:
    pass

async def holder(i):
    marker = Marker()
    markers.add(marker)
    f = open(HERE / f"task{i}.txt", "w")
    f.write("task " * 1000)
    g = gzip.open(HERE / f"task{i}.gz", "wt")
    g.write("gzip " * 1000)
    z = zipfile.ZipFile(HERE / f"task{i}.zip", "w")
    z.writestr("member.txt", "zip " * 1000)
    await anyio.sleep_forever()

async def main(how):
    async with anyio.create_task_group() as tg:
        for i in range(TASKS):
            tg.start_soon(holder, i)
        for _ in range(200):
            tg.start_soon(anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        graceful_async.on_shutdown(lambda: say("hook ran"))
        if how == "return":
            tg.cancel_scope.cancel()
            return
        say("READY")
        await anyio.sleep_forever()

def at_exit():
    say(f"atexit ran; markers alive: {len(markers)}")
    print("last words on stdout", end="")
    print("last words on stderr", end="", file=sys.stderr)
    gc.enable()

atexit.register(at_exit)
TASKS = 3
start(main, sys.argv[1], fast_exit=FAST_EXIT)
"""


def stop(tmp_path: Path, backend: Backend, how: str, *, fast_exit: bool = True) -> Result:
    """Run the service, stop it by ``how`` (a signal, or main returning), collect it."""
    program = write_program(tmp_path, f"FAST_EXIT = {fast_exit}\n" + SERVICE)
    child = Child.start(program, backend, how, GA_DIR=str(tmp_path))
    if how != "return":
        child.wait_for("READY")
        child.send(signal.Signals[how])
    return child.finish()


@pytest.mark.parametrize(
    ("how", "status"),
    [("SIGTERM", 128 + signal.SIGTERM), ("SIGINT", SIGINT_DEATH), ("return", 0)],
)
def test_exit_status_hooks_atexit_and_last_output(
    tmp_path: Path, backend: Backend, how: str, status: int
) -> None:
    """The status is the usual one; hooks, atexit and the last unflushed output all happen."""
    result = stop(tmp_path, backend, how)
    assert result.returncode == status
    assert "hook ran" in result.lines
    assert any(line.startswith("atexit ran") for line in result.lines)
    assert result.stdout.endswith("last words on stdout")
    assert result.stderr.endswith("last words on stderr")


@pytest.mark.parametrize("how", ["SIGTERM", "return"])
def test_files_left_open_in_cancelled_tasks_are_complete(
    tmp_path: Path, backend: Backend, how: str
) -> None:
    """Files a cancelled task never closed are flushed and closed, as by the collector."""
    result = stop(tmp_path, backend, how)
    assert result.returncode in (0, 128 + signal.SIGTERM)
    for i in range(3):
        assert (tmp_path / f"task{i}.txt").read_text() == "task " * 1000
        with gzip.open(tmp_path / f"task{i}.gz", "rt") as g:
            assert g.read() == "gzip " * 1000  # the trailer is there: close() ran
        with zipfile.ZipFile(tmp_path / f"task{i}.zip") as z:  # so is the directory
            assert z.read("member.txt") == b"zip " * 1000


def test_a_global_file_never_closed_is_flushed(tmp_path: Path, backend: Backend) -> None:
    """Module teardown still happens: a global file object is flushed and closed."""
    stop(tmp_path, backend, "SIGTERM")
    assert (tmp_path / "global.txt").read_text() == "global " * 1000


@pytest.mark.parametrize("backend", ASYNCIO_FAMILY, ids=lambda b: b.id)
@pytest.mark.parametrize(("fast_exit", "alive"), [(True, 0), (False, 3)])
def test_the_garbage_is_freed_before_the_interpreter_exits(
    tmp_path: Path, backend: Backend, fast_exit: bool, alive: int
) -> None:
    """With fast_exit, nothing of the cancelled tasks is left for the last collection."""
    if not fast_exit and sys.version_info < (3, 11):
        pytest.skip("on Python 3.10 the cancelled tasks are left in no cycle to begin with")
    result = stop(tmp_path, backend, "SIGTERM", fast_exit=fast_exit)
    assert f"atexit ran; markers alive: {alive}" in result.lines


def test_fast_exit_must_be_a_bool() -> None:
    """A value that is not True or False is refused, naming the argument."""

    async def main() -> None:
        pytest.fail("main must not run")

    with pytest.raises(TypeError, match=r"^fast_exit must be True or False, got 1$"):
        graceful_async.run(main, fast_exit=1)  # type: ignore[arg-type]


def test_nothing_to_free_without_anyios_asyncio_backend() -> None:
    """In a process that never imported anyio's asyncio backend, nothing is looked for."""
    code = (
        "import sys\n"
        "from graceful_async._garbage import free_task_group_cycles\n"
        "assert 'anyio._backends._asyncio' not in sys.modules\n"
        "print(free_task_group_cycles())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert result.stdout == "0\n"

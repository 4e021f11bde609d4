"""start_child(): children are signalled, waited for, killed, and never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

import graceful_async
from graceful_async._children import ChildProcess, Children
from graceful_async._lifecycle import Lifecycle
from graceful_async._shutdown import ShutdownState, Trigger, current_run
from graceful_async._watchdog import Watchdog

from .support.helpers import WAIT, Backend, Child, assert_forced_on_time, write_program

# A child that writes the name of the signal it got to the file named by argv[1], then
# exits 0; it says when its handler is in place.
POLITE_CHILD = """\
import os, signal, sys, time
def on_signal(signum, frame):
    with open(sys.argv[1], "w") as f:
        f.write(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_signal)
print("CHILD-READY", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""

# A child that ignores SIGTERM; it says when it does.
STUBBORN_CHILD = """\
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("CHILD-READY", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""

# A shell whose own child (a grandchild of the service) also ignores SIGTERM. It writes
# that pid to a file ($0), not to the stdout it shares with the service (lines would mix).
STUBBORN_SHELL = 'trap "" TERM; sleep 1000 & echo $! > "$0.tmp"; mv "$0.tmp" "$0"; wait'


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its new parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pid: int) -> bool:
    """Wait (bounded) for ``pid`` to end: a SIGKILL is delivered, not acted on, at once."""
    deadline = time.monotonic() + WAIT
    while alive(pid):
        if time.monotonic() > deadline:  # pragma: no cover - the failure
            os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.02)
    return True


def pid_after(child: Child, prefix: str) -> int:
    """Read up to the line ``prefix <pid>``, and return the pid."""
    child.wait_for(prefix, partial=True)
    return int(child.lines[-1].split()[-1])


def pid_in(path: Path) -> int:
    """Wait (bounded) for a file holding a pid, and return the pid."""
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name} within {WAIT} s"
        time.sleep(0.01)
    return int(path.read_text())


# --- the graceful path, in a real service with real signals

SERVICE = """
async def main():
    graceful_async.start_child([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
    await anyio.sleep_forever()

start(main, grace=20, drain=float(os.environ.get("DRAIN", "10")))
"""


def test_sigterm_reaches_the_child_and_the_service_waits_for_it(
    tmp_path: Path, backend: Backend
) -> None:
    """SIGTERM to the service reaches the child, which is reaped before the exit (143)."""
    marker = tmp_path / "marker"
    child = Child.start(write_program(tmp_path, SERVICE), backend, POLITE_CHILD, str(marker))
    pid = pid_after(child, "CHILD-READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 143, result.stderr
    assert marker.read_text() == "SIGTERM"
    assert gone(pid)


def test_a_child_that_ignores_sigterm_is_killed_at_the_drain_deadline(
    tmp_path: Path, backend: Backend
) -> None:
    """A child still running when the drain time is up is SIGKILLed, and logged."""
    program = write_program(tmp_path, SERVICE)
    child = Child.start(program, backend, STUBBORN_CHILD, DRAIN="0.5")
    pid = pid_after(child, "CHILD-READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 143, result.stderr
    assert f"killing 1 child process(es) still running: {pid} (python" in result.stderr
    assert gone(pid)


# A shell that leaves its own child behind (ignoring SIGTERM) and ends at once: the
# group outlives its leader.
LEAVING_SHELL = 'trap "" TERM; sleep 1000 & echo $! > "$0.tmp"; mv "$0.tmp" "$0"'

LEAVING_SERVICE = """
async def main():
    graceful_async.start_child(["sh", "-c", sys.argv[1], sys.argv[2]])
    await anyio.sleep_forever()

logging.basicConfig(level=logging.INFO)
start(main, grace=20, drain=0.5)
"""


def test_what_an_ended_child_left_in_its_group_is_killed(tmp_path: Path, backend: Backend) -> None:
    """A child that ended before the shutdown may leave its own children: they go too."""
    pidfile = tmp_path / "grandchild"
    child = Child.start(
        write_program(tmp_path, LEAVING_SERVICE), backend, LEAVING_SHELL, str(pidfile)
    )
    grandchild = pid_in(pidfile)  # the shell ends right after writing it
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 143, result.stderr
    assert gone(grandchild)


def wait_until_the_children_are_stopped() -> None:
    """In a thread: wait until the running service has begun to stop its children."""
    deadline = time.monotonic() + WAIT
    while not ((run := current_run()) and (children := run.find(Children)) and children.closed):
        assert time.monotonic() < deadline, "the children were never stopped"
        time.sleep(0.01)


def test_a_child_cannot_start_once_the_children_are_stopped(
    backend: Backend, tmp_path: Path
) -> None:
    """start_child() while the service waits for its children is refused, not missed."""
    refused: list[str] = []
    tried = threading.Event()
    running = threading.Event()
    output = tmp_path / "child.out"

    def late_start() -> None:
        running.set()
        wait_until_the_children_are_stopped()  # and the service waits for its stubborn one
        try:
            anyio.from_thread.run_sync(graceful_async.start_child, ["sleep", "1000"])
        except RuntimeError as exc:
            refused.append(str(exc))
        finally:
            tried.set()

    async def main() -> None:
        with output.open("w") as stream:
            graceful_async.start_child([sys.executable, "-c", STUBBORN_CHILD], stdout=stream)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(anyio.to_thread.run_sync, late_start, abandon_on_cancel=True))
            with anyio.fail_after(WAIT):  # the child ignores SIGTERM, the thread runs
                while "CHILD-READY" not in output.read_text() or not running.is_set():  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            graceful_async.request_shutdown()

    with pytest.raises(SystemExit) as exc_info:
        backend.run(main, grace=10, drain=3)
    assert exc_info.value.code == 0
    assert tried.wait(WAIT)
    assert len(refused) == 1
    assert "after the service's children were stopped" in refused[0]


def test_killed_children_are_reaped_after_a_second_signal(backend: Backend, tmp_path: Path) -> None:
    """A second signal cuts the wait for the children short, but they are still reaped."""
    children: list[graceful_async.ChildProcess] = []
    output = tmp_path / "child.out"

    def second_signal() -> None:
        wait_until_the_children_are_stopped()
        os.kill(os.getpid(), signal.SIGTERM)

    async def main() -> None:
        with output.open("w") as stream:
            child = graceful_async.start_child(
                [sys.executable, "-c", STUBBORN_CHILD], stdout=stream
            )
        children.append(child)
        with anyio.fail_after(WAIT):  # it ignores SIGTERM from now on
            while "CHILD-READY" not in output.read_text():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        threading.Thread(target=second_signal, daemon=True).start()
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as exc_info:
        backend.run(main, grace=20, drain=15)
    assert exc_info.value.code == 143
    assert children[0].returncode == -signal.SIGKILL  # reaped: no zombie left


def test_an_ignored_stop_signal_is_not_handed_on(backend: Backend) -> None:
    """Started with SIGINT ignored (a background job), a child still gets a live SIGINT."""
    children: list[graceful_async.ChildProcess] = []

    async def main() -> None:
        children.append(graceful_async.start_child(["sleep", "60"], stop_signal=signal.SIGINT))
        graceful_async.request_shutdown()

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(SystemExit) as exc_info:
            backend.run(main, grace=10, drain=5)
        assert exc_info.value.code == 0
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # ours stays ignored
    finally:
        signal.signal(signal.SIGINT, previous)
    assert children[0].returncode == -signal.SIGINT


# --- the forced path: the watchdog's exit leaves no child behind

STUCK_SERVICE = """
async def main():
    child = graceful_async.start_child(["sh", "-c", sys.argv[2], sys.argv[3]])
    say(f"STARTED {child.pid}")
    if sys.argv[1] == "block":
        time.sleep(60)  # the loop is wedged: not even the relay runs
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(60)  # main will not stop

start(main, grace=1, drain=0.5)
"""


@pytest.mark.parametrize("stuck", ["block", "swallow"])
@pytest.mark.parametrize("shell", [STUBBORN_SHELL, LEAVING_SHELL], ids=["waiting", "leaving"])
def test_forced_exit_kills_the_child_and_its_group(
    tmp_path: Path, backend: Backend, stuck: str, shell: str
) -> None:
    """When the watchdog forces the exit (124), the child and its own child are gone,
    also when the child itself ended and left its own child behind."""
    pidfile = tmp_path / "grandchild"
    program = write_program(tmp_path, STUCK_SERVICE)
    child = Child.start(program, backend, stuck, shell, str(pidfile))
    pid = pid_after(child, "STARTED")
    grandchild = pid_in(pidfile)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == graceful_async.FORCED_EXIT_STATUS, result.stderr
    assert_forced_on_time(result, 1)
    assert gone(pid)
    assert gone(grandchild)


def test_the_watchdog_kills_the_children_before_it_forces_the_exit() -> None:
    """At the deadline the watchdog SIGKILLs each registered child's group, then forces."""
    state = ShutdownState(grace=0.2)
    run = Lifecycle(state)
    fired = threading.Event()
    popen = subprocess.Popen(["sleep", "60"], start_new_session=True)
    run.attached(Children).add(ChildProcess(popen, signal.SIGTERM, "sleep"))
    try:
        with Watchdog(run, force=lambda report, status: fired.set()):
            state.trigger_shutdown(Trigger("request"))
            assert fired.wait(WAIT)
        assert popen.wait(WAIT) == -signal.SIGKILL
    finally:
        popen.kill()
        popen.wait()
        state.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_service_killed_outright_takes_its_child_along(tmp_path: Path, backend: Backend) -> None:
    """SIGKILL to the service (no cleanup at all) still ends the child: PDEATHSIG."""
    child = Child.start(write_program(tmp_path, SERVICE), backend, STUBBORN_CHILD)
    pid = pid_after(child, "CHILD-READY")
    child.send(signal.SIGKILL)
    assert child.finish().returncode == -signal.SIGKILL
    assert gone(pid)


# --- in this process: the runner's side


@pytest.mark.parametrize(
    "stop_signal",
    [signal.SIGTERM, signal.SIGINT, signal.SIGRTMIN + 1],
    ids=["TERM", "INT", "RTMIN+1"],
)
def test_children_are_stopped_when_main_returns(
    backend: Backend, stop_signal: int, logs: pytest.LogCaptureFixture
) -> None:
    """A child still running when main returns gets its stop signal before run() returns."""
    children: list[graceful_async.ChildProcess] = []

    async def main() -> None:
        children.append(graceful_async.start_child(["sleep", "60"], stop_signal=stop_signal))
        assert "running" in repr(children[0])

    backend.run(main)
    assert children[0].returncode == -stop_signal
    assert f"returncode={-stop_signal}" in repr(children[0])
    assert f"to child process {children[0].pid} (sleep)" in logs.text


def test_stubborn_child_is_killed_and_reaped_before_the_hooks(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """At the drain deadline a child ignoring its signal is SIGKILLed; hooks see it dead."""
    seen_by_hook: list[int | None] = []

    async def main() -> None:
        # SIGWINCH does nothing to sleep by default: a stubborn child, without a race.
        child = graceful_async.start_child(["sleep", "60"], stop_signal=signal.SIGWINCH)
        graceful_async.on_shutdown(lambda: seen_by_hook.append(child.returncode))
        graceful_async.request_shutdown("test")
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as exc_info:
        backend.run(main, grace=WAIT, drain=0.2)
    assert exc_info.value.code == 0
    assert seen_by_hook == [-signal.SIGKILL]
    assert "killing 1 child process(es) still running" in logs.text


def test_a_child_started_during_the_shutdown_is_stopped_too(backend: Backend) -> None:
    """A child started after the shutdown began still gets its stop signal."""
    children: list[graceful_async.ChildProcess] = []

    async def main() -> None:
        async with graceful_async.in_flight():  # so that the drain phase waits for us
            graceful_async.request_shutdown()
            await graceful_async.wait_shutdown_requested()
            children.append(graceful_async.start_child(["sleep", "60"]))

    with pytest.raises(SystemExit) as exc_info:
        backend.run(main, grace=WAIT)
    assert exc_info.value.code == 0
    assert children[0].returncode == -signal.SIGTERM


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_wait_returns_the_exit_status(
    backend: Backend, pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait() returns the child's status, with pidfds and without, for several waiters."""
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    results: list[int] = []

    async def wait_for(child: graceful_async.ChildProcess) -> None:
        results.append(await child.wait())

    async def main() -> None:
        with anyio.fail_after(WAIT):
            exits = graceful_async.start_child([sys.executable, "-c", "raise SystemExit(3)"])
            assert await exits.wait() == 3
            assert exits.returncode == 3
            exits.terminate()  # ended: nothing happens

            sleeper = graceful_async.start_child(["sleep", "60"])
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for, sleeper)
                tg.start_soon(wait_for, sleeper)
                await anyio.sleep(0.05)
                sleeper.kill()

    backend.run(main)
    assert results == [-signal.SIGKILL, -signal.SIGKILL]


def test_send_signal_reaches_only_the_child(backend: Backend) -> None:
    """send_signal() and terminate() signal the child itself, as Popen's do."""

    async def main() -> None:
        with anyio.fail_after(WAIT):
            child = graceful_async.start_child(["sleep", "60"])
            child.send_signal(signal.SIGUSR1)
            assert await child.wait() == -signal.SIGUSR1
            child = graceful_async.start_child(["sleep", "60"])
            child.terminate()
            assert await child.wait() == -signal.SIGTERM

    backend.run(main)


def test_children_do_not_inherit_systemds_variables(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTIFY_SOCKET and the watchdog variables are the service's alone; the rest passes."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("GA_KEPT", "yes")
    out = tmp_path / "env.txt"
    show = (
        "import os; print(sorted(k for k in os.environ "
        "if k in ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'GA_KEPT')))"
    )

    async def main() -> None:
        with anyio.fail_after(WAIT), out.open("w") as stream:
            child = graceful_async.start_child([sys.executable, "-c", show], stdout=stream)
            assert await child.wait() == 0

    backend.run(main)
    assert out.read_text().strip() == "['GA_KEPT']"


# --- argument and context errors


@pytest.mark.parametrize("command", [[], "", "  "])
def test_command_must_not_be_empty(command: str | list[str]) -> None:
    """An empty command is a ValueError that names the argument."""
    with pytest.raises(ValueError, match="command must name a program"):
        graceful_async.start_child(command)


@pytest.mark.parametrize("value", [signal.SIGKILL, signal.SIGSTOP, 0, 100_000])
def test_stop_signal_must_be_catchable(value: int) -> None:
    """A stop signal the child cannot catch, or no signal at all, is a ValueError."""
    with pytest.raises(ValueError, match="stop_signal must be a signal the child can catch"):
        graceful_async.start_child(["true"], stop_signal=value)


@pytest.mark.parametrize("value", ["SIGTERM", True, 15.0])
def test_stop_signal_must_be_a_number(value: object) -> None:
    """A stop signal that is not an int is a TypeError."""
    with pytest.raises(TypeError, match="stop_signal must be a signal number"):
        graceful_async.start_child(["true"], stop_signal=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["start_new_session", "process_group", "preexec_fn"])
def test_what_start_child_owns_cannot_be_passed(name: str) -> None:
    """The session, the group and the pre-exec function are start_child's own."""
    kwargs: dict[str, Any] = {name: None}
    with pytest.raises(ValueError, match=f"does not take {name}="):
        graceful_async.start_child(["true"], **kwargs)


@pytest.mark.parametrize("stream", ["stdin", "stdout", "stderr"])
def test_pipes_are_refused(stream: str) -> None:
    """subprocess.PIPE is refused, pointing to anyio.open_process()."""
    with pytest.raises(ValueError, match=r"anyio\.open_process"):
        graceful_async.start_child(["true"], **{stream: subprocess.PIPE})


def test_needs_an_active_run() -> None:
    """Outside run() start_child() raises a RuntimeError that says what to do."""
    with pytest.raises(RuntimeError, match=r"needs an active graceful_async\.run"):
        graceful_async.start_child(["true"])


def test_needs_the_loop_thread(backend: Backend) -> None:
    """From another thread start_child() raises; through from_thread it works."""
    statuses: list[int] = []

    def in_thread() -> graceful_async.ChildProcess:
        with pytest.raises(RuntimeError, match="from_thread"):
            graceful_async.start_child(["true"])
        return anyio.from_thread.run_sync(graceful_async.start_child, ["true"])

    async def main() -> None:
        child = await anyio.to_thread.run_sync(in_thread)
        with anyio.fail_after(WAIT):
            statuses.append(await child.wait())

    backend.run(main)
    assert statuses == [0]


def test_refused_in_hooks(backend: Backend) -> None:
    """Once the children are stopped (in the hooks), start_child() refuses."""
    errors: list[BaseException] = []

    def hook() -> None:
        with pytest.raises(RuntimeError, match=r"anyio\.run_process") as info:
            graceful_async.start_child(["true"])
        errors.append(info.value)

    async def main() -> None:
        graceful_async.on_shutdown(hook)

    backend.run(main)
    assert len(errors) == 1

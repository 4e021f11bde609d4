"""start_child(): child processes that belong to the service and are stopped with it.

    trigger (drain begins) -> stop_signal to each child's process group
    -> after the stray-task sweep, wait for the children until the drain deadline
    -> SIGKILL every group (what a child started may outlive it), and reap
    watchdog's forced exit -> SIGKILL every group; runner killed outright -> PDEATHSIG

Each child is started in a session (and so a process group) of its own, so that a signal
reaches a shell wrapper's own children too, as ``tini -g`` does, and so that a Ctrl+C in the
terminal reaches only the service, which then stops its children in order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, final

import anyio

from ._lifecycle import Event, Lifecycle, Phase
from ._log import logger
from ._scopes import bounded_scope, to_loop_clock
from ._shutdown import run_on_this_loop
from ._systemd import SYSTEMD_VARIABLES

if TYPE_CHECKING:
    import subprocess

# We own these: the child's session is what lets us signal its whole group, and the
# pre-exec function is what sets its parent-death signal.
_RESERVED = ("start_new_session", "process_group", "preexec_fn")
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
# Where pidfd_open() is unavailable, wait() looks at the child this often.
_POLL_INTERVAL = 0.05
# How long the SIGKILLed children may take to be reaped: SIGKILL cannot be ignored, so
# only a process stuck in the kernel (uninterruptible I/O) takes longer.
_REAP_TIMEOUT = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# From the hooks on, no child may start: the children were stopped before them.
_CHILDREN_STOPPED = frozenset({Phase.HOOKS, Phase.EXITING, Phase.INTERPRETER_EXIT})


@final
class ChildProcess:
    """A child process started by `start_child`, stopped when the service shuts down.

    Not created directly: call `start_child`. Use it from the event loop's thread.

    Attributes:
        pid: The child's process ID, which is also its process group's ID.
    """

    def __init__(self, popen: subprocess.Popen[Any], stop_signal: int, name: str) -> None:
        self._popen = popen
        self._stop_signal = stop_signal
        self._name = name
        #: Whether the shutdown has sent stop_signal to the group already.
        self._signalled = False
        self.pid: int = popen.pid

    def __repr__(self) -> str:
        code = self.returncode
        status = "running" if code is None else f"returncode={code}"
        return f"<ChildProcess pid={self.pid} {self._name!r} {status}>"

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has ended, None while it runs.

        As in `subprocess`: the exit code, or ``-N`` if signal N ended the child.
        """
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the child to end, and return its exit status.

        Returns:
            The exit code, or ``-N`` if signal N ended the child.
        """
        while (code := self.returncode) is None:
            await _wait_for_exit(self.pid)
        return code

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child (only the child, not its group); nothing once it ended.

        Args:
            sig: The signal number, such as ``signal.SIGHUP``.
        """
        if self.returncode is None:
            self._popen.send_signal(sig)

    def terminate(self) -> None:
        """Send SIGTERM to the child; nothing once it has ended."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to the child; nothing once it has ended."""
        self.send_signal(signal.SIGKILL)

    def _describe(self) -> str:
        return f"{self.pid} ({self._name})"


def start_child(
    command: str | Sequence[str | os.PathLike[str]],
    *,
    stop_signal: int = signal.SIGTERM,
    **popen_kwargs: Any,
) -> ChildProcess:
    """Start a child process that the service stops when it shuts down.

    The child runs in a process group of its own. When the shutdown begins (with the
    drain phase) its group gets ``stop_signal``; the service then waits for it at most
    until the drain deadline, and SIGKILLs the group if it is still running, before the
    `on_shutdown` hooks run. If the watchdog has to force the exit, it SIGKILLs the
    group first. On Linux the child also gets SIGKILL if the service itself dies, even
    by SIGKILL. This function does not block: it starts the child and returns.

    The child inherits the service's environment, less systemd's ``NOTIFY_SOCKET``,
    ``WATCHDOG_USEC`` and ``WATCHDOG_PID``: it is not the service, and must not speak for
    it.

    Args:
        command: What to run, as for `subprocess.Popen`: a list of arguments, or a
            string (a program name, or a command line with ``shell=True``).
        stop_signal: The signal the child's group gets when the shutdown begins.
        **popen_kwargs: Passed to `subprocess.Popen`, for example ``cwd``, ``env`` or
            ``stdout=subprocess.DEVNULL``. The standard streams are inherited unless
            given. ``subprocess.PIPE`` is refused: use `anyio.open_process` for a child
            you talk to through pipes.

    Returns:
        The running child.

    Raises:
        TypeError: If ``stop_signal`` is not a signal number.
        ValueError: If ``command`` is empty, ``stop_signal`` is not a signal the child
            can catch, or ``popen_kwargs`` sets ``start_new_session``,
            ``process_group``, ``preexec_fn`` or a ``subprocess.PIPE``.
        RuntimeError: Outside `graceful_async.run()`, from a thread other than its
            event loop's, or once the children have been stopped (in the hooks).
        OSError: If the child cannot be started (for example, the program is missing).

    Example:
        ```python
        async def main() -> None:
            proxy = graceful_async.start_child(["envoy", "-c", "envoy.yaml"])
            status = await proxy.wait()
            graceful_async.request_shutdown(f"envoy exited with {status}", exit_code=1)
        ```
    """
    # Deferred: subprocess takes several ms to import (as does ctypes, for prctl), and only
    # a service that starts children needs it.
    import subprocess

    if not command or (isinstance(command, str) and not command.strip()):
        raise ValueError(f"command must name a program to run, got {command!r}")
    _check_stop_signal(stop_signal)
    _check_popen_kwargs(popen_kwargs)
    run = run_on_this_loop()
    if run is None:
        raise RuntimeError(
            "start_child() needs an active graceful_async.run() and must be called on its "
            "event loop's thread, so that the child is stopped with the service; from "
            "another thread, use anyio.from_thread.run_sync(graceful_async.start_child, ...)"
        )
    children = run.attached(Children)
    if children.closed or run.phase in _CHILDREN_STOPPED:
        raise RuntimeError(
            "start_child() was called after the service's children were stopped (in an "
            "on_shutdown hook?); run short commands there with anyio.run_process() instead"
        )
    # preexec_fn runs Python between fork and exec, which is unsafe if another thread held
    # a lock (malloc's, say) at the fork: ours only makes a foreign call resolved in
    # advance and two or three system calls. It is the only way to set the parent-death
    # signal from Python.
    if "env" not in popen_kwargs and SYSTEMD_VARIABLES & os.environ.keys():
        # The child is not the service: it must not speak for it to systemd (as
        # sd_notify(3)'s unset_environment does), nor ping its watchdog.
        popen_kwargs["env"] = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    # An ignored signal stays ignored across exec: a service started with SIGINT ignored
    # (a background job, nohup) would hand that on, and stop_signal=SIGINT would do
    # nothing. Handled signals are reset by exec anyway.
    reset = stop_signal if signal.getsignal(stop_signal) == signal.SIG_IGN else None
    popen = subprocess.Popen(
        command,
        start_new_session=True,
        preexec_fn=_prepare_child(os.getpid(), reset),  # noqa: PLW1509
        **popen_kwargs,
    )
    child = ChildProcess(popen, stop_signal, _name_of(command))
    children.add(child)
    return child


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # pragma: no cover - EPERM: someone else's by now; leave it be
        return True
    return True


def _check_stop_signal(stop_signal: object) -> None:
    if not isinstance(stop_signal, int) or isinstance(stop_signal, bool):
        raise TypeError(
            f"stop_signal must be a signal number such as signal.SIGTERM, got {stop_signal!r}"
        )
    if stop_signal not in signal.valid_signals() or stop_signal in _UNCATCHABLE:
        raise ValueError(
            "stop_signal must be a signal the child can catch, such as signal.SIGTERM or "
            f"signal.SIGINT, got {stop_signal!r} (a child still running at the drain "
            "deadline gets SIGKILL anyway)"
        )


def _check_popen_kwargs(popen_kwargs: dict[str, Any]) -> None:
    import subprocess  # deferred, as in start_child()

    for name in _RESERVED:
        if name in popen_kwargs:
            raise ValueError(
                f"start_child() does not take {name}=: it starts each child in a session "
                "of its own, to signal its whole process group, and sets the child's "
                "parent-death signal itself"
            )
    for name in ("stdin", "stdout", "stderr"):
        if popen_kwargs.get(name) == subprocess.PIPE:
            raise ValueError(
                f"start_child() does not take {name}=subprocess.PIPE: Popen's pipes are "
                "blocking file objects that would stall the event loop; use "
                "anyio.open_process() for a child you talk to through pipes, or pass a "
                "file, subprocess.DEVNULL, or nothing (inherit)"
            )


def _name_of(command: str | Sequence[str | os.PathLike[str]]) -> str:
    """A short name for the logs: the program's base name."""
    first = command.split(maxsplit=1)[0] if isinstance(command, str) else command[0]
    return os.path.basename(os.fspath(first))


# --- the parent-death signal (Linux)


# Looked up once, in the parent (at the first start_child(), not at import: ctypes is
# slow to import): between fork and exec the child may only make the call.
@functools.cache
def _resolve_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):  # pragma: no cover - Linux is what CI runs
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no ctypes or libc
        return None
    return prctl


def _prepare_child(parent: int, reset: int | None) -> Callable[[], None] | None:
    """The pre-exec function: the parent-death signal, and ``reset`` back to its default.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process.
    start_child() runs on the event loop's thread, which is run()'s own (the main thread,
    normally) and lives until run() has stopped every child anyway. The flag survives
    exec, except into a set-user-ID or set-group-ID program.
    """
    prctl = _resolve_prctl()
    if prctl is None and reset is None:  # pragma: no cover - not Linux
        return None

    def prepare() -> None:  # pragma: no cover - runs in the child
        if reset is not None:
            # CPython counts the forked child's only thread as its main thread, so this
            # is allowed here; it is one sigaction() call.
            signal.signal(reset, signal.SIG_DFL)
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # If we died between fork and prctl(), the signal will never come: the child has
        # been reparented already. Die now, as the signal would have made it.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return prepare


# --- waiting


async def _wait_for_exit(pid: int) -> None:
    """Return once child ``pid`` has (probably) ended; the caller reaps it and checks.

    A pidfd turns readable when the process ends, on every backend (asyncio and uvloop
    poll it like a socket, trio too), and needs neither SIGCHLD nor a child watcher,
    which would fight the event loop's own. Each call opens its own, so that several
    tasks can wait for the same child. Without pidfds (not Linux, or Linux before 5.3),
    poll.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        await anyio.sleep(_POLL_INTERVAL)
        return
    try:
        await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)


@final
class Children:
    """The children of one run, attached to it by the first `start_child`.

    It sends their stop signals as the drain begins, stops them once main's tree has
    unwound, and SIGKILLs their groups at a forced exit.
    """

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._state = lifecycle.state
        #: By pid (= process group), until their group is empty. Changed on the loop
        #: only; the watchdog reads a list() of it.
        self.running: dict[int, ChildProcess] = {}
        #: Set once the children are being stopped: no new child may start then.
        self.closed = False
        lifecycle.subscribe(Event.DRAIN_BEGINS, self.signal_all)
        lifecycle.subscribe_unwound(self.stop_all)
        lifecycle.subscribe(Event.FORCED_EXIT, self.kill_all)

    def add(self, child: ChildProcess) -> None:
        # Children stay on the books after they end, as long as their process group has
        # members: a shell wrapper's own children outlive it, and the shutdown must reach
        # them too. A group that is empty now stays empty (its ID cannot come back while
        # its leader's pid is unused), so forget it, or a service that starts many short
        # commands would grow the list for ever.
        for pid, known in list(self.running.items()):
            if known._popen.returncode is not None and not _group_alive(pid):
                del self.running[pid]
        self.running[child.pid] = child

    def signal_all(self) -> None:
        """Send each child's stop signal to its process group, once. On the loop only.

        Also to the group of a child that has ended already: what it started may still
        run.
        """
        for child in list(self.running.values()):
            if child._signalled:
                continue
            child._signalled = True
            running = child.returncode is None
            if not running and not _group_alive(child.pid):
                continue
            logger.info(
                "sending %s to %s %s",
                _signal_name(child._stop_signal),
                "child process" if running else "what is left of the process group of",
                child._describe(),
            )
            _signal_group(child, child._stop_signal)

    async def stop_all(self) -> None:
        """Wait for the children until the drain deadline, then SIGKILL their groups.

        Called after main's tree has unwound and before the hooks, so that the hooks run
        with no child left: no child can be started from here on. A second signal cuts
        the wait short (the scope is a bounded one), but not the reaping.
        """
        state = self._state
        self.closed = True
        self.signal_all()  # the ones started after the shutdown began
        children = list(self.running.values())
        if not children:
            return
        with (
            bounded_scope(),
            anyio.CancelScope(deadline=to_loop_clock(state.drain_deadline)),
        ):
            for child in children:
                await child.wait()
        left = [child for child in children if child.returncode is None]
        if left:
            logger.warning(
                "%s: killing %d child process(es) still running: %s",
                "second signal" if state.escalated else "drain time is up",
                len(left),
                ", ".join(child._describe() for child in left),
            )
        # Every group, also those whose leader has ended: a wrapper's own children may
        # still be in it.
        for child in children:
            _signal_group(child, signal.SIGKILL)
        # Shielded: after a second signal too, the killed children are reaped, not left
        # as zombies. SIGKILL cannot be ignored, so this is quick unless one is stuck in
        # the kernel.
        with anyio.move_on_after(_REAP_TIMEOUT, shield=True):
            for child in left:
                await child.wait()

    def kill_all(self) -> None:
        """SIGKILL every child's group, from the watchdog, just before the forced exit.

        The main thread may be wedged holding any lock, so this takes none, logs nothing
        and only makes system calls. list() of a dict's values is a single C call.
        """
        for child in list(self.running.values()):
            _signal_group(child, signal.SIGKILL)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:  # a real-time signal
        return f"signal {sig}"


def _signal_group(child: ChildProcess, sig: int) -> None:
    # The group, for a shell wrapper's own children; then the child itself, in case it
    # moved to another group (a daemon that called setsid(), say), but only while it is
    # not reaped: after that its pid may belong to another process.
    with contextlib.suppress(OSError):
        os.killpg(child.pid, sig)
    if child._popen.returncode is None:
        with contextlib.suppress(OSError):
            os.kill(child.pid, sig)

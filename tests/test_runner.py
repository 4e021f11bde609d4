"""run(): returning, options, state left behind, nesting, threads, and what escapes main."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
import threading
import weakref
from pathlib import Path
from types import FrameType

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
import sniffio

import graceful_async

from .support.helpers import WAIT, Backend, Child, write_program


def test_returns_mains_value(backend: Backend) -> None:
    """main(*args) runs and its return value comes back from run()."""

    async def main(a: int, b: str) -> str:
        await anyio.lowlevel.checkpoint()
        return f"{a}-{b}"

    assert backend.run(main, 1, "x") == "1-x"


def test_backend_options_reach_the_backend(backend: Backend) -> None:
    """The chosen backend, with its options, is what main runs on."""

    async def main() -> str:
        library = sniffio.current_async_library()
        if library == "asyncio":
            return type(asyncio.get_running_loop()).__module__.split(".")[0]
        return library

    expected = {"asyncio": "asyncio", "asyncio+uvloop": "uvloop", "trio": "trio"}[backend.id]
    assert backend.run(main) == expected


def test_asyncio_options_debug_and_loop_factory() -> None:
    """debug and loop_factory reach the asyncio loop, as with anyio.run."""
    made: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        made.append(loop)
        return loop

    async def main() -> bool:
        assert asyncio.get_running_loop() is made[0]
        return asyncio.get_running_loop().get_debug()

    assert graceful_async.run(main, backend_options={"debug": True, "loop_factory": factory})
    assert made[0].is_closed()


def test_handlers_installed_during_main_and_restored_after(backend: Backend) -> None:
    """Handlers are ours while main runs; afterwards the very same old objects are back."""

    def old_term(signum: int, frame: FrameType | None) -> None:
        pytest.fail("the old SIGTERM handler must not be called")

    previous_int = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, old_term)
    try:
        seen: list[object] = []

        async def main() -> None:
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(signal.getsignal(signal.SIGINT))

        backend.run(main)
        assert seen[0] is not old_term
        assert callable(seen[0])
        assert seen[1] is seen[0]
        assert signal.getsignal(signal.SIGTERM) is old_term
        assert signal.getsignal(signal.SIGINT) is previous_int
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def current_wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def test_a_wakeup_fd_is_set_while_main_runs_and_cleared_after(backend: Backend) -> None:
    """Some wake-up fd is set during main (ours on plain asyncio); none is left behind."""
    seen: list[int] = []

    async def main() -> None:
        seen.append(current_wakeup_fd())

    backend.run(main)
    assert seen[0] != -1
    assert current_wakeup_fd() == -1


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "asyncio+uvloop"])
def test_a_wakeup_fd_set_before_run_still_hears_every_signal(uvloop: bool) -> None:
    """Ours replaces the program's wake-up fd while main runs, passes every signal on
    to it, and puts it back afterwards.

    (uvloop puts its own in place for as long as its loop runs, so there the program's
    hears nothing meanwhile, with or without us. trio refuses to start over someone
    else's wake-up fd, with a RuntimeWarning.)
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_usr1 = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        signal.set_wakeup_fd(writer.fileno())
        received: list[bytes] = []

        def wait_for_byte() -> None:
            reader.settimeout(WAIT)
            received.append(reader.recv(1))

        async def main() -> None:
            assert current_wakeup_fd() != writer.fileno()
            signal.raise_signal(signal.SIGUSR1)
            if not uvloop:
                await anyio.to_thread.run_sync(wait_for_byte)

        graceful_async.run(main, backend="asyncio", backend_options={"use_uvloop": uvloop})
        assert received == ([] if uvloop else [bytes([signal.SIGUSR1])])
        assert current_wakeup_fd() == writer.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGUSR1, previous_usr1)
        reader.close()
        writer.close()


def test_add_signal_handler_inside_main_takes_over_the_wakeup_fd() -> None:
    """asyncio's add_signal_handler replaces our wake-up fd; we do not put ours back."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        loop.remove_signal_handler(signal.SIGUSR1)  # clears the wake-up fd

    graceful_async.run(main, backend="asyncio")
    assert current_wakeup_fd() == -1


def test_dump_signal_handler_is_installed_and_restored(backend: Backend) -> None:
    """dump_signal gets a handler while main runs; the previous one is back after."""
    previous = signal.getsignal(signal.SIGUSR2)
    seen: list[object] = []

    async def main() -> None:
        seen.append(signal.getsignal(signal.SIGUSR2))

    backend.run(main, dump_signal=signal.SIGUSR2)
    assert seen[0] is not previous
    assert callable(seen[0])
    assert signal.getsignal(signal.SIGUSR2) is previous


def test_only_the_chosen_signals_are_handled(backend: Backend) -> None:
    """signals=(SIGTERM,) leaves SIGINT to whoever had it."""
    seen: list[object] = []

    async def main() -> None:
        seen.append(signal.getsignal(signal.SIGINT))
        seen.append(signal.getsignal(signal.SIGTERM))

    backend.run(main, signals=(signal.SIGTERM,))
    assert seen[0] is not seen[1]


def test_duplicate_signals_are_handled_once(backend: Backend) -> None:
    """Listing a signal twice is the same as listing it once."""

    async def main() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main, signals=(signal.SIGTERM, signal.SIGTERM))
    assert info.value.code == 143


def test_can_run_again_and_leaves_no_state(backend: Backend) -> None:
    """run() can be called again in the same process and starts afresh each time."""

    async def main(n: int) -> int:
        assert not graceful_async.shutdown_requested()
        graceful_async.on_shutdown(lambda: None)
        return n

    assert [backend.run(main, n) for n in range(3)] == [0, 1, 2]
    # What stays is what the interpreter's exit needs: the finished run's shutdown.
    assert graceful_async.shutdown_reason() == "main returned"
    assert not any(t.name == "graceful_async watchdog" for t in threading.enumerate())


def test_nested_run_is_refused(backend: Backend) -> None:
    """Calling run() while another run() is active raises a clear RuntimeError."""

    async def inner() -> None:
        pytest.fail("the nested main must not run")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="already running"):
            graceful_async.run(inner)

    backend.run(main)


def test_run_in_another_thread_warns_and_installs_nothing(backend: Backend) -> None:
    """Outside the main thread run() works, installs no handlers and warns once."""
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []
    caught: list[BaseException] = []

    async def main() -> str:
        seen.append(signal.getsignal(signal.SIGTERM))
        return "done"

    def target() -> None:
        try:
            with pytest.warns(RuntimeWarning, match="outside the main thread") as record:
                seen.append(backend.run(main))
            seen.append(len(record))
        except BaseException as exc:  # pragma: no cover - reported below
            caught.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert not caught
    assert seen == [before, "done", 1]


def test_request_from_a_thread_outside_the_main_thread(backend: Backend) -> None:
    """In a non-main thread, request_shutdown() still shuts the program down."""
    results: list[object] = []

    async def main() -> None:
        try:
            graceful_async.request_shutdown("from the worker thread", exit_code=4)
            await anyio.sleep_forever()
        finally:
            results.append("finally")

    def target() -> None:
        with pytest.warns(RuntimeWarning), pytest.raises(SystemExit) as info:
            backend.run(main)
        results.append(info.value.code)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert results == ["finally", 4]


def test_signal_before_the_loop_processes_it_still_cancels_main(backend: Backend) -> None:
    """A signal that lands while main is busy in sync code is applied once it awaits."""
    reached: list[str] = []

    async def main() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        # The handler has run by now; the loop has not seen the byte yet.
        assert graceful_async.shutdown_requested()
        try:
            await anyio.sleep_forever()
        finally:
            reached.append("finally")

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 143
    assert reached == ["finally"]


def test_cancel_reason_names_the_signal(backend: Backend) -> None:
    """main's tree is cancelled with the signal's name as the cancel reason."""
    messages: list[str] = []

    async def main() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class() as exc:
            messages.append(str(exc))
            raise

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 143
    assert len(messages) == 1
    assert "SIGTERM" in messages[0]


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_sys_exit_in_a_plain_asyncio_task(use_uvloop: bool) -> None:
    """asyncio lets SystemExit escape the loop; it still becomes a graceful exit(n)."""
    order: list[str] = []

    async def quitter() -> None:
        sys.exit(5)

    tasks: list[asyncio.Task[None]] = []

    async def main() -> None:
        graceful_async.on_shutdown(order.append, "hook")
        tasks.append(asyncio.get_running_loop().create_task(quitter()))
        try:
            await anyio.sleep_forever()
        finally:
            order.append("main finally")

    with pytest.raises(SystemExit) as info:
        graceful_async.run(main, backend_options={"use_uvloop": use_uvloop})
    assert info.value.code == 5
    assert order == ["main finally", "hook"]
    # Retrieve it, or asyncio logs "Task exception was never retrieved" whenever the
    # task happens to be collected, in some later test's log capture.
    assert isinstance(tasks[0].exception(), SystemExit)


def test_cancellation_escaping_main_is_mains_own_outcome() -> None:
    """A CancelledError that main caused itself still runs the hooks, then propagates."""
    ran: list[str] = []

    async def main() -> None:
        graceful_async.on_shutdown(ran.append, "hook")
        task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        graceful_async.run(main)
    assert ran == ["hook"]

    async def empty() -> None:
        pass

    graceful_async.run(empty)
    assert ran == ["hook"]  # nothing was left registered for the next run


def test_second_signal_cuts_the_wait_for_stray_tasks(tmp_path: Path) -> None:
    """A plain asyncio task slow to finish is waited for, until a second signal."""
    body = """
    import asyncio

    async def slow_stray():
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            say("STRAY CLEANING UP")
            await asyncio.sleep(600)  # slow cleanup; a second cancel ends it

    async def main():
        asyncio.get_running_loop().create_task(slow_stray())
        say("READY")
        await anyio.sleep_forever()

    start(main, grace=60)
    """
    child = Child.start(write_program(tmp_path, body), Backend("asyncio"))
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    child.wait_for("STRAY CLEANING UP")
    child.send(signal.SIGINT)
    result = child.finish()
    assert result.returncode == 143, result.stderr


class _Held:
    """An object only a frame of the failed run refers to."""


def test_a_run_that_raised_keeps_none_of_its_frames_alive(backend: Backend) -> None:
    """Once run() has raised and the exception is dropped, what main's frames held is
    freed, although the exit guard keeps the run until its deadline: a socket a server
    failed to bind must not wait there to be closed."""
    held: list[weakref.ref[_Held]] = []

    def fail() -> None:
        thing = _Held()
        held.append(weakref.ref(thing))
        raise OSError("address in use")

    async def main() -> None:
        fail()

    try:
        backend.run(main, grace=30)
    except OSError:
        pass
    else:  # pragma: no cover - run() must raise main's error
        raise AssertionError("run() did not raise main's OSError")
    gc.collect()
    assert held[0]() is None

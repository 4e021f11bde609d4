"""systemd's notify protocol, spoken to a real datagram socket that the test listens on."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import graceful_async

from .support.helpers import WAIT, Backend, Child, write_program


class Manager:
    """The service manager's end of NOTIFY_SOCKET: a bound datagram socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def messages(self) -> list[dict[str, str]]:
        """Every message sent so far, without waiting."""
        received: list[dict[str, str]] = []
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return received
            received.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def wait_for(self, key: str) -> list[dict[str, str]]:
        """Collect messages until one holds ``key``; return them all."""
        received: list[dict[str, str]] = []
        self.sock.settimeout(WAIT)
        while not any(key in message for message in received):
            data = self.sock.recv(4096)
            received.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
        return received

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def manager(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Manager]:
    """A listening notify socket, named in NOTIFY_SOCKET: a path, or an abstract name."""
    if request.param == "path":
        address = str(tmp_path / "notify")
    else:
        address = f"@graceful-async-test-{os.getpid()}-{id(request)}"
    result = Manager(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield result
    result.close()


def test_ready_then_stopping_with_the_time_needed(
    tmp_path: Path, backend: Backend, manager: Manager
) -> None:
    """READY=1 as main starts; at SIGTERM, STOPPING=1 and an extension covering the grace."""
    program = write_program(
        tmp_path,
        """
        async def main():
            say("READY")
            await anyio.sleep_forever()

        start(main, grace=7)
        """,
    )
    child = Child.start(program, backend, NOTIFY_SOCKET=manager.address)
    child.wait_for("READY")
    assert manager.wait_for("READY") == [{"READY": "1", "STATUS": "ready"}]
    child.send(signal.SIGTERM)
    (stopping,) = manager.wait_for("STOPPING")
    assert child.finish().returncode == 128 + signal.SIGTERM
    assert stopping["STOPPING"] == "1"
    assert stopping["STATUS"] == "stopping: SIGTERM"
    # The grace period left (just under 7 s) plus a second for the exit itself.
    assert 7_000_000 < int(stopping["EXTEND_TIMEOUT_USEC"]) <= 8_000_000
    assert manager.messages() == []


def test_ready_when_the_program_says_so(backend: Backend, manager: Manager) -> None:
    """With ready_on_start=False, READY=1 is sent by set_ready() and only once."""
    seen: list[list[dict[str, str]]] = []

    async def main() -> None:
        await anyio.sleep(0.05)
        seen.append(manager.messages())
        graceful_async.set_ready()
        graceful_async.set_ready()
        seen.append(manager.messages())

    backend.run(main, ready_on_start=False)
    assert seen == [[], [{"READY": "1", "STATUS": "ready"}]]
    # main returned: a stop systemd did not ask for is still announced, with no deadline.
    assert manager.messages() == [{"STOPPING": "1", "STATUS": "stopping: main returned"}]


def test_a_reload_is_announced_and_its_end_is_ready(backend: Backend, manager: Manager) -> None:
    """A reload sends RELOADING=1 with the monotonic time, then READY=1 once the hooks ran."""
    ran: list[list[dict[str, str]]] = []
    hook_ran = anyio.Event()

    def hook() -> None:
        ran.append(manager.messages())
        hook_ran.set()

    async def main() -> None:
        manager.messages()  # READY=1 from the start
        before = time.monotonic_ns() // 1000
        reload_hook = graceful_async.on_reload(hook)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            with anyio.fail_after(WAIT):
                await hook_ran.wait()
            (reloading,) = ran[0]
            assert reloading["RELOADING"] == "1"
            assert reloading["STATUS"] == "reloading"
            assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
            await anyio.sleep(0.05)
            assert manager.messages() == [{"READY": "1", "STATUS": "ready"}]
        finally:
            reload_hook.unregister()

    backend.run(main, reload_signal=signal.SIGHUP)
    assert len(ran) == 1


def test_no_reload_message_before_the_service_is_ready(backend: Backend, manager: Manager) -> None:
    """A reload while the service is still starting says nothing to systemd."""
    done = anyio.Event()

    async def main() -> None:
        reload_hook = graceful_async.on_reload(done.set)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            with anyio.fail_after(WAIT):
                await done.wait()
            await anyio.sleep(0.05)
            assert manager.messages() == []
        finally:
            reload_hook.unregister()

    backend.run(main, reload_signal=signal.SIGHUP, ready_on_start=False)


def test_watchdog_pings_come_from_the_loop(
    backend: Backend, manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCHDOG=1 at half WATCHDOG_USEC while the loop runs, and none while it is blocked."""
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    pings: dict[str, int] = {}

    def count() -> int:
        return sum("WATCHDOG" in message for message in manager.messages())

    async def main() -> None:
        await anyio.sleep(0.5)
        pings["running"] = count()
        time.sleep(0.5)  # noqa: ASYNC251 - the loop is blocked: no ping may be sent
        pings["blocked"] = count()
        await anyio.sleep(0.5)
        pings["running again"] = count()

    backend.run(main)
    # About ten in each half second while the loop runs; bounds loose enough for a busy
    # machine, and the blocked half second must have none at all.
    assert pings["running"] >= 2
    assert pings["blocked"] == 0
    assert pings["running again"] >= 2


@pytest.mark.parametrize(
    ("usec", "pid"),
    [("100000", "1"), ("", ""), ("0", ""), ("soon", "")],
    ids=["other-pid", "unset", "zero", "garbage"],
)
def test_no_watchdog_pings_unless_asked(
    backend: Backend, manager: Manager, monkeypatch: pytest.MonkeyPatch, usec: str, pid: str
) -> None:
    """No pings without a valid WATCHDOG_USEC, or when WATCHDOG_PID names another process."""
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.setenv("WATCHDOG_PID", pid)

    async def main() -> None:
        await anyio.sleep(0.3)

    backend.run(main)
    assert not any("WATCHDOG" in message for message in manager.messages())


def test_a_broken_notify_socket_is_reported_once_and_ignored(
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
) -> None:
    """Nobody listening on NOTIFY_SOCKET: one warning, and the service runs and stops."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-here"))

    async def main() -> str:
        graceful_async.set_ready()
        return "ok"

    assert backend.run(main) == "ok"
    warnings = [
        r.getMessage() for r in logs.records if "could not notify systemd" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "(READY=1)" in warnings[0]


@pytest.mark.parametrize("value", ["", "relative/path", "vsock:2:1234"])
def test_other_notify_addresses_are_left_alone(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture, value: str
) -> None:
    """An empty, relative or non-AF_UNIX NOTIFY_SOCKET is not ours to speak to."""
    monkeypatch.setenv("NOTIFY_SOCKET", value)

    async def main() -> None:
        graceful_async.set_ready()

    backend.run(main)
    assert not any("systemd" in r.getMessage() for r in logs.records)


def test_free_text_cannot_forge_or_break_a_message(backend: Backend, manager: Manager) -> None:
    """A reason with newlines or undecodable bytes stays inside its STATUS line."""
    reason = "deploy\nREADY=1\nMAINPID=1 " + os.fsdecode(b"app-\xff.toml")

    async def main() -> None:
        graceful_async.request_shutdown(reason, exit_code=3)
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as exc_info:
        backend.run(main)
    assert exc_info.value.code == 3
    messages = manager.messages()
    assert messages[0] == {"READY": "1", "STATUS": "ready"}
    (stopping,) = messages[1:]
    assert set(stopping) == {"STOPPING", "STATUS", "EXTEND_TIMEOUT_USEC"}
    assert stopping["STATUS"] == (
        "stopping: shutdown requested (deploy READY=1 MAINPID=1 app-\\udcff.toml)"
    )


def test_a_signal_after_main_returned_extends_the_stop(backend: Backend, manager: Manager) -> None:
    """systemd's SIGTERM during the hooks after main returned gets its extension too."""

    async def hook() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep(0.2)

    async def main() -> str:
        graceful_async.on_shutdown(hook)
        return "done"

    assert backend.run(main, grace=7) == "done"
    messages = manager.messages()
    assert messages[:2] == [
        {"READY": "1", "STATUS": "ready"},
        {"STOPPING": "1", "STATUS": "stopping: main returned"},
    ]
    (extension,) = messages[2:]
    assert 7_000_000 < int(extension["EXTEND_TIMEOUT_USEC"]) <= 8_000_000

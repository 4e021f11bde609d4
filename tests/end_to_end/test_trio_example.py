"""examples/trio_program.py, a plain trio program, stops the way its docstring says."""

from __future__ import annotations

import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from ..support.helpers import SIGINT_DEATH, WAIT, Backend, Child

EXAMPLE = Path(__file__).parents[2] / "examples" / "trio_program.py"
# The example is written for trio alone; Backend only supplies a clean environment.
TRIO = Backend("trio")


def start_example() -> tuple[Child, int]:
    """Start the example and wait until its echo server listens; return it and the port."""
    child = Child([sys.executable, str(EXAMPLE)], TRIO.env())
    child.wait_for("echo server on 127.0.0.1:", partial=True)
    found = re.search(r"127\.0\.0\.1:(\d+)", child.lines[-1])
    assert found is not None, child.lines
    return child, int(found[1])


def echo_round_trip(client: socket.socket, data: bytes) -> bytes:
    client.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = client.recv(len(data) - len(received))
        if not chunk:
            break
        received += chunk
    return received


@pytest.mark.parametrize(
    ("sig", "status", "final"),
    [
        (signal.SIGTERM, 128 + signal.SIGTERM, "exit status: 143"),
        (signal.SIGINT, SIGINT_DEATH, "exit status: death by SIGINT"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_trio_example_cleans_up_in_order(sig: signal.Signals, status: int, final: str) -> None:
    """With a client connected, a signal unwinds the nursery, then cleanup, then the hook."""
    child, port = start_example()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        # The server is real and its handler task is live, blocked on the connection.
        assert echo_round_trip(client, b"ping") == b"ping"
        child.send(sig)
        result = child.finish()
    assert result.returncode == status, result.stderr
    assert result.stderr == ""

    def index(text: str) -> int:
        return next(i for i, line in enumerate(result.lines) if text in line)

    assert (
        index(f"{sig.name} received, shutting down")
        < index("ticker stopped after")
        < index("main: cleanup done")
        < index("shutdown hook: goodbye")
    )
    assert result.lines[-1].endswith(final)

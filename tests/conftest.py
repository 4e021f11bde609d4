from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import settings

from .support.helpers import BACKENDS, SYSTEMD_VARIABLES, Backend

# The child programs must start with SIGINT's default action, as from a terminal. Run as a
# background job, the suite would have SIGINT ignored and pass that on to every child,
# which then keeps ignoring it, as it should. A Python-level handler is reset at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The property tests (tests/test_properties.py) draw new examples on every run; a failure
# prints the example and how to reproduce it. Enough examples by default to meet the
# awkward interleavings in a few seconds; `pytest --hypothesis-profile=thorough` digs on.
settings.register_profile("quick", max_examples=60)
settings.register_profile("thorough", max_examples=2000)
settings.load_profile("quick")


@pytest.fixture(params=BACKENDS, ids=[b.id for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend the runner supports: asyncio, asyncio+uvloop and trio."""
    result: Backend = request.param
    return result


@pytest.fixture(params=BACKENDS, ids=[b.id for b in BACKENDS])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """The same three backends for anyio's pytest plugin."""
    b: Backend = request.param
    return b.name, dict(b.options)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GRACEFUL_ASYNC_") or name in SYSTEMD_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture graceful_async's log records at INFO."""
    with caplog.at_level(logging.INFO, logger="graceful_async"):
        yield caplog


@pytest.fixture(autouse=True)
def _no_earlier_run() -> None:
    """Each test starts as if no run() had ended in this process before it."""
    from graceful_async import _shutdown

    _shutdown._ended = None

"""The signal handler itself: tiny, lock-free, silent, and effective even mid-bytecode."""

from __future__ import annotations

import gc
import signal
import sys
import types
import warnings
from typing import Any

import anyio
import pytest

import graceful_async

from .support.helpers import Backend


def test_handler_takes_no_locks_and_does_no_logging(backend: Backend) -> None:
    """Everything the handler calls is recorded: no logging, no locks, no loop calls."""
    calls: list[str] = []

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
        elif event == "c_call":
            calls.append(f"builtin:{getattr(arg, '__qualname__', repr(arg))}")

    async def main() -> None:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        previous = sys.getprofile()
        # A collection during the call would run the finalizers of unrelated garbage
        # (an earlier test's event loop, say) and put their calls in the record. Their
        # complaints (a socket an earlier test on this worker left open) are not ours.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        gc.disable()
        sys.setprofile(profile)
        try:
            handler(signal.SIGTERM, None)
        finally:
            sys.setprofile(previous)
            gc.enable()
        await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 143
    assert calls, "the profiler saw nothing"
    joined = "\n".join(calls)
    for forbidden in ("logging", "acquire", "__enter__", "threading", "call_soon", "asyncio"):
        assert forbidden not in joined, f"the handler reached {forbidden}:\n{joined}"
    # What it does do: hand the signal on with a byte on a non-blocking socket.
    assert "builtin:socket.send" in calls


def test_handler_ignores_a_closed_socket() -> None:
    """A late signal after run() closed its sockets is dropped, not raised."""
    from graceful_async._shutdown import ShutdownState

    state = ShutdownState(grace=1)
    state.close()
    state.signal_received(signal.SIGTERM)  # must not raise
    assert state.trigger is not None
    assert not graceful_async.shutdown_requested()

"""What every server integration needs from the runner: when to stop, and how long to drain.

A server under run() is one unit of work in flight for as long as it runs, and its own
shutdown (close the listener, let requests finish, run the lifespan shutdown) is how that
unit finishes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import final

import anyio

from .._lifecycle import Lifecycle
from .._log import logger
from .._scopes import in_flight, to_loop_clock
from .._shutdown import run_on_this_loop, wait_shutdown_requested


def check_running(server: str) -> Lifecycle:
    """The active run; a clear error when there is none on this thread."""
    run = run_on_this_loop()
    if run is None:
        raise RuntimeError(
            f"graceful_async.contrib.{server}.serve() runs the server under "
            "graceful_async.run(), which decides when it stops; call it from the program "
            "that run() is running, on its event loop"
        )
    return run


@final
class ServerLifetime:
    """Handed to the code that tells the server to stop; see `server_lifetime`."""

    def __init__(self, run: Lifecycle, scope: anyio.CancelScope, bounded: ExitStack) -> None:
        self._run = run
        self._scope = scope
        self._bounded = bounded

    async def wait_stop(self) -> float:
        """Wait until the drain phase begins, and return the seconds left in it.

        From then on the server's own shutdown is shielded from the cancellation of main's
        tree at the drain deadline, and bounded instead by the grace period: the drain
        time limits the requests in flight (the server cuts them off itself), and the
        lifespan shutdown that follows is cleanup, which must still run. A second signal
        cancels it at once.
        """
        await wait_shutdown_requested()
        state, scope = self._run.state, self._scope
        scope.shield = True
        scope.deadline = min(scope.deadline, to_loop_clock(state.soft_deadline))
        # From here on the runner pulls the deadline in and a second signal cancels it
        # (at once, if one came already).
        self._bounded.enter_context(self._run.bounded(scope))
        return max(0.0, state.drain_deadline - time.monotonic())


@asynccontextmanager
async def server_lifetime(run: Lifecycle) -> AsyncIterator[ServerLifetime]:
    """Run the block (the server) as work in flight, for the drain phase to wait for.

    The server counts as in flight from the start, not from the shutdown: the runner
    decides whether to drain at the moment it sees the trigger, before any task that
    waits for the shutdown has woken up, and with nothing in flight it cancels main's
    tree at once.
    """
    scope = anyio.CancelScope()
    with ExitStack() as bounded:
        async with in_flight():
            with scope:
                yield ServerLifetime(run, scope, bounded)
    if scope.cancelled_caught:
        logger.warning("the server's shutdown was cut off (grace period over, or a second signal)")

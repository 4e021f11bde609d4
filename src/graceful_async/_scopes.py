"""cleanup_scope(), a shielded and bounded block for ``finally`` clauses; in_flight()."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, final

import anyio

from ._log import logger
from ._shutdown import current_state, run_on_this_loop

if TYPE_CHECKING:
    from ._shutdown import ShutdownState


def check_timeout(timeout: object) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be None or a finite number of seconds >= 0, got {timeout!r}")
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(
            f"timeout must be None or a finite number of seconds >= 0, got {timeout!r}"
        )


def loop_deadline(seconds: float) -> float:
    """Turn "seconds from now" into a deadline on the running loop's clock."""
    return math.inf if math.isinf(seconds) else anyio.current_time() + seconds


def to_loop_clock(monotonic_deadline: float) -> float:
    """Turn a time.monotonic() deadline into one on the loop's clock (trio's differs)."""
    return loop_deadline(monotonic_deadline - time.monotonic())


@contextmanager
def cleanup_scope(timeout: float | None = None) -> Iterator[anyio.CancelScope]:
    """Shield a block, typically a ``finally`` clause, from the shutdown cancellation.

    anyio's cancellation is level-triggered: once main's task tree is cancelled, every
    ``await`` in a ``finally`` clause raises again at once, so asynchronous cleanup never
    happens. Inside ``cleanup_scope()`` it runs, bounded by ``min(timeout, time left in
    the grace period)``, and is cancelled at once by a second signal.

    Args:
        timeout: Seconds the block may take at most, or None for "as long as the grace
            period allows".

    Yields:
        The anyio `CancelScope`; its ``cancelled_caught`` tells whether the block was cut.

    Raises:
        TypeError: If ``timeout`` is not a number.
        ValueError: If ``timeout`` is negative or not finite.

    Example:
        ```python
        try:
            await serve(conn)
        finally:
            with graceful_async.cleanup_scope(timeout=2):
                await conn.send_goodbye()
        ```
    """
    check_timeout(timeout)
    started = time.monotonic()
    with bounded_scope(math.inf if timeout is None else float(timeout)) as scope:
        yield scope
    if scope.cancelled_caught:
        logger.warning("cleanup scope cut off after %.2f s", time.monotonic() - started)


@contextmanager
def bounded_scope(seconds: float = math.inf) -> Iterator[anyio.CancelScope]:
    """A shielded scope that ends by ``seconds`` and by the shutdown's soft deadline.

    While a run() is active the scope is registered with it: its deadline is pulled in
    when the shutdown starts, and a second signal cancels it at once.
    """
    run = run_on_this_loop()
    if run is not None:
        seconds = min(seconds, run.state.time_left())
    scope = anyio.CancelScope(shield=True, deadline=loop_deadline(seconds))
    if run is None:
        with scope:
            yield scope
        return
    with run.bounded(scope), scope:
        yield scope


@final
class in_flight:
    """Mark a unit of work that the drain phase lets finish.

    Once the shutdown begins, main's task tree keeps running until nothing is in flight
    any more, or until the drain time (``run(drain=...)``) is up; only then is it
    cancelled. Work still in flight at that point is cancelled like everything else, and
    its ``finally`` clauses run. Nothing here shields the block: it only counts.

    Use it with ``async with`` in tasks, or with plain ``with`` in threads (for example
    in a function run by `anyio.to_thread.run_sync`). Outside `graceful_async.run()` it
    does nothing.

    Example:
        ```python
        async def handle(request):
            async with graceful_async.in_flight():
                await charge_card(request)
                await send_receipt(request)
        ```
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: ShutdownState | None = None

    def __enter__(self) -> None:
        if self._state is not None:
            raise RuntimeError("this in_flight() is already entered; use one per block")
        state = current_state()
        if state is not None:
            state.in_flight.add(self)
            self._state = state

    def __exit__(self, *exc_info: object) -> None:
        state, self._state = self._state, None
        if state is not None:
            state.work_done(self)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

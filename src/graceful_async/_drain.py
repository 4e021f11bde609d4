"""drain(): iterate over a source of work, taking nothing new once the shutdown begins."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from ._shutdown import ShutdownState, current_state

T = TypeVar("T")


def drain(source: AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate over ``source`` until it ends or the shutdown begins, losing no item.

    Each item counts as in flight (see `in_flight`) from the moment it is handed out
    until the loop asks for the next one, so the drain phase lets it finish. Once the
    shutdown has begun, no further item is taken and the loop ends normally; a wait for
    the next item is cancelled. An item is either handed out, or it stays in the source.

    That guarantee needs a source whose wait for the next item is safe to cancel: anyio's
    memory object streams (and every anyio receive stream) are, as are
    ``asyncio.Queue.get`` and trio's channels. An async generator that is waiting on
    something when the shutdown begins is cancelled there, like any other task.

    If the loop body breaks out or raises, the item in hand stops counting when the
    iterator is dropped, which CPython does as the loop ends.

    Outside `graceful_async.run()` this is a plain pass-through.

    Args:
        source: An async iterable, such as an anyio `MemoryObjectReceiveStream`.

    Returns:
        An async iterator over the items of ``source``.

    Raises:
        TypeError: If ``source`` is not an async iterable.

    Example:
        ```python
        async for job in graceful_async.drain(jobs):
            await handle(job)  # finishes even if SIGTERM arrives meanwhile
        ```
    """
    if not isinstance(source, AsyncIterable):
        raise TypeError(
            f"source must be an async iterable (such as an anyio memory object receive "
            f"stream), got {source!r}"
        )
    return _Drain(source)


class _Unit:
    """The in-flight token of one drain() loop: at most one item in hand at a time."""

    __slots__ = ()


class _Drain(AsyncIterator[T]):
    # A class with __anext__ rather than an async generator: a generator must not yield
    # inside a cancel scope, and the wait for the next item needs one. The per-item cost
    # matters (it is benchmarked), so the common case takes no cancel scope at all.

    def __init__(self, source: AsyncIterable[T]) -> None:
        self._stream: MemoryObjectReceiveStream[T] | None = None
        self._iterator: AsyncIterator[T] | None = None
        if isinstance(source, MemoryObjectReceiveStream):
            self._stream = source
        else:
            self._iterator = aiter(source)
        self._unit = _Unit()
        self._holder: ShutdownState | None = None

    def __aiter__(self) -> _Drain[T]:
        return self

    async def __anext__(self) -> T:
        self._release()
        state = current_state()
        if state is not None and state.trigger is not None:
            raise StopAsyncIteration
        stream = self._stream
        if stream is not None:
            # The fast path: an item already buffered is taken with no await between
            # taking it and handing it out, so it cannot be lost to a cancellation.
            await anyio.lowlevel.checkpoint()
            if state is not None and state.trigger is not None:
                raise StopAsyncIteration
            try:
                item = stream.receive_nowait()
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                raise StopAsyncIteration from None
            else:
                return self._hand_out(state, item)
        return await self._wait_for_item(state)

    async def _wait_for_item(self, state: ShutdownState | None) -> T:
        if state is None:
            return await self._next()
        scope = anyio.CancelScope()
        # Register before the last look at the trigger: the loop cancels every
        # registered wait when it applies the trigger, which it can only do while we
        # await below, so a trigger either shows up here or cancels the wait.
        state.item_waits.add(scope)
        try:
            if state.trigger is not None:  # pragma: no cover - a signal between bytecodes
                raise StopAsyncIteration
            with scope:
                # If the source hands out an item even though the scope was cancelled
                # meanwhile, the item is ours: it is handed out, never dropped.
                return self._hand_out(state, await self._next())
        except anyio.get_cancelled_exc_class():
            if not scope.cancel_called:
                raise
            # With nothing in flight, main's tree is cancelled in the same breath as
            # this wait, and trio then lets the outer cancellation through our scope.
            # The loop still ends normally, on every backend; cancellation is
            # level-triggered, so the tree's cancellation hits the next await anyway.
        finally:
            state.item_waits.discard(scope)
            state.work_done(scope)  # in flight if the loop cancelled the wait
        raise StopAsyncIteration  # the wait was cancelled: the shutdown has begun

    async def _next(self) -> T:
        if self._stream is not None:
            try:
                return await self._stream.receive()
            except anyio.EndOfStream:
                raise StopAsyncIteration from None
        assert self._iterator is not None
        return await anext(self._iterator)

    def _hand_out(self, state: ShutdownState | None, item: T) -> T:
        if state is not None:
            state.in_flight.add(self._unit)
            self._holder = state
        return item

    def _release(self) -> None:
        state, self._holder = self._holder, None
        if state is not None:
            state.work_done(self._unit)

    def __del__(self) -> None:
        self._release()

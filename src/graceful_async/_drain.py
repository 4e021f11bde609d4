"""drain(): iterate over a source of work, taking nothing new once the shutdown begins."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, TypeVar, final

# `import anyio` alone: it loads its submodules (anyio.lowlevel too) on first use, while
# importing one here, such as anyio.streams.memory, would load anyio's core at import.
import anyio

from ._shutdown import ShutdownState, run_on_this_loop

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from ._lifecycle import Lifecycle

T = TypeVar("T")


class _Unit:
    """The in-flight token of one item handed out."""

    __slots__ = ()


@final
class drain(AsyncIterator[T]):  # lower case: used like a function, as in_flight is
    """Iterate over ``source`` until it ends or the shutdown begins, losing no item.

    Each item counts as in flight (see `in_flight`) from the moment it is handed out
    until the loop asks for the next one, so the drain phase lets it finish. Once the
    shutdown has begun, no further item is taken and the loop ends normally; a wait for
    the next item is cancelled. An item is either handed out, or it stays in the source.

    That guarantee needs a source whose wait for the next item is safe to cancel: anyio's
    memory object streams (and every anyio receive stream) are, as are
    ``asyncio.Queue.get`` and trio's channels. An async generator that is waiting on
    something when the shutdown begins is cancelled there, like any other task.

    Several tasks may share one ``drain()``; each task's item in hand is its own. If a
    loop body breaks out or raises, its item stops counting when the iterator is
    dropped (CPython drops it as the loop ends) or closed with `aclose`. Anyio memory
    object streams take a fast path; other sources cost a cancel scope per item (see
    the benchmarks).

    Outside `graceful_async.run()` this is a plain pass-through.

    Args:
        source: An async iterable, such as an anyio `MemoryObjectReceiveStream`.

    Raises:
        TypeError: If ``source`` is not an async iterable.

    Example:
        ```python
        async for job in graceful_async.drain(jobs):
            await handle(job)  # finishes even if SIGTERM arrives meanwhile
        ```
    """

    # A class with __anext__ rather than an async generator: a generator must not yield
    # inside a cancel scope, and the wait for the next item needs one. The per-item cost
    # matters (it is benchmarked), so the common case takes no cancel scope at all.
    #
    # Several tasks may share one iterator (anyio streams allow concurrent receivers),
    # so the item in hand is tracked per task: a task asking for its next item releases
    # its own previous one, never another task's.

    def __init__(self, source: AsyncIterable[T]) -> None:
        if not isinstance(source, AsyncIterable):
            raise TypeError(
                f"source must be an async iterable (such as an anyio memory object "
                f"receive stream), got {source!r}"
            )
        from anyio.streams.memory import MemoryObjectReceiveStream  # deferred, see the top

        self._source = source
        self._stream: MemoryObjectReceiveStream[T] | None = None
        self._iterator: AsyncIterator[T] | None = None
        if isinstance(source, MemoryObjectReceiveStream):
            self._stream = source
        else:
            self._iterator = aiter(source)
        self._state: ShutdownState | None = None  # the run the held items count in
        self._held: dict[object, _Unit] = {}  # task -> the unit of the item it holds

    def __aiter__(self) -> drain[T]:
        return self

    async def __anext__(self) -> T:
        run = run_on_this_loop()
        state, task = (None, None) if run is None else (run.state, run.current_task())
        stream = self._stream
        if stream is not None:
            # Keep the previous item counted across this checkpoint: if the drain phase
            # ended while we wait here, main's tree would be cancelled under us.
            try:
                await anyio.lowlevel.checkpoint()
            except anyio.get_cancelled_exc_class():
                self._release(task)
                if state is None or not state.stopping:
                    raise
                # Level-triggered: the tree's cancellation hits the next await anyway;
                # the loop itself ends normally, as it does on every other path.
                raise StopAsyncIteration from None
        self._release(task)
        if state is not None and state.stopping:
            raise StopAsyncIteration
        if stream is not None:
            # The fast path: an item already buffered is taken with no await between
            # taking it and handing it out, so it cannot be lost to a cancellation.
            try:
                item = stream.receive_nowait()
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                raise StopAsyncIteration from None
            else:
                return self._hand_out(state, task, item)
        return await self._wait_for_item(run, task)

    async def _wait_for_item(self, run: Lifecycle | None, task: object) -> T:
        if run is None:
            return await self._next()
        state = run.state
        scope = anyio.CancelScope()
        # Register before the last look at the trigger: the loop cancels every
        # registered wait when it applies the trigger, which it can only do while we
        # await below, so a trigger either shows up here or cancels the wait.
        run.item_waits.add(scope)
        try:
            if state.stopping:  # a signal between bytecodes
                raise StopAsyncIteration
            with scope:
                # If the source hands out an item even though the scope was cancelled
                # meanwhile, the item is ours: it is handed out, never dropped.
                return self._hand_out(state, task, await self._next())
        except anyio.get_cancelled_exc_class():
            if not scope.cancel_called:
                raise
            # With nothing in flight, main's tree is cancelled in the same breath as
            # this wait, and trio then lets the outer cancellation through our scope.
            # The loop still ends normally, on every backend; cancellation is
            # level-triggered, so the tree's cancellation hits the next await anyway.
        finally:
            run.item_waits.discard(scope)
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

    def _hand_out(self, state: ShutdownState | None, task: object, item: T) -> T:
        if state is not None:
            unit = _Unit()
            state.in_flight.add(unit)
            self._held[task] = unit
            self._state = state
        return item

    def _release(self, task: object) -> None:
        unit = self._held.pop(task, None)
        if unit is not None and self._state is not None:
            self._state.work_done(unit)

    def _release_all(self) -> None:
        state, held = self._state, self._held
        while held:
            _, unit = held.popitem()
            if state is not None:
                state.work_done(unit)

    async def aclose(self) -> None:
        """Stop counting the items in hand as in flight, and close the source.

        Use it (through `contextlib.aclosing`) when the source is an async generator
        whose cleanup must run now, not whenever it is garbage collected.
        """
        self._release_all()
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()

    def __del__(self) -> None:
        # __init__ may have failed before _held existed.
        if hasattr(self, "_held"):
            self._release_all()

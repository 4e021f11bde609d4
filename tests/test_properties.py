"""Properties of the shutdown hooks and of the drain accounting, for any interleaving.

Each test draws a whole scenario (who registers or unregisters which hook when, how many
items a source holds and how long each takes, when the shutdown comes), runs it with
`run_service` on the test's own event loop, and checks the result against a model built
from the documentation. The in-flight count is read from the run's private state.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from hypothesis import given, settings
from hypothesis import strategies as st

import graceful_async
from graceful_async import _hooks
from graceful_async._shutdown import ShutdownState, current_state
from graceful_async.testing import ServiceResult, run_service

pytestmark = pytest.mark.anyio

# How many examples: see the profiles in conftest.py. No deadline: the machine is
# shared, and its timing says nothing about the properties.
EXAMPLES = settings(deadline=None)

# An example takes milliseconds. This only bounds a hang, so that it fails the one
# example (which hypothesis then shrinks) instead of the whole test by its timeout.
HANG = 10.0


class _Boom(Exception):
    """Raised by a hook, a block or main on purpose."""


class _Leaked(Exception):
    """Raised when the last task is done and work still counts as in flight."""


def _check_nothing_left_in_flight(state: ShutdownState) -> None:
    """Called as the last task ends, when nothing may be in flight any more.

    Raises at once if something is: main then fails, which ends the run, rather than
    leave the drain phase to wait out its time for a unit that no one will finish.
    """
    if state.in_flight:
        raise _Leaked(f"{len(state.in_flight)} unit(s) in flight once every task is done")


def _state() -> ShutdownState:
    state = current_state()
    assert state is not None
    return state


async def _checkpoints(count: int) -> None:
    for _ in range(count):
        await anyio.lowlevel.checkpoint()


# --- shutdown hooks

HookKind = Literal["sync", "async", "raises", "unregisters", "registers"]


@dataclass(frozen=True)
class Register:
    """Register a new hook; an "unregisters" hook unregisters registration ``target``."""

    kind: HookKind
    target: int


@dataclass(frozen=True)
class Again:
    """Register the function (and name) of registration ``target`` once more."""

    target: int


@dataclass(frozen=True)
class Unregister:
    """Unregister registration ``target``, which may be unregistered already."""

    target: int


@dataclass(frozen=True)
class Pause:
    """A checkpoint, so that the other tasks register meanwhile."""


HookOp = Register | Again | Unregister | Pause

_targets = st.integers(min_value=0, max_value=20)
_hook_ops = st.one_of(
    st.builds(
        Register,
        st.sampled_from(["sync", "async", "raises", "unregisters", "registers"]),
        _targets,
    ),
    st.builds(Again, _targets),
    st.builds(Unregister, _targets),
    st.just(Pause()),
)


@dataclass
class Registration:
    """One on_shutdown() call: the hook's name, what it does, and its handle."""

    name: str
    kind: HookKind
    target: int
    fn: Callable[[], Any]
    handle: graceful_async.ShutdownHook[Any]


@dataclass
class HookBook:
    """What the scenario did, as it did it, and what the hooks did when they ran."""

    registrations: list[Registration] = field(default_factory=list)
    unregistered: set[int] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def target(self, index: int) -> int | None:
        return index % len(self.registrations) if self.registrations else None

    def apply(self, op: HookOp) -> None:
        if isinstance(op, Register):
            self._register(op)
        elif isinstance(op, Again) and (t := self.target(op.target)) is not None:
            earlier = self.registrations[t]
            handle = graceful_async.on_shutdown(earlier.fn, name=earlier.name)
            self.registrations.append(
                Registration(earlier.name, earlier.kind, earlier.target, earlier.fn, handle)
            )
        elif isinstance(op, Unregister) and (t := self.target(op.target)) is not None:
            self.registrations[t].handle.unregister()
            self.unregistered.add(t)

    def _register(self, op: Register) -> None:
        name = f"hook {len(self.registrations)}"
        calls, registrations = self.calls, self.registrations
        fn: Callable[[], Any]
        if op.kind == "async":

            async def fn() -> None:
                await anyio.lowlevel.checkpoint()
                calls.append(name)

        else:

            def fn() -> None:
                calls.append(name)
                if op.kind == "raises":
                    raise _Boom(name)
                if op.kind == "unregisters":
                    registrations[op.target % len(registrations)].handle.unregister()
                if op.kind == "registers":
                    try:
                        graceful_async.on_shutdown(pytest.fail, "registered too late")
                    except RuntimeError:
                        self.refused.append(name)

        handle = graceful_async.on_shutdown(fn, name=name)
        registrations.append(Registration(name, op.kind, op.target, fn, handle))

    def expected_runs(self) -> list[Registration]:
        """The documented hook phase: last registered first, each at most once, and an
        unregistered hook (even one unregistered by an earlier hook) never runs."""
        pending = [i for i in range(len(self.registrations)) if i not in self.unregistered]
        ran = []
        while pending:
            hook = self.registrations[pending.pop()]
            ran.append(hook)
            if hook.kind == "unregisters":
                target = hook.target % len(self.registrations)
                if target in pending:
                    pending.remove(target)
        return ran


def _forget_registered_hooks() -> None:
    """Start each example with no hook left over from a failed one."""
    while _hooks._registry.take_last() is not None:
        pass


@EXAMPLES
@given(
    before=st.lists(_hook_ops, max_size=4),
    tasks=st.lists(st.lists(_hook_ops, max_size=8), min_size=1, max_size=3),
    end=st.sampled_from(["return", "request", "signal", "error"]),
)
async def test_hooks_run_last_registered_first_once_each_unless_unregistered(
    before: list[HookOp], tasks: list[list[HookOp]], end: str
) -> None:
    """Any interleaving of registrations and unregistrations, however main ends: the hooks
    still registered run once each, last registered first, and never again."""
    _forget_registered_hooks()
    book = HookBook()
    for op in before:  # no run() is active yet: these wait for the next one
        book.apply(op)
    registered = anyio.Event()

    async def task(ops: list[HookOp]) -> None:
        for op in ops:
            if isinstance(op, Pause):
                await anyio.lowlevel.checkpoint()
            else:
                book.apply(op)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for ops in tasks:
                tg.start_soon(task, ops)
        registered.set()
        if end == "error":
            raise _Boom("main failed")
        if end == "request":
            graceful_async.request_shutdown()
        if end != "return":
            await anyio.sleep_forever()

    with anyio.fail_after(HANG):
        async with run_service(main, grace=HANG / 2) as service:
            if end == "signal":
                await registered.wait()
                service.send_signal(signal.SIGTERM)

    expected = book.expected_runs()
    names = [hook.name for hook in expected]
    assert service.result.hooks_run == tuple(names)
    assert book.calls == names
    failed = [hook.name for hook in expected if hook.kind == "raises"]
    assert service.result.hooks_failed == tuple(failed)
    assert book.refused == [hook.name for hook in expected if hook.kind == "registers"]

    async def nothing() -> None:
        pass

    with anyio.fail_after(HANG):
        async with run_service(nothing) as again:
            pass
    assert again.result.hooks_run == ()
    assert book.calls == names


# --- drain(): every item handed out once and let finish, none lost, none after the stop

StopKind = Literal["none", "consumer", "producer", "signal", "thread"]


@dataclass(frozen=True)
class Stop:
    """When the shutdown comes.

    ``none``: never; the source ends. ``consumer``: while the ``at``-th item handed out
    is processed, at its step ``step``. ``producer``: once ``at`` items are in the source.
    ``signal`` and ``thread``: a SIGTERM from the test, or `request_shutdown` from
    another thread, after ``at`` checkpoints of the test's own.
    """

    kind: StopKind
    at: int
    step: int


@dataclass(frozen=True)
class Consumer:
    """A drain() loop: each item takes ``steps[i % len(steps)]`` checkpoints, and after
    its ``leave_after``-th item (if any) the loop body breaks out or raises."""

    steps: tuple[int, ...]
    leave_after: int | None
    leave_by: Literal["break", "raise"]


SourceKind = Literal["stream", "iterable", "generator"]


@dataclass(frozen=True)
class DrainScenario:
    """Items 0, 1, ... in a source: a memory stream (``buffer`` items, ``prefill`` of them
    sent before main starts, then one every ``pauses`` checkpoints), an async iterable
    over it, or an async generator; drain() loops that each own a drain() or share one."""

    source: SourceKind
    items: int
    buffer: int
    prefill: int
    pauses: tuple[int, ...]
    shared: bool
    consumers: tuple[Consumer, ...]
    stop: Stop


@st.composite
def drain_scenarios(draw: st.DrawFn) -> DrainScenario:
    source: SourceKind = draw(st.sampled_from(["stream", "iterable", "generator"]))
    items = draw(st.integers(min_value=0, max_value=12))
    buffer = draw(st.integers(min_value=0, max_value=items))
    # An async generator serves one task at a time; one shared drain() cannot be left
    # early by one of its loops without dropping it for the others.
    single = source == "generator"
    shared = not single and draw(st.booleans())
    leaves = not shared and draw(st.booleans())
    consumers = draw(
        st.lists(
            st.builds(
                Consumer,
                st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple),
                st.integers(0, max(items - 1, 0)) if leaves else st.none(),
                st.sampled_from(["break", "raise"]),
            ),
            min_size=1,
            max_size=1 if single else 3,
        )
    )
    kinds: list[StopKind] = ["none", "producer", "signal", "thread"]
    if items:
        kinds.append("consumer")
    kind = draw(st.sampled_from(kinds))
    # The moment must come: the item handed out, the number of items in the source, or
    # the test's own checkpoints.
    last = {"none": 0, "consumer": items - 1, "producer": items}.get(kind, 20)
    return DrainScenario(
        source=source,
        items=items,
        buffer=buffer,
        prefill=draw(st.integers(0, buffer)) if source != "generator" else 0,
        pauses=tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))),
        shared=shared,
        consumers=tuple(consumers),
        stop=Stop(kind, draw(st.integers(0, last)), draw(st.integers(0, 3))),
    )


class _StreamSource:
    """An async iterable over a memory stream that is not one: drain() takes its general
    path, with a cancel scope around each wait."""

    def __init__(self, stream: MemoryObjectReceiveStream[int]) -> None:
        self._stream = stream

    def __aiter__(self) -> _StreamSource:
        return self

    async def __anext__(self) -> int:
        try:
            return await self._stream.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class _Leave(Exception):
    """Raised by a loop body to leave its drain() loop."""


@dataclass
class DrainBook:
    """What happened, noted as it happened."""

    tried: int = -1  # the last item the producer began to put into the source
    sent: list[int] = field(default_factory=list)  # items now in the source for sure
    taken: dict[int, list[int]] = field(default_factory=dict)  # by consumer
    handled: dict[int, list[int]] = field(default_factory=dict)  # processed to the end
    after_stop: list[int] = field(default_factory=list)  # taken after the loop saw it
    looks: list[tuple[int, int]] = field(default_factory=list)  # (in body, in flight)
    in_body: int = 0
    ended_normally: set[int] = field(default_factory=set)
    live: int = 0
    in_flight_at_end: int | None = None


async def _run_drain_scenario(s: DrainScenario) -> tuple[DrainBook, list[int], ServiceResult]:
    """Run the scenario; return the book, the items left in the source, and the result."""
    book = DrainBook()
    stop = s.stop
    send, receive = anyio.create_memory_object_stream[int](s.buffer)
    with send, receive:
        for i in range(s.prefill):
            book.tried = i
            send.send_nowait(i)
            book.sent.append(i)
        main = _drain_main(s, book, send, receive)
        with anyio.fail_after(HANG):
            async with run_service(main, grace=20, drain=HANG / 2) as service:
                if stop.kind in ("signal", "thread"):
                    await _checkpoints(stop.at)
                    if stop.kind == "signal":
                        service.send_signal(signal.SIGTERM)
                    else:
                        await anyio.to_thread.run_sync(graceful_async.request_shutdown)
        left = []
        while True:
            try:
                left.append(receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
    return book, left, service.result


def _drain_main(
    s: DrainScenario,
    book: DrainBook,
    send: MemoryObjectSendStream[int],
    receive: MemoryObjectReceiveStream[int],
) -> Callable[[], Any]:
    """The scenario's main: a producer (or a generator) and the drain() loops."""
    stop = s.stop
    taken_so_far = 0

    def maybe_stop_in_source(count: int) -> None:
        # Once ``stop.at`` items are in the source; if fewer were prefilled, at once.
        if stop.kind == "producer" and count == max(stop.at, s.prefill):
            graceful_async.request_shutdown()

    async def produce() -> None:
        for i in range(s.prefill, s.items):
            maybe_stop_in_source(i)
            book.tried = i
            await send.send(i)
            book.sent.append(i)
            await _checkpoints(s.pauses[i % len(s.pauses)])
        maybe_stop_in_source(s.items)
        if stop.kind == "none":
            send.close()
        else:
            await anyio.sleep_forever()

    async def generate() -> AsyncIterator[int]:
        for i in range(s.items):
            maybe_stop_in_source(i)
            await _checkpoints(s.pauses[i % len(s.pauses)])
            book.tried = i
            book.sent.append(i)
            yield i
        maybe_stop_in_source(s.items)
        if stop.kind != "none":
            await anyio.sleep_forever()

    async def process(index: int, steps: int) -> None:
        """Work on the ``index``-th item handed out for ``steps`` checkpoints."""
        state = _state()
        stop_at_step = None
        if stop.kind == "consumer" and index == stop.at:
            stop_at_step = min(stop.step, steps)
        book.in_body += 1
        try:
            for step in range(steps + 1):
                if step == stop_at_step:
                    graceful_async.request_shutdown()
                book.looks.append((book.in_body, len(state.in_flight)))
                if step < steps:
                    await anyio.lowlevel.checkpoint()
        finally:
            book.in_body -= 1

    async def consume(c: int, source: Any, shared: graceful_async.drain[int] | None) -> None:
        nonlocal taken_so_far
        plan = s.consumers[c]
        taken, handled = book.taken[c], book.handled[c]
        # Whether the shutdown had begun when the loop asked for its next item (nothing
        # awaits between this look and the asking): if so, it must get none.
        stopping = graceful_async.shutdown_requested()
        try:
            # A loop's own drain() is referenced by the loop alone, which drops it as
            # the loop ends, however it ends.
            async for item in shared or graceful_async.drain(source):
                index, taken_so_far = taken_so_far, taken_so_far + 1
                taken.append(item)
                if stopping:
                    book.after_stop.append(item)
                await process(index, plan.steps[(len(taken) - 1) % len(plan.steps)])
                handled.append(item)
                stopping = graceful_async.shutdown_requested()
                if plan.leave_after == len(taken) - 1:
                    if plan.leave_by == "break":
                        break
                    raise _Leave
            else:
                book.ended_normally.add(c)
        except _Leave:
            pass
        finally:
            book.live -= 1
            if not book.live:  # the last loop is over
                book.in_flight_at_end = len(_state().in_flight)
                _check_nothing_left_in_flight(_state())

    async def main() -> None:
        async with AsyncExitStack() as stack:
            source: Any = receive
            if s.source == "iterable":
                source = _StreamSource(receive)
            elif s.source == "generator":
                source = await stack.enter_async_context(aclosing(generate()))
            shared = graceful_async.drain(source) if s.shared else None
            async with anyio.create_task_group() as tg:
                if s.source != "generator":
                    tg.start_soon(produce)
                async with anyio.create_task_group() as loops:
                    for c in range(len(s.consumers)):
                        book.taken[c], book.handled[c] = [], []
                        book.live += 1
                        loops.start_soon(consume, c, source, shared)
                # Every loop is over.
                if stop.kind == "none":
                    tg.cancel_scope.cancel()  # a producer may wait on a stream no one reads
                    return
                if stop.kind in ("consumer", "producer"):
                    # In case the loops left before the planned moment came.
                    graceful_async.request_shutdown()
                await anyio.sleep_forever()  # until the shutdown cancels the tree

    return main


@EXAMPLES
@given(drain_scenarios())
async def test_drain_hands_out_each_item_once_and_lets_it_finish(s: DrainScenario) -> None:
    """Whatever the source, timing and shutdown moment: each item is handed out at most
    once and processed to its end, or stays in the source; none is lost; none is handed
    out to a loop that saw the shutdown; the in-flight count is one per item in hand."""
    book, left, result = await _run_drain_scenario(s)

    assert book.in_flight_at_end == 0
    assert not result.forced
    assert result.error is None
    assert result.exit_status == (143 if s.stop.kind == "signal" else 0)
    # Each item in hand was processed to its end: the drain phase waited for it.
    assert book.handled == book.taken
    taken = [item for c in sorted(book.taken) for item in book.taken[c]]
    # Nothing lost, nothing twice: the items handed out and those still in the source
    # are exactly a prefix of what the source held, and it handed out the first ones.
    seen = taken + left
    assert sorted(seen) == list(range(len(seen)))
    assert not taken or not left or max(taken) < min(left)
    assert set(book.sent) <= set(seen)
    assert len(seen) <= book.tried + 1
    if s.source == "generator":
        assert taken == book.sent  # an item the generator yielded is never dropped
    # A loop that asked for an item once the shutdown had begun got none, and each loop
    # that did not leave on its own ended normally, whatever ended it.
    assert book.after_stop == []
    for c, plan in enumerate(s.consumers):
        left_early = plan.leave_after is not None and len(book.taken[c]) > plan.leave_after
        assert left_early or c in book.ended_normally
    # The in-flight count: one unit per item in hand, per task.
    for in_body, in_flight in book.looks:
        if len(s.consumers) == 1:
            assert in_flight == in_body == 1
        else:
            assert in_body <= in_flight <= len(s.consumers)


# --- in_flight(): counted exactly under nesting, exceptions and cancellation


@dataclass(frozen=True)
class Step:
    """A checkpoint, then a look at the in-flight count."""


@dataclass(frozen=True)
class Request:
    """request_shutdown(): the drain phase begins (the first time)."""


@dataclass(frozen=True)
class Reenter:
    """Enter the innermost block's in_flight() object again while it is entered."""


@dataclass(frozen=True)
class Block:
    """An in_flight() block (``async with`` or plain ``with``) around ``body``, left
    normally, by an exception or by a cancellation of its own; ``uses`` times in a row
    with the same object."""

    body: tuple[BlockOp, ...]
    ends: Literal["normally", "raising", "cancelled"]
    sync: bool
    uses: int


BlockOp = Step | Request | Reenter | Block


def _blocks_around(ops: st.SearchStrategy[BlockOp]) -> st.SearchStrategy[BlockOp]:
    return st.builds(
        Block,
        st.lists(ops, max_size=4).map(tuple),
        st.sampled_from(["normally", "raising", "cancelled"]),
        st.booleans(),
        st.integers(1, 2),
    )


_block_ops = st.recursive(
    st.sampled_from([Step(), Step(), Request(), Reenter()]), _blocks_around, max_leaves=12
)


@dataclass
class FlightBook:
    """What happened, noted as it happened."""

    open: int = 0  # the blocks entered and not yet left, by the test's own count
    looks: list[tuple[int, int]] = field(default_factory=list)  # (open, in flight)
    cut: list[str] = field(default_factory=list)  # blocks the drain phase cancelled
    live: int = 0
    in_flight_at_end: int | None = None


async def _run_ops(
    ops: tuple[BlockOp, ...], book: FlightBook, unit: graceful_async.in_flight | None
) -> None:
    state = _state()

    def look() -> None:
        book.looks.append((book.open, len(state.in_flight)))

    for op in ops:
        if isinstance(op, Step):
            await anyio.lowlevel.checkpoint()
            look()
        elif isinstance(op, Request):
            graceful_async.request_shutdown()
        elif isinstance(op, Reenter):
            if unit is not None:
                with pytest.raises(RuntimeError, match="already entered"):
                    unit.__enter__()
                look()
        else:
            block = graceful_async.in_flight()
            for _ in range(op.uses):
                await _run_block(op, block, book)
                look()


async def _run_block(op: Block, unit: graceful_async.in_flight, book: FlightBook) -> None:
    # Entered before the drain phase ended, the block must never see the shutdown's
    # cancellation: the phase lasts until nothing is in flight (the drain time is long).
    entered_while = _state().phase
    own = anyio.CancelScope()

    async def body() -> None:
        book.open += 1
        try:
            await _run_ops(op.body, book, unit)
            if op.ends == "raising":
                raise _Boom
            if op.ends == "cancelled":
                own.cancel()
                await anyio.lowlevel.checkpoint()
        finally:
            book.open -= 1

    try:
        with own:
            if op.sync:
                with unit:
                    await body()
            else:
                async with unit:
                    await body()
    except _Boom:
        pass
    except anyio.get_cancelled_exc_class():
        if entered_while.value in ("running", "draining"):
            book.cut.append(entered_while.value)
        raise


@EXAMPLES
@given(tasks=st.lists(st.lists(_block_ops, max_size=4), min_size=1, max_size=3))
async def test_in_flight_counts_each_open_block_and_the_drain_waits_for_them(
    tasks: list[list[BlockOp]],
) -> None:
    """Nested, concurrent, left by an exception or a cancellation: the in-flight count
    is always the number of blocks open, zero at the end, and the drain phase cancels
    no block that was entered before it ended."""
    book = FlightBook()

    async def task(ops: list[BlockOp]) -> None:
        try:
            await _run_ops(tuple(ops), book, None)
        finally:
            book.live -= 1
            if not book.live:
                book.in_flight_at_end = len(_state().in_flight)
                _check_nothing_left_in_flight(_state())

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for ops in tasks:
                book.live += 1
                tg.start_soon(task, ops)

    with anyio.fail_after(HANG):
        async with run_service(main, grace=20, drain=HANG / 2) as service:
            pass

    assert book.in_flight_at_end == 0
    assert not service.result.forced
    assert service.result.error is None
    assert service.result.exit_status == 0
    assert all(in_flight == open_ for open_, in_flight in book.looks)
    assert book.cut == []

"""The drain phase: in_flight(), drain(), and waiting for and inspecting the shutdown."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import types
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import graceful_async

from .support.helpers import WAIT, Backend, Child, assert_forced_on_time, run_program, write_program


async def _until_cancelled(order: list[str], note: str) -> None:
    """Wait until cancelled; then note it in ``order``."""
    try:
        await anyio.sleep_forever()
    finally:
        order.append(note)


# --- in_flight() and the drain phase


def test_in_flight_work_finishes_before_the_tree_is_cancelled(
    tmp_path: Path, backend: Backend
) -> None:
    """SIGTERM: the job in flight finishes while its sibling still runs; then the cancel."""
    body = """
    async def job(started, seen):
        async with graceful_async.in_flight():
            started.set()
            await seen.wait()  # in flight until the sibling has run during the drain
            print("job finished", graceful_async.shutdown_requested())

    async def sibling(seen):
        try:
            while True:
                await anyio.sleep(0.05)
                if graceful_async.shutdown_requested():
                    print("sibling still running during the drain")
                    seen.set()
                    await anyio.sleep_forever()
        finally:
            print("sibling cancelled")

    async def main():
        started, seen = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(job, started, seen)
            tg.start_soon(sibling, seen)
            await started.wait()
            say("READY")

    start(main, drain=20, grace=30)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[1:] == [
        "sibling still running during the drain",
        "job finished True",
        "sibling cancelled",
    ]


def test_nothing_in_flight_means_no_drain_wait(backend: Backend) -> None:
    """With a long drain budget and nothing in flight, the cancel comes at once."""
    cancelled_at: list[float] = []

    async def main() -> None:
        requested_at = anyio.current_time()
        graceful_async.request_shutdown()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled_at.append(anyio.current_time() - requested_at)

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=120, drain=60)
    assert info.value.code == 0
    # Far below the 60 s budget: this bounds a hang, it does not measure.
    assert cancelled_at[0] < WAIT


def test_drain_ends_when_the_last_unit_is_done(backend: Backend) -> None:
    """The drain phase ends the moment the last unit finishes, not at its deadline."""
    order: list[str] = []

    async def unit(name: str, seconds: float) -> None:
        async with graceful_async.in_flight():
            await anyio.sleep(seconds)
            order.append(f"{name} done")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(unit, "short", 0.05)
            tg.start_soon(unit, "long", 0.2)
            await anyio.lowlevel.checkpoint()
            graceful_async.request_shutdown()
            await _until_cancelled(order, "main cancelled")

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=120, drain=60)
    assert info.value.code == 0
    assert order == ["short done", "long done", "main cancelled"]


def test_drain_deadline_cuts_overrunning_work(
    backend: Backend, logs: pytest.LogCaptureFixture
) -> None:
    """Work still in flight at the drain deadline is cancelled; its finally runs; logged."""
    order: list[str] = []

    async def stuck(started: anyio.Event) -> None:
        async with graceful_async.in_flight():
            started.set()
            await _until_cancelled(order, "stuck finally")

    async def main() -> None:
        started = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(stuck, started)
            tg.start_soon(stuck, started)
            await started.wait()
            await anyio.lowlevel.checkpoint()
            graceful_async.request_shutdown()

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30, drain=0.2)
    assert info.value.code == 0
    assert order == ["stuck finally", "stuck finally"]
    assert "drain time is up: cancelling 2 unit(s) of work in flight" in logs.messages
    assert any("draining phase took" in m and "2 unit(s)" in m for m in logs.messages)


def test_drain_zero_cancels_at_once(backend: Backend) -> None:
    """drain=0 gives work in flight no time: it is cancelled with everything else."""
    order: list[str] = []

    async def main() -> None:
        async with graceful_async.in_flight():
            graceful_async.request_shutdown()
            try:
                await anyio.sleep(WAIT)
                order.append("finished")  # pragma: no cover - must not happen
            finally:
                order.append("cancelled")

    with pytest.raises(SystemExit) as info:
        backend.run(main, drain=0)
    assert info.value.code == 0
    assert order == ["cancelled"]


def test_second_signal_ends_the_drain(tmp_path: Path, backend: Backend) -> None:
    """A second signal during the drain cancels the work in flight at once."""
    body = """
    async def watch():
        await graceful_async.wait_shutdown_requested()
        say("DRAINING")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            async with graceful_async.in_flight():
                try:
                    say("READY")
                    await anyio.sleep(60)
                finally:
                    print("job cancelled", graceful_async.shutdown_requested())

    logging.basicConfig(level=logging.INFO)
    start(main, drain=50, grace=60)
    """
    child = Child.start(write_program(tmp_path, body), backend)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    child.wait_for("DRAINING")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[1:] == ["DRAINING", "job cancelled True"]
    assert "drain time is up" not in result.stderr  # the second signal cut it, not time


def test_stuck_work_in_flight_is_reported(tmp_path: Path, backend: Backend) -> None:
    """Work that blocks the loop past the deadline: the report shows the drain phase."""
    body = """
    async def main():
        async with graceful_async.in_flight():
            say("READY")
            while True:
                time.sleep(0.05)  # blocks the loop: nothing cooperative can help

    start(main, grace=0.5, drain=0.4)
    """
    result = run_program(tmp_path, body, backend, send=(signal.SIGTERM,))
    assert result.returncode == graceful_async.FORCED_EXIT_STATUS
    assert_forced_on_time(result, 0.5)
    assert "Units of work still in flight: 1" in result.stderr
    assert "phase: running (the event loop never got to start the shutdown" in result.stderr


def test_in_flight_counts_in_threads(backend: Backend) -> None:
    """A unit marked with plain `with` in a worker thread holds the drain too."""
    order: list[str] = []
    release = threading.Event()

    def blocking_job(started: threading.Event) -> None:
        with graceful_async.in_flight():
            started.set()
            release.wait(WAIT)
            order.append("thread job done")

    async def main() -> None:
        started = threading.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, blocking_job, started)
            await anyio.to_thread.run_sync(started.wait, WAIT)
            graceful_async.request_shutdown()
            await anyio.sleep(0.05)  # the drain is still waiting for the thread
            order.append("still draining")
            release.set()
            await _until_cancelled(order, "main cancelled")

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=120, drain=60)
    assert info.value.code == 0
    assert order == ["still draining", "thread job done", "main cancelled"]


def test_one_in_flight_object_per_block(backend: Backend) -> None:
    """Entering the same in_flight() object twice at once is refused."""

    async def main() -> str:
        unit = graceful_async.in_flight()
        async with unit:
            with pytest.raises(RuntimeError, match="already entered"):
                await unit.__aenter__()
        async with unit:  # once it is left, it may be used again
            return "ok"

    assert backend.run(main) == "ok"


def test_in_flight_outside_run_does_nothing() -> None:
    """Outside run(), in_flight() is an empty context manager, sync and async."""

    async def main() -> str:
        async with graceful_async.in_flight():
            with graceful_async.in_flight():
                return "ran"

    assert anyio.run(main) == "ran"


# --- drain()


def test_drain_takes_nothing_once_shutdown_begins(backend: Backend) -> None:
    """The item in hand finishes; no other is taken; the loop ends normally."""
    handled: list[int] = []
    left: list[int] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int](10)
        with send, receive:
            for i in range(5):
                send.send_nowait(i)
            async for item in graceful_async.drain(receive):
                if item == 1:
                    graceful_async.request_shutdown()
                await anyio.sleep(0.01)  # still running: the drain waits for this item
                handled.append(item)
            while True:
                try:
                    left.append(receive.receive_nowait())
                except anyio.WouldBlock:
                    break

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30, drain=20)
    assert info.value.code == 0
    assert handled == [0, 1]
    assert left == [2, 3, 4]


def test_drain_stops_a_loop_waiting_for_its_next_item(backend: Backend) -> None:
    """A drain() loop blocked on an empty stream ends normally when shutdown begins."""
    order: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int]()
        with send, receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_request_soon)
                async for _ in graceful_async.drain(receive):
                    order.append("item")  # pragma: no cover - nothing is ever sent
                order.append("loop ended")
                assert graceful_async.shutdown_requested()

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30, drain=20)
    assert info.value.code == 0
    assert order == ["loop ended"]


async def _request_soon() -> None:
    await anyio.sleep(0.05)
    graceful_async.request_shutdown()


async def _numbers(count: int) -> AsyncGenerator[int]:
    for i in range(count):
        await anyio.lowlevel.checkpoint()
        yield i


def test_drain_over_an_async_iterable(backend: Backend) -> None:
    """Any async iterable works; its items count as in flight the same way."""
    handled: list[int] = []

    async def main() -> None:
        async with aclosing(_numbers(100)) as numbers:
            async for item in graceful_async.drain(numbers):
                if item == 2:
                    graceful_async.request_shutdown()
                await anyio.sleep(0.01)
                handled.append(item)

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30, drain=20)
    assert info.value.code == 0
    assert handled == [0, 1, 2]


def test_drain_ends_with_its_source(backend: Backend) -> None:
    """Exhausted iterables and closed streams end the loop as usual."""

    async def main() -> list[int]:
        send, receive = anyio.create_memory_object_stream[int](5)
        with send:
            send.send_nowait(7)
        with receive:
            from_stream = [item async for item in graceful_async.drain(receive)]
        from_iterable = [item async for item in graceful_async.drain(_numbers(3))]
        return from_stream + from_iterable

    assert backend.run(main) == [7, 0, 1, 2]


def test_drain_waits_for_items_sent_later(backend: Backend) -> None:
    """An empty stream is waited on; the item sent later is handed out."""

    async def main() -> list[int]:
        send, receive = anyio.create_memory_object_stream[int]()

        async def produce() -> None:
            async with send:
                for i in range(3):
                    await anyio.sleep(0.01)
                    await send.send(i)

        with receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                items = [item async for item in graceful_async.drain(receive)]
        return items

    assert backend.run(main) == [0, 1, 2]


def test_breaking_out_releases_the_item(backend: Backend) -> None:
    """After `break`, the item in hand no longer holds up the drain phase."""
    order: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int](5)
        with send, receive:
            send.send_nowait(1)
            async for _ in graceful_async.drain(receive):
                break
            graceful_async.request_shutdown()
            await _until_cancelled(order, "cancelled")

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=120, drain=60)
    assert info.value.code == 0
    assert order == ["cancelled"]


def test_one_drain_shared_by_several_tasks(backend: Backend) -> None:
    """Consumers sharing one drain(): each one's item in hand is its own, and finishes."""
    finished: list[int] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int](10)
        with send, receive:
            for i in range(10):
                send.send_nowait(i)
            jobs = graceful_async.drain(receive)

            async def consumer(seconds: float) -> None:
                async for job in jobs:
                    if job == 2:
                        graceful_async.request_shutdown()
                    await anyio.sleep(seconds)
                    finished.append(job)

            async with anyio.create_task_group() as tg:
                for seconds in (0.05, 0.1, 0.15):
                    tg.start_soon(consumer, seconds)

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30, drain=20)
    assert info.value.code == 0
    assert sorted(finished) == [0, 1, 2]


def test_aclose_releases_the_item_and_closes_the_source(backend: Backend) -> None:
    """aclose(): the item in hand stops counting, and a generator's cleanup runs now."""
    order: list[str] = []

    async def numbers() -> AsyncGenerator[int]:
        try:
            yield 1
            yield 2  # pragma: no cover - the loop stops at the first
        finally:
            order.append("generator closed")

    async def main() -> None:
        async with aclosing(graceful_async.drain(numbers())) as items:
            async for _ in items:
                break
            order.append("loop left")
        graceful_async.request_shutdown()
        await _until_cancelled(order, "cancelled")

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=120, drain=60)
    assert info.value.code == 0
    assert order == ["loop left", "generator closed", "cancelled"]


def test_drain_on_another_threads_loop_is_a_pass_through(backend: Backend) -> None:
    """A drain() on an event loop in another thread is not run()'s business."""

    def other_loop() -> list[int]:
        async def consume() -> list[int]:
            send, receive = anyio.create_memory_object_stream[int]()

            async def produce() -> None:
                async with send:
                    for i in range(3):
                        await send.send(i)

            with receive:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(produce)
                    items = [item async for item in graceful_async.drain(receive)]
            return items

        return anyio.run(consume, backend=backend.name, backend_options=backend.options)

    async def main() -> list[int]:
        return await anyio.to_thread.run_sync(other_loop)

    assert backend.run(main) == [0, 1, 2]


def test_a_shutdown_just_before_the_wait_for_an_item_hands_out_none(backend: Backend) -> None:
    """A shutdown that begins between drain()'s two looks at it takes no further item."""
    # drain() looks for a shutdown as it is asked for an item, and again once it has
    # registered its wait for one (_wait_for_item). A signal handler or another thread
    # may start the shutdown in between; a tracer does it right there, at the call of
    # _wait_for_item. The source has its next item ready without awaiting anything, so
    # only that second look keeps it from being handed out after the drain began.
    produced: list[int] = []
    handled: list[int] = []
    requested: list[bool] = []
    previous = sys.gettrace()  # coverage's tracer, when measuring

    async def jobs() -> AsyncGenerator[int]:
        for job in range(3):
            produced.append(job)
            yield job

    def tracer(frame: types.FrameType, event: str, arg: Any) -> Any:
        if event != "call" or frame.f_code.co_name != "_wait_for_item" or requested:
            return None
        requested.append(True)
        sys.settrace(previous)
        graceful_async.request_shutdown("between bytecodes")
        # Coverage's tracer (a CTracer) takes this frame over, and the thread with it.
        return None if previous is None else previous(frame, "call", arg)

    async def main() -> None:
        try:
            async with aclosing(graceful_async.drain(jobs())) as items:
                async for job in items:
                    handled.append(job)
                    sys.settrace(tracer)  # for the wait for the next item
        finally:
            sys.settrace(previous)

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 0
    assert requested == [True]
    assert handled == [0]
    assert produced == [0]  # the next item stayed in the source


def test_loop_ends_normally_when_drain_is_zero(backend: Backend) -> None:
    """drain=0 cancels at once, yet the drain() loop itself still ends normally."""
    order: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int](5)
        with send, receive:
            for i in range(5):
                send.send_nowait(i)
            async for item in graceful_async.drain(receive):
                order.append(f"item {item}")
                graceful_async.request_shutdown()
                await anyio.lowlevel.cancel_shielded_checkpoint()
            order.append("loop ended normally")
            await anyio.sleep_forever()

    with pytest.raises(SystemExit) as info:
        backend.run(main, drain=0)
    assert info.value.code == 0
    assert order == ["item 0", "loop ended normally"]


def test_a_cancel_during_the_fast_path_propagates(backend: Backend) -> None:
    """A cancellation that is not the shutdown's goes through drain() unchanged."""
    seen: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int](5)
        with send, receive:
            send.send_nowait(1)
            with anyio.CancelScope() as scope:
                scope.cancel()
                async for _ in graceful_async.drain(receive):
                    seen.append("item")  # pragma: no cover - cancelled first
            seen.append(f"cancelled: {scope.cancelled_caught}")
            seen.append(f"still queued: {receive.receive_nowait()}")

    backend.run(main)
    assert seen == ["cancelled: True", "still queued: 1"]


def test_drain_outside_run_passes_everything_through() -> None:
    """Outside run(), drain() is a plain pass-through, for streams and other iterables."""

    async def main() -> list[int]:
        send, receive = anyio.create_memory_object_stream[int](5)
        with send:
            for i in range(3):
                send.send_nowait(i)
        with receive:
            items = [item async for item in graceful_async.drain(receive)]
        async with aclosing(_numbers(2)) as numbers:
            items += [item async for item in graceful_async.drain(numbers)]
        return items

    assert anyio.run(main) == [0, 1, 2, 0, 1]


def test_stream_closed_while_waiting_ends_the_loop(backend: Backend) -> None:
    """A drain() loop waiting on an empty stream ends when the senders close it."""

    async def main() -> str:
        send, receive = anyio.create_memory_object_stream[int]()

        async def close_soon() -> None:
            await anyio.sleep(0.01)
            send.close()

        with receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(close_soon)
                async for _ in graceful_async.drain(receive):
                    pass  # pragma: no cover - nothing is sent
        return "ended"

    assert backend.run(main) == "ended"


def test_other_cancellations_of_the_wait_propagate(backend: Backend) -> None:
    """Only the shutdown ends the loop quietly; any other cancellation goes through."""
    seen: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int]()
        with send, receive:
            with anyio.move_on_after(0.01) as scope:
                async for _ in graceful_async.drain(receive):
                    pass  # pragma: no cover - nothing is sent
                seen.append("loop ended normally")  # pragma: no cover - must not happen
            seen.append(f"cancelled: {scope.cancelled_caught}")

    backend.run(main)
    assert seen == ["cancelled: True"]


def test_drain_needs_an_async_iterable() -> None:
    """A plain iterable is refused with a message that names the argument."""
    with pytest.raises(TypeError, match="source must be an async iterable"):
        graceful_async.drain([1, 2, 3])  # type: ignore[arg-type]


# The consumer takes items from a memory stream while a producer keeps sending; a
# SIGTERM arrives at a random moment from another thread. Every item the producer
# managed to send must be either handled (exactly once) or still in the stream.
NO_LOSS = """
import random

BUFFER = int(sys.argv[1])
ROUNDS = int(sys.argv[2])

async def main(record):
    killer = threading.Timer(random.random() / 50, os.kill, (os.getpid(), signal.SIGTERM))
    killer.start()
    record["killer"] = killer
    send, receive = anyio.create_memory_object_stream[int](BUFFER)
    async def produce():
        i = 0
        while True:
            record["tried"] = i
            await send.send(i)
            record["sent"].append(i)
            i += 1
            if random.random() < 0.3:
                await anyio.sleep(random.random() / 1000)

    async def consume():
        async for item in graceful_async.drain(receive):
            record["taken"].append(item)
            if random.random() < 0.5:
                await anyio.sleep(random.random() / 500)
            record["handled"].append(item)
        record["ended normally"] = True

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await consume()
    finally:
        while True:
            try:
                record["left"].append(receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        send.close()
        receive.close()

bad = 0
for _ in range(ROUNDS):
    record = {"sent": [], "taken": [], "handled": [], "left": [], "tried": -1}
    try:
        start(main, record, grace=10, drain=5)
    except SystemExit as exc:
        assert exc.code == 143, exc.code
    record["killer"].join()
    sent, taken, left = record["sent"], record["taken"], record["left"]
    seen = taken + left
    lost = set(sent) - set(seen)
    phantom = set(seen) - set(range(record["tried"] + 1))
    ended = record.get("ended normally", False)
    if lost or phantom or len(set(seen)) != len(seen) or record["handled"] != taken or not ended:
        bad += 1
        print("BAD", lost, phantom, len(seen) - len(set(seen)), taken[-3:], record["handled"][-3:],
              ended)
print("rounds", ROUNDS, "bad", bad)
"""


@pytest.mark.parametrize("buffer", [0, 4])
def test_drain_loses_no_item_under_a_signal(tmp_path: Path, backend: Backend, buffer: int) -> None:
    """Many runs, SIGTERM at a random moment: every item sent is handled or still queued.

    Every item taken is handled to the end, and the loop always ends normally.
    """
    rounds = int(os.environ.get("GA_NO_LOSS_ROUNDS", "40"))
    child = Child.start(write_program(tmp_path, NO_LOSS), backend, str(buffer), str(rounds))
    result = child.finish(timeout=WAIT * 3)
    assert result.returncode == 0, result.stderr
    assert result.lines[-1] == f"rounds {rounds} bad 0", result.stdout


# --- waiting for and inspecting the shutdown


def test_wait_shutdown_requested_wakes_at_the_start_of_the_drain(backend: Backend) -> None:
    """Waiters wake when the shutdown begins, while work in flight still runs."""
    order: list[str] = []

    async def waiter() -> None:
        await graceful_async.wait_shutdown_requested()
        order.append(f"waiter woke: {graceful_async.shutdown_reason()}")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            async with graceful_async.in_flight():
                await anyio.sleep(0.01)
                graceful_async.request_shutdown("deploy")
                await anyio.sleep(0.05)
                order.append("job done")

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30, drain=20)
    assert info.value.code == 0
    assert order == ["waiter woke: shutdown requested (deploy)", "job done"]


def test_wait_after_the_shutdown_began_returns_at_once(backend: Backend) -> None:
    """A late waiter does not wait."""

    async def main() -> str:
        graceful_async.request_shutdown()
        with anyio.CancelScope(shield=True):
            await graceful_async.wait_shutdown_requested()
        return "returned"

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 0


def test_wait_needs_run() -> None:
    """Outside run(), waiting is refused with a message."""

    async def main() -> None:
        await graceful_async.wait_shutdown_requested()

    with pytest.raises(RuntimeError, match=r"needs an active graceful_async\.run"):
        anyio.run(main)


def test_reason_and_time_left(backend: Backend) -> None:
    """Before: None and inf. After: the reason, and time that counts down within grace."""
    seen: list[object] = []

    async def main() -> None:
        seen.extend([graceful_async.shutdown_reason(), graceful_async.time_left()])
        graceful_async.request_shutdown("maintenance")
        seen.extend([graceful_async.shutdown_reason(), graceful_async.time_left()])

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30)
    assert info.value.code == 0
    assert seen[:2] == [None, math.inf]
    assert seen[2] == "shutdown requested (maintenance)"
    assert isinstance(seen[3], float)
    assert 0 < seen[3] < 30


def test_inspection_from_another_thread(backend: Backend) -> None:
    """shutdown_requested(), shutdown_reason() and time_left() work from a thread."""
    seen: list[object] = []

    def look() -> None:
        seen.extend(
            [
                graceful_async.shutdown_requested(),
                graceful_async.shutdown_reason(),
                graceful_async.time_left() < 30,
            ]
        )

    async def main() -> None:
        graceful_async.request_shutdown()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(look)

    with pytest.raises(SystemExit) as info:
        backend.run(main, grace=30)
    assert info.value.code == 0
    assert seen == [True, "shutdown requested", True]


def test_inspection_outside_run() -> None:
    """Outside run(): no reason, and all the time in the world."""
    assert graceful_async.shutdown_reason() is None
    assert graceful_async.time_left() == math.inf

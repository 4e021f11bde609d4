"""Benchmark child: the per-item cost of drain() and in_flight() against a bare loop.

Usage: python -m benchmarks._child_overhead BACKEND USE_UVLOOP ITEMS ROUNDS

Everything runs inside one graceful_async.run(): only there do drain() and in_flight()
keep their books (outside it they are pass-throughs). Each round times every case once,
over ITEMS items, in an order that rotates from round to round, so that drift hits every
case alike. One round is run first and discarded (warm-up).

Sources: ``stream``, an anyio memory object stream holding all ITEMS items with its
sending end closed, so the loop ends by itself; ``generator``, an async generator that
yields ITEMS ints. Filling the stream and creating the generator are not timed.

Prints one JSON object: a list of samples, each with its round, its position in the
round, the source, the variant (``bare`` is the baseline) and the nanoseconds per item.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

import graceful_async
from graceful_async._shutdown import current_state

Loop = Callable[[AsyncIterable[int]], Awaitable[None]]


def stream_of(n: int) -> MemoryObjectReceiveStream[int]:
    send, receive = anyio.create_memory_object_stream[int](max_buffer_size=n)
    with send:
        for i in range(n):
            send.send_nowait(i)
    return receive


async def generator_of(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


# The loops under test. Their bodies do nothing, so what is timed is the iteration.


async def bare(source: AsyncIterable[int]) -> None:
    async for _ in source:
        pass


async def drained(source: AsyncIterable[int]) -> None:
    async for _ in graceful_async.drain(source):
        pass


async def each_in_flight(source: AsyncIterable[int]) -> None:
    async for _ in source:
        async with graceful_async.in_flight():
            pass


SOURCES: dict[str, Callable[[int], AsyncIterable[int]]] = {
    "stream": stream_of,
    "generator": generator_of,
}
#: (source, variant) -> loop. ``bare`` is each source's baseline.
CASES: dict[tuple[str, str], Loop] = {
    ("stream", "bare"): bare,
    ("stream", "drain"): drained,
    ("stream", "in_flight"): each_in_flight,
    ("generator", "bare"): bare,
    ("generator", "drain"): drained,
}


async def time_case(source: str, loop: Loop, items: int) -> float:
    """Nanoseconds per item of one pass of ``loop`` over a fresh source of ``items``."""
    iterable = SOURCES[source](items)
    gc.collect()  # start every case from the same heap; the loop itself runs with gc on
    start = time.perf_counter_ns()
    await loop(iterable)
    elapsed = time.perf_counter_ns() - start
    if isinstance(iterable, MemoryObjectReceiveStream):
        iterable.close()
    return elapsed / items


async def check_bookkeeping() -> None:
    """Fail unless drain() and in_flight() really count work here (not pass-throughs)."""
    state = current_state()
    if state is None:
        raise RuntimeError("no active graceful_async.run(): the cases would measure nothing")
    for source, make in SOURCES.items():
        seen = 0
        async for _ in graceful_async.drain(make(3)):
            seen += 1
            if len(state.in_flight) != 1:
                raise RuntimeError(f"drain() over a {source} did not count its item")
        if seen != 3 or state.in_flight:
            raise RuntimeError(f"drain() over a {source} lost items or left some counted")
    async with graceful_async.in_flight():
        if len(state.in_flight) != 1:
            raise RuntimeError("in_flight() did not count its block")
    if state.in_flight:
        raise RuntimeError("in_flight() left its block counted")


async def measure(items: int, rounds: int) -> list[dict[str, Any]]:
    await check_bookkeeping()
    cases = list(CASES.items())
    samples: list[dict[str, Any]] = []
    for round_ in range(-1, rounds):  # round -1 is the warm-up
        shift = round_ % len(cases)
        for position, ((source, variant), loop) in enumerate(cases[shift:] + cases[:shift]):
            ns_per_item = await time_case(source, loop, items)
            if round_ >= 0:
                samples.append(
                    {
                        "round": round_,
                        "position": position,
                        "source": source,
                        "variant": variant,
                        "ns_per_item": ns_per_item,
                    }
                )
    return samples


def cli() -> None:
    backend, use_uvloop = sys.argv[1], sys.argv[2] == "1"
    items, rounds = int(sys.argv[3]), int(sys.argv[4])
    options: dict[str, Any] | None = {"use_uvloop": True} if use_uvloop else None
    samples = graceful_async.run(measure, items, rounds, backend=backend, backend_options=options)
    print(json.dumps(samples))


if __name__ == "__main__":
    cli()

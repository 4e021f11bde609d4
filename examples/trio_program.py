"""A trio program under graceful-async: stop it with Ctrl+C or `kill -TERM <pid>`.

main is plain trio: a nursery runs an echo server on 127.0.0.1 (on a free port) and a
ticker. graceful-async only wraps it, with backend="trio". When you stop the program,
trio cancels the nursery as it would for any cancellation: each task's `finally` runs,
the echo connections are closed, main's own cleanup awaits inside a cleanup scope, and
the shutdown hook runs last. Then the process exits with status 143 after SIGTERM, or
dies by SIGINT after Ctrl+C, as a shell expects.

Run it with:  python examples/trio_program.py
Talk to it:   nc 127.0.0.1 <port>   (the port is printed at start)
"""

from __future__ import annotations

import logging
import os
import sys

import trio

import graceful_async


async def echo(stream: trio.SocketStream) -> None:
    # `async with` closes the connection however the handler ends, cancellation included:
    # a client still connected at shutdown sees the connection closed, not hanging.
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def tick() -> None:
    ticks = 0
    try:
        while True:
            await trio.sleep(1)
            ticks += 1
            print(f"tick {ticks}", flush=True)
    finally:
        print(f"ticker stopped after {ticks} tick(s)", flush=True)


async def main() -> None:
    graceful_async.on_shutdown(print, "shutdown hook: goodbye", name="goodbye")
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, echo, listeners)
            nursery.start_soon(tick)
            pid = os.getpid()
            print(f"echo server on 127.0.0.1:{port}; stop with Ctrl+C or kill -TERM {pid}")
            sys.stdout.flush()
    finally:
        # The task is cancelled here; without the cleanup scope this await would raise
        # at once. The scope shields it, bounded by its timeout and the grace period.
        with graceful_async.cleanup_scope(timeout=2):
            await trio.sleep(0.1)  # stands in for flushing a buffer over the network
            print("main: cleanup done", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    graceful_async.run(main, backend="trio")

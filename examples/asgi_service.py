"""An HTTP service that lets requests in flight finish: stop it with Ctrl+C or `kill -TERM`.

A Starlette app with a slow endpoint (/slow takes --slow seconds) and a readiness endpoint
(/readyz), served by Uvicorn or Hypercorn under graceful_async.run(). On SIGTERM, /readyz
answers 503 at once, and for --pre-drain-delay seconds everything else is still served, so
that a load balancer has time to stop sending traffic. Then the server stops listening, the
requests in flight finish, the app's lifespan shutdown runs, then the shutdown hooks, and
the process exits with status 143.

Run it with:  python examples/asgi_service.py [--server uvicorn|hypercorn]
              [--backend asyncio|trio] [--uvloop] [--port 8000] [--pre-drain-delay 0]
and try:      curl localhost:8000/slow & sleep 0.5; kill -TERM <pid>
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import graceful_async
from graceful_async.contrib.asgi import ReadinessMiddleware

log = logging.getLogger("asgi_service")


def make_app(slow_seconds: float) -> ReadinessMiddleware:
    """The app: /slow and /, behind the readiness endpoint /readyz."""

    async def slow(request: Request) -> PlainTextResponse:
        log.info("slow request started")
        await anyio.sleep(slow_seconds)
        log.info("slow request finished")
        return PlainTextResponse(f"done after {slow_seconds} s\n")

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello\n")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("lifespan startup: open the database pool here")
        yield
        log.info("lifespan shutdown: close the database pool here")

    routes = [Route("/", hello), Route("/slow", slow)]
    return ReadinessMiddleware(Starlette(routes=routes, lifespan=lifespan), path="/readyz")


@graceful_async.on_shutdown
def say_goodbye() -> None:
    log.info("shutdown hook: the server has stopped, flush the metrics here")


async def main(options: argparse.Namespace) -> None:
    app = make_app(options.slow)
    pid = os.getpid()
    log.info("serving on 127.0.0.1:%d as pid %d; `kill -TERM %d` to stop", options.port, pid, pid)
    if options.server == "uvicorn":
        from graceful_async.contrib import uvicorn

        await uvicorn.serve(app, host="127.0.0.1", port=options.port, log_level="warning")
    else:
        from graceful_async.contrib import hypercorn

        await hypercorn.serve(app, bind=f"127.0.0.1:{options.port}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["uvicorn", "hypercorn"], default="uvicorn")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--uvloop", action="store_true", help="run asyncio on uvloop")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--slow", type=float, default=2.0, help="seconds /slow takes")
    parser.add_argument("--pre-drain-delay", type=float, default=0.0, metavar="SECONDS")
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)-14s %(message)s", stream=sys.stdout
    )
    graceful_async.run(
        main,
        options,
        backend=options.backend,
        backend_options={"use_uvloop": True} if options.uvloop else None,
        # Ready once the server listens, not as soon as main starts.
        ready_on_start=False,
        pre_drain_delay=options.pre_drain_delay,
    )

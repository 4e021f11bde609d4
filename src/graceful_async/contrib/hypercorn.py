"""Serve an ASGI app with Hypercorn under `graceful_async.run`, on asyncio or trio.

Needs the ``hypercorn`` extra: ``pip install graceful-async[hypercorn]``.
"""

from __future__ import annotations

import copy
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from hypercorn.config import Config, Sockets

import graceful_async

from .._backends import running_backend
from .._log import logger
from ._server import check_running, server_lifetime
from .asgi import ASGIApp

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["serve"]


async def serve(
    app: ASGIApp, config: Config | None = None, *, bind: str | list[str] | None = None
) -> None:
    """Run a Hypercorn server until the program shuts down, then stop it gracefully.

    Runs on the backend the program runs on: asyncio (also with uvloop) or trio.
    Hypercorn installs no signal handlers, since it gets a shutdown trigger: the start
    of the drain phase. The service is marked ready (`graceful_async.set_ready`) once
    the app's lifespan startup has completed and the sockets listen: from then on the
    kernel queues new connections, and Hypercorn takes them moments later. When the
    drain phase begins, the listening sockets close, the requests in flight may finish
    for as long as the drain time allows (Hypercorn's ``graceful_timeout`` is set to
    what is left of it), the app's lifespan shutdown runs, and this returns. Only then
    do the `graceful_async.on_shutdown` hooks run. From the start of the drain, the
    server's shutdown is bounded by the grace period rather than the drain deadline, so
    that the lifespan shutdown runs even after a request has used up the drain time; a
    second signal cuts it short.

    Args:
        app: The ASGI application.
        config: A Hypercorn `Config`. It is copied, not changed. Defaults to Hypercorn's
            defaults, which listen on ``127.0.0.1:8000``.
        bind: Where to listen, such as ``"127.0.0.1:8000"`` or ``["unix:/run/app.sock"]``;
            overrides ``config.bind``.

    Raises:
        TypeError: If ``config`` is not a hypercorn ``Config``, or ``bind`` is not a
            string or a list of strings.
        ValueError: If ``bind`` is an empty list.
        RuntimeError: Outside `graceful_async.run`.

    Example:
        ```python
        import graceful_async
        from graceful_async.contrib import hypercorn

        async def main() -> None:
            await hypercorn.serve(app, bind="127.0.0.1:8000")

        graceful_async.run(main, backend="trio", ready_on_start=False)
        ```
    """
    if config is not None and not isinstance(config, Config):
        raise TypeError(f"config must be a hypercorn.config.Config or None, got {config!r}")
    binds = _check_bind(bind)
    run = check_running("hypercorn")
    config = Config() if config is None else copy.copy(config)
    if binds is not None:
        config.bind = binds
    _report_ready_when_listening(config)
    hypercorn_serve = _serve_function(running_backend().name)

    failed: list[Exception] = []
    async with server_lifetime(run) as lifetime, anyio.create_task_group() as tg:

        async def shutdown_trigger() -> None:
            assert config is not None
            config.graceful_timeout = await lifetime.wait_stop()

        async def run_server() -> None:
            try:
                await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger)
            except Exception as exc:  # raised below as it is, not in a task group's group
                # On trio, Hypercorn's nurseries wrap it in a group for each one it left.
                while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                    exc = exc.exceptions[0]  # type: ignore[assignment]
                if run.state.escalated:
                    # A second signal cancels the server in the middle of its own
                    # shutdown, and Hypercorn's asyncio side then trips over that
                    # (InvalidStateError from its gathered tasks). It is the signal's
                    # doing, not a failure of the service: the exit status stays 128+N.
                    logger.debug("hypercorn stopped by a second signal: %r", exc)
                    return
                failed.append(exc)

        # In a task of its own: before Python 3.13, Hypercorn's asyncio.TaskGroup leaves a
        # cancel request on the task that awaits serve() once the trigger fires, and
        # anyio would take that for a cancellation of the caller.
        tg.start_soon(run_server, name="hypercorn")
    if failed:
        raise failed[0]


def _serve_function(backend: str) -> Callable[..., Coroutine[Any, Any, None]]:
    # Imported here: hypercorn.trio imports trio, which an asyncio program may not have.
    # Hypercorn names its modules after the backends.
    module = importlib.import_module(f"hypercorn.{backend}")
    serve: Callable[..., Coroutine[Any, Any, None]] = module.serve
    return serve


def _check_bind(bind: object) -> list[str] | None:
    if bind is None:
        return None
    if isinstance(bind, str):
        return [bind]
    if not isinstance(bind, list) or not all(isinstance(b, str) for b in bind):
        raise TypeError(f"bind must be a string, a list of strings or None, got {bind!r}")
    if not bind:
        raise ValueError("bind must name at least one address, got []")
    return list(bind)


def _report_ready_when_listening(config: Config) -> None:
    # Hypercorn has no "started" callback on asyncio. It creates its sockets, by calling
    # config.create_sockets(), right after the lifespan startup, and listens on them
    # moments later. Listening on them here already (a second listen() changes nothing)
    # makes "ready" exact: the kernel queues a connection from this point on.
    create_sockets = config.create_sockets

    def create_listening_sockets() -> Sockets:
        sockets = create_sockets()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.listen(config.backlog)
        graceful_async.set_ready()
        return sockets

    config.create_sockets = create_listening_sockets  # type: ignore[method-assign]

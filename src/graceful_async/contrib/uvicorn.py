"""Serve an ASGI app with Uvicorn under `graceful_async.run`, on asyncio.

Needs the ``uvicorn`` extra: ``pip install graceful-async[uvicorn]``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn

import graceful_async

from .._backends import running_backend
from ._server import check_running, server_lifetime
from .asgi import ASGIApp

__all__ = ["serve"]


async def serve(
    app: ASGIApp | str, *, config: uvicorn.Config | None = None, **config_kwargs: Any
) -> None:
    """Run a Uvicorn server until the program shuts down, then stop it gracefully.

    Uvicorn's own signal handling is switched off: the runner owns the signals. The
    service is marked ready (`graceful_async.set_ready`) once the server listens. When
    the drain phase begins, the server stops accepting connections, closes idle
    keep-alive connections, lets the requests in flight finish for as long as the drain
    time allows (Uvicorn's ``timeout_graceful_shutdown`` is set to what is left of it)
    and then cancels them, runs the app's lifespan shutdown, and returns. Only then do
    the `graceful_async.on_shutdown` hooks run. From the start of the drain, the
    server's shutdown is bounded by the grace period rather than the drain deadline, so
    that the lifespan shutdown runs even after a request has used up the drain time; a
    second signal cuts it short. Runs on asyncio and asyncio+uvloop only.

    Args:
        app: The ASGI application, or an import string such as ``"service:app"``.
        config: A ready `uvicorn.Config` for ``app``. Its ``timeout_graceful_shutdown``
            is overwritten at shutdown.
        **config_kwargs: Otherwise, keyword arguments for `uvicorn.Config`, such as
            ``host="127.0.0.1", port=8000``.

    Raises:
        TypeError: If both ``config`` and ``config_kwargs`` are given, or ``config`` is
            not a `uvicorn.Config`.
        ValueError: If ``config.app`` is not ``app``.
        RuntimeError: Outside `graceful_async.run`, or on trio (use
            `graceful_async.contrib.hypercorn` there).
        SystemExit: With status 3, as Uvicorn itself exits, if the server failed to
            start (its lifespan startup failed, or it could not listen).

    Example:
        ```python
        import graceful_async
        from graceful_async.contrib import uvicorn

        async def main() -> None:
            await uvicorn.serve(app, host="127.0.0.1", port=8000)

        graceful_async.run(main, ready_on_start=False)
        ```
    """
    if config is not None:
        if config_kwargs:
            raise TypeError(
                "pass either config or keyword arguments for a uvicorn.Config, not both; "
                f"got config and {', '.join(sorted(config_kwargs))}"
            )
        if not isinstance(config, uvicorn.Config):
            raise TypeError(f"config must be a uvicorn.Config or None, got {config!r}")
        if config.app != app:
            raise ValueError(f"config.app must be app, got {config.app!r} and {app!r}")
    run = check_running("uvicorn")
    if (backend := running_backend().name) != "asyncio":
        raise RuntimeError(
            f"Sorry, Uvicorn runs on asyncio only, and this program runs on {backend}; "
            "use run(..., backend='asyncio') or graceful_async.contrib.hypercorn"
        )
    if config is None:
        config = uvicorn.Config(app, **config_kwargs)
    server = _Server(config)

    async with server_lifetime(run) as lifetime, anyio.create_task_group() as tg:

        async def stop_when_draining() -> None:
            assert config is not None
            # Typed as int, but Uvicorn only hands it to asyncio.wait_for().
            config.timeout_graceful_shutdown = await lifetime.wait_stop()  # type: ignore[assignment]
            # Uvicorn looks at this flag every 0.1 s; then it stops as described above.
            server.should_exit = True

        tg.start_soon(stop_when_draining)
        try:
            await server.serve()
        finally:
            # Cancelled before it could stop by itself (by an error elsewhere in main, or
            # a second signal), Uvicorn leaves its listeners open: at least close those.
            for listener in getattr(server, "servers", ()):
                listener.close()
        tg.cancel_scope.cancel()
    if not server.started and not run.state.stopping:
        # Current Uvicorns exit with this status themselves; older ones just return.
        raise SystemExit(_STARTUP_FAILURE)


# Uvicorn's status for a server that failed to start (uvicorn.config.STARTUP_FAILURE
# in current versions, uvicorn.main's in older ones).
_STARTUP_FAILURE = 3


class _Server(uvicorn.Server):
    """A Uvicorn server that leaves the signals to the runner and reports readiness."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Uvicorn would replace the runner's handlers, and re-raise the signal once it
        # has stopped, which would bypass the drain phase, the hooks and the exit status.
        yield

    def install_signal_handlers(self) -> None:
        """Uvicorn before 0.29 installs its handlers here: the runner owns them."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Returns once the server listens (it exits the process when it cannot).
        await super().startup(sockets=sockets)
        # Older Uvicorns return from a failed start (or one the drain cut short) instead
        # of exiting: ready only if it really listens and is not already stopping.
        if self.started and not self.should_exit:
            graceful_async.set_ready()

"""A readiness endpoint for ASGI apps: 200 while the service is ready, 503 once draining.

Pure ASGI, with no dependencies. Point the load balancer's or Kubernetes' readiness probe
at it: it reports `graceful_async.is_ready`, which turns false the moment a shutdown is
requested, so traffic moves away while the service keeps serving what still arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, final

import graceful_async

__all__ = ["ASGIApp", "ReadinessMiddleware", "readiness_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application: ``async def app(scope, receive, send)``."""

_PROBE_METHODS = ("GET", "HEAD")


async def readiness_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that reports readiness, to mount at a path of your choice.

    ``GET`` and ``HEAD`` get ``200 ready`` while `graceful_async.is_ready` is true, else
    ``503 draining``, as plain text that no cache may keep. Other methods get ``405``.
    It serves HTTP only; wrap the whole app in `ReadinessMiddleware` instead if you do not
    route by path yourself.

    Args:
        scope: The ASGI scope; its type must be ``"http"``.
        receive: The ASGI receive callable (not used: a probe has no body to read).
        send: The ASGI send callable.

    Raises:
        ValueError: For a scope that is not HTTP (a server takes this as "lifespan not
            supported", as ASGI specifies).

    Starlette routes a plain function as a request handler, not as an ASGI app, and its
    ``Mount("/readyz", ...)`` answers ``GET /readyz`` with a redirect to ``/readyz/``, which
    a Kubernetes probe counts as a success; with Starlette or FastAPI, use
    `ReadinessMiddleware`.

    Example:
        ```python
        from graceful_async.contrib.asgi import readiness_app


        async def app(scope, receive, send):
            if scope["type"] == "http" and scope["path"] == "/readyz":
                await readiness_app(scope, receive, send)
            else:
                await main_app(scope, receive, send)
        ```
    """
    if scope["type"] != "http":
        raise ValueError(f"readiness_app serves HTTP requests only, got a {scope['type']!r} scope")
    if scope["method"] not in _PROBE_METHODS:
        await _respond(send, 405, b"method not allowed\n", scope, [(b"allow", b"GET, HEAD")])
    elif graceful_async.is_ready():
        await _respond(send, 200, b"ready\n", scope)
    else:
        await _respond(send, 503, b"draining\n", scope)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    scope: Scope,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        # A probe must see the state of now, never a cached answer.
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


@final
class ReadinessMiddleware:
    """Answer readiness probes on one path, and pass everything else on to the app.

    ``GET`` or ``HEAD`` on ``path`` gets ``200 ready`` while `graceful_async.is_ready` is
    true, and ``503 draining`` from the moment a shutdown is requested (during
    ``run(pre_drain_delay=...)`` the app still serves every other request). Every other
    request, websocket and lifespan event goes to ``app`` unchanged.

    Args:
        app: The ASGI application to wrap.
        path: The path of the readiness endpoint; it must start with ``/``.

    Raises:
        TypeError: If ``app`` is not callable or ``path`` is not a string.
        ValueError: If ``path`` does not start with ``/``.

    Example:
        ```python
        from graceful_async.contrib.asgi import ReadinessMiddleware

        app = ReadinessMiddleware(make_app(), path="/readyz")
        ```
    """

    __slots__ = ("_app", "_path")

    def __init__(self, app: ASGIApp, *, path: str = "/readyz") -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application (a callable), got {app!r}")
        if not isinstance(path, str):
            raise TypeError(f"path must be a string starting with '/', got {path!r}")
        if not path.startswith("/"):
            raise ValueError(f"path must be a string starting with '/', got {path!r}")
        self._app = app
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection or lifespan."""
        if (
            scope["type"] == "http"
            and scope["path"] == self._path
            and scope["method"] in _PROBE_METHODS
        ):
            await readiness_app(scope, receive, send)
        else:
            await self._app(scope, receive, send)

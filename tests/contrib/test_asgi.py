"""ReadinessMiddleware and readiness_app: 200 while ready, 503 once draining, else pass on."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import graceful_async
from graceful_async.contrib.asgi import Message, ReadinessMiddleware, Scope, readiness_app

from ..support.helpers import Backend


async def call(app: Any, scope: Scope) -> list[Message]:
    """Call an ASGI app once; return what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http(path: str = "/readyz", method: str = "GET") -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": []}


def status_and_body(sent: list[Message]) -> tuple[int, bytes, dict[bytes, bytes]]:
    start, body = sent
    return start["status"], body["body"], dict(start["headers"])


async def inner_app(scope: Scope, receive: Any, send: Any) -> None:
    """Stands for the wrapped app: it says that it was called, and for what."""
    await send({"type": "inner", "scope_type": scope["type"]})


def test_readiness_follows_is_ready(backend: Backend) -> None:
    """200 ready while ready, 503 draining from the moment a shutdown is requested."""
    middleware = ReadinessMiddleware(inner_app)
    seen: list[tuple[int, bytes, dict[bytes, bytes]]] = []

    async def main() -> None:
        seen.append(status_and_body(await call(middleware, http())))
        graceful_async.request_shutdown()
        seen.append(status_and_body(await call(middleware, http())))

    with pytest.raises(SystemExit) as info:
        backend.run(main)
    assert info.value.code == 0
    (ok, ok_body, ok_headers), (draining, draining_body, _) = seen
    assert (ok, ok_body, draining, draining_body) == (200, b"ready\n", 503, b"draining\n")
    assert ok_headers[b"cache-control"] == b"no-store"
    assert ok_headers[b"content-type"].startswith(b"text/plain")


def test_not_ready_outside_run() -> None:
    """Without an active run() the service is not ready."""
    sent = anyio.run(call, readiness_app, http())
    assert status_and_body(sent)[:2] == (503, b"draining\n")


def test_head_gets_the_headers_without_a_body() -> None:
    """HEAD on the path answers like GET, with the length of the body it leaves out."""
    status, body, headers = status_and_body(
        anyio.run(call, ReadinessMiddleware(inner_app), http(method="HEAD"))
    )
    assert (status, body, headers[b"content-length"]) == (503, b"", b"9")


@pytest.mark.parametrize(
    "scope",
    [
        http("/other"),
        http(method="POST"),
        {"type": "websocket", "path": "/readyz"},
        {"type": "lifespan"},
    ],
    ids=["other-path", "post", "websocket", "lifespan"],
)
def test_everything_else_passes_through(scope: Scope) -> None:
    """Other paths, other methods, websockets and lifespan events reach the app."""
    sent = anyio.run(call, ReadinessMiddleware(inner_app, path="/readyz"), scope)
    assert sent == [{"type": "inner", "scope_type": scope["type"]}]


def test_custom_path() -> None:
    """The endpoint answers on the path it is given, and only there."""
    middleware = ReadinessMiddleware(inner_app, path="/health/ready")
    assert status_and_body(anyio.run(call, middleware, http("/health/ready")))[0] == 503
    assert anyio.run(call, middleware, http("/readyz"))[0]["type"] == "inner"


def test_readiness_app_refuses_other_methods_and_scopes() -> None:
    """The bare app answers 405 to other methods, and serves HTTP only."""
    status, _, headers = status_and_body(anyio.run(call, readiness_app, http(method="POST")))
    assert (status, headers[b"allow"]) == (405, b"GET, HEAD")
    with pytest.raises(ValueError, match="HTTP requests only, got a 'lifespan' scope"):
        anyio.run(call, readiness_app, {"type": "lifespan"})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"app": None}, TypeError, "app must be an ASGI application"),
        ({"path": b"/readyz"}, TypeError, "path must be a string starting with '/', got b"),
        ({"path": "readyz"}, ValueError, "path must be a string starting with '/', got 'readyz'"),
    ],
)
def test_middleware_checks_its_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad arguments fail at once, naming the argument."""
    arguments: dict[str, Any] = {"app": inner_app, **kwargs}
    app = arguments.pop("app")
    with pytest.raises(error, match=match):
        ReadinessMiddleware(app, **arguments)

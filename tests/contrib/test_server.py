"""ASGI servers under run(): in-flight requests finish, the listener closes, readiness."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn as uvicorn_package
from hypercorn.config import Config as HypercornConfig

import graceful_async
from graceful_async.contrib import hypercorn, uvicorn
from graceful_async.contrib.asgi import Scope, readiness_app

from ..support.helpers import BACKENDS, WAIT, Backend, Child, write_program

ASYNCIO, UVLOOP, TRIO = BACKENDS
EXAMPLE = Path(__file__).parents[2] / "examples" / "asgi_service.py"

SERVERS = [("uvicorn", ASYNCIO), ("uvicorn", UVLOOP), ("hypercorn", ASYNCIO), ("hypercorn", TRIO)]
SERVER_IDS = [f"{server}-{backend.id}" for server, backend in SERVERS]

# The service the tests stop: /slow waits until the test creates the file GA_RELEASE.
SERVICE = """
from contextlib import asynccontextmanager
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from graceful_async.contrib.asgi import ReadinessMiddleware

RELEASE = os.environ["GA_RELEASE"]

async def slow(request):
    say("SLOW STARTED")
    with anyio.fail_after(25):
        while not os.path.exists(RELEASE):
            await anyio.sleep(0.02)
    return PlainTextResponse("slow done")

async def fast(request):
    return PlainTextResponse("fast")

@asynccontextmanager
async def lifespan(app):
    say(f"LIFESPAN STARTUP ready={graceful_async.is_ready()}")
    yield
    say("LIFESPAN SHUTDOWN")

app = ReadinessMiddleware(
    Starlette(routes=[Route("/slow", slow), Route("/fast", fast)], lifespan=lifespan)
)

@graceful_async.on_shutdown
def hook():
    say("HOOK RAN")

async def main():
    port = int(os.environ["GA_PORT"])
    if os.environ["GA_SERVER"] == "uvicorn":
        from graceful_async.contrib import uvicorn
        await uvicorn.serve(app, host="127.0.0.1", port=port, log_level="warning")
    else:
        from graceful_async.contrib import hypercorn
        await hypercorn.serve(app, bind=f"127.0.0.1:{port}")
    say("SERVE RETURNED")

start(
    main,
    grace=10,
    drain=float(os.environ.get("GA_DRAIN", "8")),
    ready_on_start=False,
    pre_drain_delay=float(os.environ.get("GA_DELAY", "0")),
)
"""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(port: int, path: str, method: str = "GET") -> httpx.Response:
    """One request on a new connection (no proxy from the environment, no keep-alive)."""
    with httpx.Client(trust_env=False, timeout=WAIT) as client:
        return client.request(method, f"http://127.0.0.1:{port}{path}")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} within {WAIT} s")
        time.sleep(0.02)


def probe(port: int) -> int:
    """The readiness endpoint's status, or 0 if the connection is refused."""
    try:
        return get(port, "/readyz").status_code
    except httpx.ConnectError:
        return 0


def refused(port: int) -> bool:
    try:
        get(port, "/fast")
    except httpx.ConnectError:
        return True
    except (httpx.ReadError, httpx.RemoteProtocolError):
        # The kernel queued this connection just before the listener closed, and reset
        # it as it closed: a race with the close, not yet a refusal. Ask again.
        return False
    return False


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., tuple[Child, int]]]:
    """Start the service with a server on a backend; kill what is left at the end."""
    children: list[Child] = []

    def start(server: str, backend: Backend, **env: str) -> tuple[Child, int]:
        port = free_port()
        program = write_program(tmp_path, SERVICE)
        child = Child.start(
            program,
            backend,
            GA_SERVER=server,
            GA_PORT=str(port),
            GA_RELEASE=str(tmp_path / "release"),
            **env,
        )
        children.append(child)
        wait_until(lambda: child.proc.poll() is not None or probe(port) == 200, "ready")
        assert child.proc.poll() is None, child.finish()
        return child, port

    yield start
    for child in children:
        child.kill()


@pytest.mark.parametrize(("server", "backend"), SERVERS, ids=SERVER_IDS)
def test_request_in_flight_finishes_and_new_connections_are_refused(
    start_service: Callable[..., tuple[Child, int]], tmp_path: Path, server: str, backend: Backend
) -> None:
    """After SIGTERM the listener closes, the slow request still gets its 200, the
    lifespan shutdown runs before the hooks, and the status is 143 well inside grace."""
    child, port = start_service(server, backend)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, port, "/slow")
        child.wait_for("SLOW STARTED")
        child.send(signal.SIGTERM)
        signalled = time.monotonic()
        wait_until(lambda: refused(port), "refusing connections")
        assert not slow.done()
        assert child.proc.poll() is None
        (tmp_path / "release").touch()
        response = slow.result(WAIT)
    assert response.status_code == 200
    assert response.text == "slow done"
    result = child.finish()
    assert result.returncode == 143, result.stderr
    assert time.monotonic() - signalled < 10  # the grace period: the watchdog never struck
    assert "LIFESPAN STARTUP ready=False" in result.lines  # ready means listening
    markers = [line for line in result.lines if line in {"LIFESPAN SHUTDOWN", "HOOK RAN"}]
    assert markers == ["LIFESPAN SHUTDOWN", "HOOK RAN"]
    assert "SERVE RETURNED" in result.lines


@pytest.mark.parametrize(("server", "backend"), SERVERS, ids=SERVER_IDS)
def test_a_second_signal_cuts_the_request_and_still_exits_143(
    start_service: Callable[..., tuple[Child, int]], server: str, backend: Backend
) -> None:
    """Two SIGTERMs with a request in flight: cut short, hooks run, and the status is 143."""
    child, port = start_service(server, backend)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, port, "/slow")
        child.wait_for("SLOW STARTED")
        child.send(signal.SIGTERM)
        wait_until(lambda: refused(port), "refusing connections")
        child.send(signal.SIGTERM)
        result = child.finish()
        try:
            response = slow.result(WAIT)
        except httpx.HTTPError:
            pass  # the connection was cut (Hypercorn on trio, say)
        else:  # or the server answered for the cancelled request (a 500)
            assert response.status_code != 200
    assert result.returncode == 143, result.stderr
    assert "HOOK RAN" in result.lines


@pytest.mark.parametrize(
    ("server", "backend"), [SERVERS[0], SERVERS[3]], ids=[SERVER_IDS[0], SERVER_IDS[3]]
)
def test_not_ready_at_once_and_serving_through_the_pre_drain_delay(
    start_service: Callable[..., tuple[Child, int]], server: str, backend: Backend
) -> None:
    """With pre_drain_delay, /readyz says 503 right after SIGTERM while other requests
    are still served; the listener closes only after the delay."""
    child, port = start_service(server, backend, GA_DELAY="3", GA_DRAIN="5")
    child.send(signal.SIGTERM)
    wait_until(lambda: probe(port) == 503, "draining")
    fast = get(port, "/fast")
    assert (fast.status_code, fast.text) == (200, "fast")
    wait_until(lambda: refused(port), "refusing connections")
    result = child.finish()
    assert result.returncode == 143, result.stderr
    assert result.lines[-3:] == ["LIFESPAN SHUTDOWN", "SERVE RETURNED", "HOOK RAN"]


@pytest.mark.parametrize(("server", "backend"), SERVERS, ids=SERVER_IDS)
def test_example_service_stops_with_143(server: str, backend: Backend) -> None:
    """The example serves /slow, and after SIGTERM finishes it and exits with 143."""
    port = free_port()
    args = ["--server", server, "--backend", backend.name, "--port", str(port), "--slow", "1"]
    args += ["--uvloop"] if backend.options else []
    child = Child([sys.executable, str(EXAMPLE), *args], backend.env())
    try:
        wait_until(lambda: probe(port) == 200, "ready")
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(get, port, "/slow")
            child.wait_for("slow request started", partial=True)
            child.send(signal.SIGTERM)
            assert slow.result(WAIT).status_code == 200
        result = child.finish()
    finally:
        child.kill()
    assert result.returncode == 143, result.stderr
    said = [line.split(maxsplit=3)[-1] for line in result.lines]  # after the time and name
    order = [
        "slow request finished",
        "lifespan shutdown: close the database pool here",
        "shutdown hook: the server has stopped, flush the metrics here",
    ]
    assert [message for message in said if message in order] == order


# --- serve(): arguments and the run() it needs


async def never_called(scope: Scope, receive: Any, send: Any) -> None:
    """An app that is never called: the arguments fail first."""
    pytest.fail("serve() must check its arguments before it starts the server")


def test_uvicorn_rejects_config_and_keywords_together() -> None:
    """A ready Config or keywords for one, not both."""
    config = uvicorn_package.Config(never_called)
    with pytest.raises(TypeError, match="not both; got config and host, port"):
        anyio.run(lambda: uvicorn.serve(never_called, config=config, port=1, host="127.0.0.1"))


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        (object(), TypeError, "config must be a uvicorn.Config or None"),
        (uvicorn_package.Config(readiness_app), ValueError, "config.app must be app"),
    ],
    ids=["not-a-config", "other-app"],
)
def test_uvicorn_checks_its_config(config: Any, error: type[Exception], match: str) -> None:
    """The config must be a uvicorn.Config for this very app."""
    with pytest.raises(error, match=match):
        anyio.run(lambda: uvicorn.serve(never_called, config=config))


def test_uvicorn_refuses_trio() -> None:
    """On trio, uvicorn.serve() says that Uvicorn needs asyncio, and what to use instead."""

    async def main() -> None:
        await uvicorn.serve(never_called, port=0)

    with pytest.raises(RuntimeError, match="asyncio only, and this program runs on trio"):
        TRIO.run(main)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"config": {"bind": "x"}}, TypeError, "config must be a hypercorn.config.Config"),
        ({"bind": 8000}, TypeError, "bind must be a string, a list of strings or None"),
        ({"bind": ["a", 1]}, TypeError, "bind must be a string, a list of strings or None"),
        ({"bind": []}, ValueError, r"bind must name at least one address, got \[\]"),
    ],
)
def test_hypercorn_checks_its_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad arguments fail at once, naming the argument."""
    with pytest.raises(error, match=match):
        anyio.run(lambda: hypercorn.serve(never_called, **kwargs))


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_serve_needs_run(server: str) -> None:
    """Outside run() there is nobody to say when to stop: serve() says so."""
    serve = uvicorn.serve if server == "uvicorn" else hypercorn.serve
    with pytest.raises(RuntimeError, match=rf"contrib\.{server}\.serve\(\) runs the server under"):
        anyio.run(serve, never_called)


# --- serve() in this process


async def wait_ready() -> None:
    """Wait until the server listens; only with run(..., ready_on_start=False).

    Otherwise the service is ready as main starts, and a signal meets a server that is
    still starting up.
    """
    with anyio.fail_after(WAIT):
        while not graceful_async.is_ready():  # noqa: ASYNC110 (there is no event to wait on)
            await anyio.sleep(0.01)


async def stuck_on_shutdown(scope: Scope, receive: Any, send: Any) -> None:
    """An app whose lifespan shutdown never completes."""
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await anyio.sleep_forever()


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_a_stuck_server_shutdown_is_cut_at_the_grace_deadline(
    server: str, logs: pytest.LogCaptureFixture
) -> None:
    """The server's own shutdown outlives the drain deadline, but not the grace period."""
    hooks: list[str] = []

    async def main() -> None:
        graceful_async.on_shutdown(hooks.append, "hook ran")
        async with anyio.create_task_group() as tg:
            if server == "uvicorn":
                config = uvicorn_package.Config(stuck_on_shutdown, port=0, log_level="error")
                tg.start_soon(partial(uvicorn.serve, stuck_on_shutdown, config=config))
            else:
                tg.start_soon(partial(hypercorn.serve, stuck_on_shutdown, bind=["127.0.0.1:0"]))
            await wait_ready()
            graceful_async.request_shutdown(exit_code=3)

    with pytest.raises(SystemExit) as exited:
        ASYNCIO.run(main, grace=1, drain=0.2, ready_on_start=False)
    assert exited.value.code == 3
    assert hooks == ["hook ran"]
    assert "the server's shutdown was cut off" in logs.text


@pytest.mark.parametrize("backend", [ASYNCIO, TRIO], ids=["asyncio", "trio"])
def test_a_server_error_comes_out_of_serve_as_it_is(backend: Backend) -> None:
    """serve() raises what the server raised, not an exception group around it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            await hypercorn.serve(readiness_app, bind=f"127.0.0.1:{port}")

        with pytest.raises(OSError, match="in use"):
            backend.run(main)
    # Hypercorn drops the socket it could not bind without closing it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_a_uvicorn_that_fails_to_start_is_an_error() -> None:
    """A failed lifespan startup ends the run with Uvicorn's status, never ready."""
    ready: list[bool] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_note_readiness, ready)
            await uvicorn.serve(app, host="127.0.0.1", port=0, lifespan="on")

    with pytest.raises(SystemExit) as exited:
        ASYNCIO.run(main, ready_on_start=False)
    assert exited.value.code == 3  # Uvicorn's STARTUP_FAILURE
    assert ready == []


async def _note_readiness(ready: list[bool]) -> None:
    while True:
        if graceful_async.is_ready():
            ready.append(True)
        await anyio.sleep(0.005)


def test_hypercorn_leaves_the_given_config_alone(backend: Backend) -> None:
    """serve() works on a copy: the caller's Config keeps its graceful_timeout."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 7.0

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hypercorn.serve, readiness_app, config)
            await wait_ready()
            graceful_async.request_shutdown()

    with pytest.raises(SystemExit) as exited:
        backend.run(main, ready_on_start=False)
    assert exited.value.code == 0
    assert config.graceful_timeout == 7.0
    assert "create_sockets" not in vars(config)


def test_a_second_signal_in_the_pre_drain_delay_stops_the_server_at_once(
    logs: pytest.LogCaptureFixture,
) -> None:
    """A second signal ends the delay and stops the server at once, listener closed."""
    stopping: list[float] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(uvicorn.serve, stuck_on_shutdown, port=0, log_level="error"))
            await wait_ready()
            os.kill(os.getpid(), signal.SIGTERM)
            with anyio.fail_after(WAIT):
                while "still serving for the pre-drain delay" not in logs.text:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await anyio.sleep(float(os.environ.get("EXTRA", "0")))
            stopping.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SystemExit) as exited:
        ASYNCIO.run(main, grace=WAIT, drain=5, pre_drain_delay=10, ready_on_start=False)
    assert exited.value.code == 143
    assert time.monotonic() - stopping[0] < WAIT / 2  # not held up by the delay or the drain

"""Bad input fails before anything runs, and the message names the argument."""

from __future__ import annotations

import functools
import re
import signal
import sys
from typing import Any

import pytest

import graceful_async

calls: list[str] = []


async def main() -> None:
    calls.append("main ran")


def sync_main() -> None:
    pytest.fail("must not run")


class AsyncCallable:
    async def __call__(self) -> str:
        return "called"


@pytest.fixture(autouse=True)
def _no_calls() -> Any:
    calls.clear()
    yield
    assert calls == [], "main must not run when an argument is bad"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"backend": "curio"},
            ValueError,
            r"backend must be one of 'asyncio', 'trio', got 'curio'",
        ),
        ({"grace": -1}, ValueError, r"grace must be a finite number of seconds >= 0, got -1"),
        ({"grace": float("nan")}, ValueError, r"grace must be a finite number .* got nan"),
        ({"grace": float("inf")}, ValueError, r"grace must be a finite number .* got inf"),
        ({"grace": "8"}, TypeError, r"grace must be a finite number of seconds >= 0, got '8'"),
        ({"grace": True}, TypeError, r"grace must be a finite number"),
        (
            {"grace": 1e10},
            ValueError,
            r"grace must be at most 9223372036 seconds \(about 292 years, the longest wait "
            r"this platform can represent\), got 10000000000.0",
        ),
        ({"grace": 10, "drain": 1e10}, ValueError, r"drain must be at most 9223372036 seconds"),
        ({"dump_signal": signal.SIGTERM}, ValueError, r"dump_signal must not be one of the"),
        ({"dump_signal": signal.SIGKILL}, ValueError, r"dump_signal cannot include SIGKILL"),
        ({"dump_signal": "SIGUSR1"}, TypeError, r"dump_signal must be None or a signal number"),
        ({"drain": -1}, ValueError, r"drain must be a finite number of seconds >= 0, got -1"),
        ({"drain": "2"}, TypeError, r"drain must be a finite number of seconds >= 0, got '2'"),
        ({"drain": float("inf")}, ValueError, r"drain must be a finite number"),
        (
            {"grace": 2, "drain": 3},
            ValueError,
            r"drain must be shorter than the grace period \(2 s\), got 3",
        ),
        ({"signals": (signal.SIGKILL,)}, ValueError, r"signals cannot include SIGKILL"),
        ({"signals": (signal.SIGSTOP,)}, ValueError, r"signals cannot include SIGSTOP"),
        ({"signals": (0,)}, ValueError, r"signals must hold signal numbers, and 0 is not one"),
        ({"signals": (999,)}, ValueError, r"and 999 is not one"),
        ({"signals": ("SIGTERM",)}, ValueError, r"signals must hold signal numbers"),
        ({"signals": "SIGTERM"}, ValueError, r"signals must be an iterable of signal numbers"),
        ({"signals": 15}, ValueError, r"signals must be an iterable"),
        ({"exit_codes": [15]}, TypeError, r"exit_codes must be a mapping"),
        ({"exit_codes": {signal.SIGKILL: 0}}, ValueError, r"exit_codes cannot include SIGKILL"),
        ({"exit_codes": {signal.SIGTERM: 300}}, ValueError, r"exit_codes\[.*\] must be an int"),
        ({"exit_codes": {signal.SIGTERM: "0"}}, TypeError, r"exit_codes\[.*\] must be an int"),
        ({"backend_options": []}, TypeError, r"backend_options must be a mapping or None"),
        (
            {"backend_options": {"use_uvlop": True}},
            ValueError,
            r"backend_options for asyncio may hold .* got unknown 'use_uvlop'",
        ),
        (
            {"backend": "trio", "backend_options": {"use_uvloop": True}},
            ValueError,
            r"backend_options for trio may hold 'clock', .* got unknown 'use_uvloop'",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    """Each bad argument raises before main starts, naming the argument."""
    with pytest.raises(error, match=match):
        graceful_async.run(main, **kwargs)


def returns_a_coroutine() -> Any:
    return main()  # pragma: no cover - never called


@pytest.mark.parametrize("bad", [sync_main, None, returns_a_coroutine, AsyncCallable, 42])
def test_main_must_be_an_async_callable(bad: Any) -> None:
    """A main that is not an async function is a TypeError naming main."""
    with pytest.raises(TypeError, match="main must be an async function"):
        graceful_async.run(bad)


def test_async_callables_of_other_shapes_are_accepted() -> None:
    """partial() of an async function and objects with async __call__ are fine."""

    async def add(a: int, b: int) -> int:
        return a + b

    assert graceful_async.run(functools.partial(add, 1), 2) == 3
    assert graceful_async.run(AsyncCallable()) == "called"


def test_bad_grace_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad GRACEFUL_ASYNC_GRACE is reported by name."""
    monkeypatch.setenv("GRACEFUL_ASYNC_GRACE", "soon")
    with pytest.raises(ValueError, match=r"GRACEFUL_ASYNC_GRACE must be a finite number.*'soon'"):
        graceful_async.run(main)
    monkeypatch.setenv("GRACEFUL_ASYNC_GRACE", "-2")
    with pytest.raises(ValueError, match="GRACEFUL_ASYNC_GRACE must be a finite"):
        graceful_async.run(main)
    monkeypatch.setenv("GRACEFUL_ASYNC_GRACE", "1e12")
    with pytest.raises(ValueError, match="GRACEFUL_ASYNC_GRACE must be at most 9223372036"):
        graceful_async.run(main)


def test_grace_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """GRACEFUL_ASYNC_GRACE sets the grace period; the argument wins over it."""
    from graceful_async._config import make_config

    monkeypatch.setenv("GRACEFUL_ASYNC_GRACE", "2.5")
    args = ("asyncio", None, None, (signal.SIGTERM,), None)
    assert make_config(main, *args).grace == 2.5
    assert make_config(main, "asyncio", None, 1, (signal.SIGTERM,), None).grace == 1.0
    monkeypatch.delenv("GRACEFUL_ASYNC_GRACE")
    assert make_config(main, *args).grace == graceful_async.DEFAULT_GRACE == 8.0


def test_drain_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """drain: half the grace period by default; GRACEFUL_ASYNC_DRAIN; the argument wins."""
    from graceful_async._config import make_config

    def drain(grace: float | None = None, drain: float | None = None) -> float:
        return make_config(main, "asyncio", None, grace, (), None, drain).drain

    assert drain() == graceful_async.DEFAULT_GRACE / 2
    assert drain(grace=3) == 1.5
    assert drain(grace=3, drain=2.9) == 2.9
    assert drain(grace=0, drain=0) == 0.0
    with pytest.raises(ValueError, match=r"drain must be shorter than the grace period \(3 s\)"):
        drain(grace=3, drain=3)
    assert drain(drain=0) == 0.0
    monkeypatch.setenv("GRACEFUL_ASYNC_DRAIN", "2")
    assert drain() == 2.0
    assert drain(drain=1) == 1.0
    monkeypatch.setenv("GRACEFUL_ASYNC_DRAIN", "20")
    with pytest.raises(ValueError, match=r"variable GRACEFUL_ASYNC_DRAIN must be shorter"):
        drain()
    monkeypatch.setenv("GRACEFUL_ASYNC_DRAIN", "later")
    with pytest.raises(ValueError, match=r"GRACEFUL_ASYNC_DRAIN must be a finite number.*'later'"):
        drain()


@pytest.mark.parametrize(
    ("module", "kwargs", "extra"),
    [
        ("trio", {"backend": "trio"}, "graceful-async[trio]"),
        ("uvloop", {"backend_options": {"use_uvloop": True}}, "graceful-async[uvloop]"),
    ],
)
def test_missing_optional_backend(
    monkeypatch: pytest.MonkeyPatch, module: str, kwargs: dict[str, Any], extra: str
) -> None:
    """Asking for trio or uvloop without it installed says which extra to install."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModuleNotFoundError, match="pip install " + re.escape(extra)):
        graceful_async.run(main, **kwargs)

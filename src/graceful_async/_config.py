"""Checking run()'s arguments eagerly, before anything runs."""

from __future__ import annotations

import functools
import inspect
import math
import os
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._backends import BACKEND_NAMES, backend_named
from ._shutdown import check_exit_code

DEFAULT_GRACE = 8.0
"""Seconds of grace when neither ``grace=`` nor ``GRACEFUL_ASYNC_GRACE`` says otherwise.

It fits inside ``docker stop``'s 10 s, leaving room for the interpreter to exit.
"""

GRACE_ENV = "GRACEFUL_ASYNC_GRACE"
DRAIN_ENV = "GRACEFUL_ASYNC_DRAIN"
PRE_DRAIN_DELAY_ENV = "GRACEFUL_ASYNC_PRE_DRAIN_DELAY"

_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}

#: The longest duration run() accepts, in seconds: the longest timeout the platform's
#: waits can represent (`threading.TIMEOUT_MAX`, 9,223,372,036 s on 64-bit Linux).
LONGEST_DURATION = threading.TIMEOUT_MAX


@dataclass(frozen=True)
class RunConfig:
    backend: str
    backend_options: dict[str, Any]
    grace: float
    drain: float
    signals: tuple[signal.Signals, ...]
    dump_signal: signal.Signals | None
    exit_codes: dict[signal.Signals, int]
    pre_drain_delay: float = 0.0
    ready_on_start: bool = True
    reload_signal: signal.Signals | None = None
    fast_exit: bool = False


def is_async_callable(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - callable() accepts sync ones
    return not inspect.isclass(fn) and inspect.iscoroutinefunction(call)


def make_config(
    main: Callable[..., Any],
    backend: object,
    backend_options: object,
    grace: object,
    signals: object,
    exit_codes: object,
    drain: object = None,
    dump_signal: object = None,
    *,
    pre_drain_delay: object = None,
    ready_on_start: object = True,
    reload_signal: object = None,
    fast_exit: object = False,
) -> RunConfig:
    if not is_async_callable(main):
        raise TypeError(
            f"main must be an async function (async def), got {main!r}; "
            "graceful_async.run() awaits it on the event loop"
        )
    checked_grace = _check_grace(grace)
    checked_signals = _check_signals(signals)
    delay = _check_pre_drain_delay(pre_drain_delay, checked_grace)
    if not isinstance(ready_on_start, bool):
        raise TypeError(f"ready_on_start must be True or False, got {ready_on_start!r}")
    if not isinstance(fast_exit, bool):
        raise TypeError(f"fast_exit must be True or False, got {fast_exit!r}")
    checked_dump = _check_extra_signal("dump_signal", dump_signal, checked_signals)
    checked_reload = _check_extra_signal("reload_signal", reload_signal, checked_signals)
    if checked_dump is not None and checked_dump == checked_reload:
        raise ValueError(f"dump_signal and reload_signal must differ, both are {checked_dump.name}")
    return RunConfig(
        backend=_check_backend(backend, backend_options),
        backend_options=_check_backend_options(backend, backend_options),
        grace=checked_grace,
        drain=_check_drain(drain, checked_grace, delay),
        signals=checked_signals,
        dump_signal=checked_dump,
        exit_codes=_check_exit_codes(exit_codes),
        pre_drain_delay=delay,
        ready_on_start=ready_on_start,
        reload_signal=checked_reload,
        fast_exit=fast_exit,
    )


def _check_backend(backend: object, options: object) -> str:
    import importlib.util  # deferred: only run() checks a backend

    if backend not in BACKEND_NAMES:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))}, got {backend!r}"
        )
    package = backend_named(backend).package
    if package is not None and importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(
            f"backend={backend!r} needs {package}, which is not installed; "
            f"install it with: pip install graceful-async[{package}]"
        )
    if (
        isinstance(options, Mapping)
        and options.get("use_uvloop")
        and importlib.util.find_spec("uvloop") is None
    ):
        raise ModuleNotFoundError(
            "backend_options={'use_uvloop': True} needs uvloop, which is not installed; "
            "install it with: pip install graceful-async[uvloop]"
        )
    return str(backend)


def _check_backend_options(backend: object, options: object) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"backend_options must be a mapping or None, got {options!r}")
    assert isinstance(backend, str)  # checked by _check_backend before
    known = backend_named(backend).option_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"backend_options for {backend} may hold {', '.join(map(repr, known))}, "
            f"got unknown {', '.join(map(repr, unknown))}"
        )
    return dict(options)


def _check_grace(grace: object) -> float:
    seconds = _seconds("grace", grace, GRACE_ENV)
    return DEFAULT_GRACE if seconds is None else seconds


def _check_pre_drain_delay(delay: object, grace: float) -> float:
    seconds = _seconds("pre_drain_delay", delay, PRE_DRAIN_DELAY_ENV)
    if seconds is None:
        return 0.0
    # At least half the grace period is left for the drain, the cancellation, the
    # cleanup and the hooks: a delay that ran up to the soft deadline would leave every
    # finally block and hook cut off before it began.
    if seconds >= grace / 2 and seconds > 0:
        source = _source("pre_drain_delay", delay, PRE_DRAIN_DELAY_ENV)
        raise ValueError(
            f"{source} must be shorter than half the grace period ({grace:g} s), got "
            f"{seconds:g}; the drain, the cancellation and the hooks that follow it need "
            "the other half"
        )
    return seconds


def _check_drain(drain: object, grace: float, delay: float = 0.0) -> float:
    seconds = _seconds("drain", drain, DRAIN_ENV)
    if seconds is None:
        # Half of what the pre-drain delay leaves of the grace period.
        return (grace - delay) / 2
    if seconds + delay >= grace and seconds > 0:
        source = _source("drain", drain, DRAIN_ENV)
        less = f" less the pre-drain delay ({delay:g} s)" if delay else ""
        raise ValueError(
            f"{source} must be shorter than the grace period ({grace:g} s){less}, got "
            f"{seconds:g}; the drain phase is part of it, and the "
            "cancellation and hooks that follow need time too"
        )
    return seconds


def _source(name: str, value: object, env: str) -> str:
    return name if value is not None else f"the environment variable {env}"


def _seconds(name: str, value: object, env: str) -> float | None:
    """Check a duration given as an argument or, if that is None, in ``env``."""
    source = name
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return None
        source = f"the environment variable {env}"
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(
                f"{source} must be a finite number of seconds >= 0, got {raw!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{source} must be a finite number of seconds >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{source} must be a finite number of seconds >= 0, got {value!r}")
    if value > LONGEST_DURATION:
        # The watchdog and the exit guard wait in system calls whose clocks stop here
        # (nanoseconds in 64 bits): a longer wait raised in the watchdog thread and left
        # the process with no deadline, deaf to a second and third signal.
        raise ValueError(
            f"{source} must be at most {LONGEST_DURATION:.0f} seconds (about 292 years, the "
            f"longest wait this platform can represent), got {value!r}"
        )
    return float(value)


def _to_signal(name: str, value: object) -> signal.Signals:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must hold signal numbers such as signal.SIGTERM, got {value!r}")
    try:
        sig = signal.Signals(value)
    except ValueError:
        raise ValueError(f"{name} must hold signal numbers, and {value!r} is not one") from None
    if sig in _UNCATCHABLE:
        raise ValueError(f"{name} cannot include {sig.name}: the kernel never lets it be caught")
    return sig


def _check_signals(signals: object) -> tuple[signal.Signals, ...]:
    if isinstance(signals, (str, bytes)) or not isinstance(signals, Iterable):
        raise ValueError(f"signals must be an iterable of signal numbers, got {signals!r}")
    result: list[signal.Signals] = []
    for value in signals:
        sig = _to_signal("signals", value)
        if sig not in result:
            result.append(sig)
    return tuple(result)


_EXAMPLES = {"dump_signal": "signal.SIGUSR1", "reload_signal": "signal.SIGHUP"}


def _check_extra_signal(
    name: str, value: object, signals: tuple[signal.Signals, ...]
) -> signal.Signals | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be None or a signal number such as {_EXAMPLES[name]}, got {value!r}"
        )
    sig = _to_signal(name, value)
    if sig in signals:
        raise ValueError(f"{name} must not be one of the shutdown signals, got {sig.name}")
    return sig


def _check_exit_codes(exit_codes: object) -> dict[signal.Signals, int]:
    if exit_codes is None:
        return {}
    if not isinstance(exit_codes, Mapping):
        raise TypeError(
            f"exit_codes must be a mapping of signal to exit status, got {exit_codes!r}"
        )
    return {
        _to_signal("exit_codes", sig): check_exit_code(f"exit_codes[{sig!r}]", code)
        for sig, code in exit_codes.items()
    }

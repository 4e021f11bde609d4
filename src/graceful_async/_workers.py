"""@worker: a long-running loop with a restart policy, whose failure shuts down the program."""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar, overload

import anyio

from ._config import is_async_callable
from ._lifecycle import Lifecycle
from ._log import logger
from ._shutdown import Trigger, run_on_this_loop

P = ParamSpec("P")
T = TypeVar("T")

RestartPolicy = Literal["never", "on-failure", "always"]
_POLICIES = ("never", "on-failure", "always")


@overload
def worker(fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T | None]]: ...


@overload
def worker(
    *,
    restart: RestartPolicy = "never",
    max_restarts: int | None = 5,
    window: float = 60.0,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    name: str | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T | None]]]: ...


def worker(
    fn: Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    restart: RestartPolicy = "never",
    max_restarts: int | None = 5,
    window: float = 60.0,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    name: str | None = None,
) -> Any:
    """Make an ``async def`` loop a supervised worker, bare or with options.

    The result is still an ordinary async function: start it with any task group's
    ``start_soon``, or pass it straight to `graceful_async.run`.

    When the function raises, the policy decides. ``"never"`` gives up at once;
    ``"on-failure"`` restarts it after an exception; ``"always"`` also restarts it when it
    returns. Restarts wait ``backoff`` seconds, doubling with each restart in the current
    ``window`` up to ``max_backoff``, with jitter (each wait is drawn between half and
    all of that). More than ``max_restarts`` restarts within ``window`` seconds gives up.

    Giving up logs the traceback and starts a graceful shutdown of the whole program,
    whose exit status becomes 1; the worker returns None, so its siblings are not
    cancelled at once but get their drain phase and their ``finally`` clauses. Outside
    `graceful_async.run()`, giving up re-raises the exception instead.

    The shutdown's cancellation is never a failure, and nothing restarts once the
    shutdown has begun. Each restart is logged with the worker's name, the attempt
    and the delay; the name also shows in the stuck report.

    Args:
        fn: The async function, when used bare as ``@graceful_async.worker``.
        restart: ``"never"``, ``"on-failure"`` or ``"always"``.
        max_restarts: Restarts allowed within ``window`` seconds; None for no limit.
        window: The sliding window, in seconds, for ``max_restarts`` and the backoff.
        backoff: The wait before the first restart, in seconds.
        max_backoff: The longest wait between restarts, in seconds.
        name: The name for logs and the stuck report; defaults to the function's
            qualified name.

    Returns:
        The wrapped async function, or a decorator that makes one.

    Raises:
        TypeError: If the function is not an async function, or an option has the
            wrong type.
        ValueError: If an option is out of range.

    Example:
        ```python
        @graceful_async.worker(restart="on-failure", max_restarts=3)
        async def consume(queue):
            async for job in graceful_async.drain(queue):
                await handle(job)
        ```
    """
    policy = _Policy.check(restart, max_restarts, window, backoff, max_backoff, name)
    if fn is None:
        return functools.partial(_wrap, policy=policy)
    return _wrap(fn, policy=policy)


def _wrap(
    fn: Callable[P, Awaitable[T]], *, policy: _Policy
) -> Callable[P, Coroutine[Any, Any, T | None]]:
    if not is_async_callable(fn):
        raise TypeError(f"worker() needs an async function (async def), got {fn!r}")
    name = policy.name or getattr(fn, "__qualname__", None) or repr(fn)

    @functools.wraps(fn)
    async def supervised(*args: P.args, **kwargs: P.kwargs) -> T | None:
        return await _Supervisor(name, policy).run(lambda: fn(*args, **kwargs))

    return supervised


class _Policy:
    __slots__ = ("backoff", "max_backoff", "max_restarts", "name", "restart", "window")

    def __init__(
        self,
        restart: str,
        max_restarts: int | None,
        window: float,
        backoff: float,
        max_backoff: float,
        name: str | None,
    ) -> None:
        self.restart = restart
        self.max_restarts = max_restarts
        self.window = window
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.name = name

    @classmethod
    def check(
        cls,
        restart: object,
        max_restarts: object,
        window: object,
        backoff: object,
        max_backoff: object,
        name: object,
    ) -> _Policy:
        if restart not in _POLICIES:
            raise ValueError(
                f"restart must be one of {', '.join(map(repr, _POLICIES))}, got {restart!r}"
            )
        if max_restarts is not None and (
            isinstance(max_restarts, bool) or not isinstance(max_restarts, int)
        ):
            raise TypeError(f"max_restarts must be an int >= 0 or None, got {max_restarts!r}")
        if max_restarts is not None and max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0 or None, got {max_restarts!r}")
        seconds = {
            "window": _seconds("window", window, positive=True),
            "backoff": _seconds("backoff", backoff),
            "max_backoff": _seconds("max_backoff", max_backoff),
        }
        if seconds["max_backoff"] < seconds["backoff"]:
            raise ValueError(
                f"max_backoff must be at least backoff ({backoff!r} s), got {max_backoff!r}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        return cls(
            str(restart),
            max_restarts,
            seconds["window"],
            seconds["backoff"],
            seconds["max_backoff"],
            name,
        )


def _seconds(name: str, value: object, *, positive: bool = False) -> float:
    what = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number of seconds {what}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number of seconds {what}, got {value!r}")
    return float(value)


class _Supervisor:
    """One call of a worker: runs it, restarts it, or gives up."""

    def __init__(self, name: str, policy: _Policy) -> None:
        self.name = name
        self.policy = policy
        self.attempt = 1
        self.restarts: deque[float] = deque()

    async def run(self, call: Callable[[], Awaitable[T]]) -> T | None:
        token = object()
        run = run_on_this_loop()
        try:
            while True:
                if run is not None:
                    run.running_workers[token] = f"{self.name} (attempt {self.attempt})"
                try:
                    result = await call()
                except Exception as exc:
                    if await self._failed(exc, run):
                        continue
                    return None
                if not await self._returned(run):
                    return result
        finally:
            if run is not None:
                run.running_workers.pop(token, None)

    async def _failed(self, exc: Exception, run: Lifecycle | None) -> bool:
        """Handle an exception; True to run the worker again."""
        if self._shutting_down(run):
            return self._give_up(exc, run, "failed during the shutdown")
        if self.policy.restart == "never":
            return self._give_up(exc, run, "failed")
        return await self._restart(run, exc)

    async def _returned(self, run: Lifecycle | None) -> bool:
        """Handle a normal return; True to run the worker again."""
        if self.policy.restart != "always" or self._shutting_down(run):
            return False
        return await self._restart(run, None)

    async def _restart(self, run: Lifecycle | None, exc: Exception | None) -> bool:
        policy = self.policy
        now = time.monotonic()
        while self.restarts and self.restarts[0] <= now - policy.window:
            self.restarts.popleft()
        what = "failed" if exc is not None else "returned"
        if policy.max_restarts is not None and len(self.restarts) >= policy.max_restarts:
            why = f"{what} after {len(self.restarts)} restart(s) within {policy.window:g} s"
            if exc is None:
                exc = RuntimeError(f"worker {self.name!r} keeps returning; restart='always'")
            return self._give_up(exc, run, why)
        # Cap the exponent: with max_restarts=None the count is unbounded.
        ceiling = min(policy.max_backoff, policy.backoff * 2.0 ** min(len(self.restarts), 64))
        import random  # deferred: only a restart needs it

        delay = ceiling * random.uniform(0.5, 1.0)
        self.restarts.append(now)
        self.attempt += 1
        logger.warning(
            "worker %r %s; restarting in %.2f s (attempt %d)",
            self.name,
            what,
            delay,
            self.attempt,
            exc_info=exc,
        )
        # The backoff ends early if the shutdown begins: the worker is not restarted then.
        with anyio.move_on_after(delay):
            if run is not None:
                await run.wait_requested()
            else:
                await anyio.sleep_forever()
        return not self._shutting_down(run)

    def _give_up(self, exc: Exception, run: Lifecycle | None, why: str) -> bool:
        if run is None:
            raise exc
        logger.error("worker %r %s; shutting down the program", self.name, why, exc_info=exc)
        description = f"worker {self.name!r} {why}: {exc!r}"
        run.failed_workers.append(description)
        run.state.trigger_shutdown(Trigger("failure", reason=description, exit_code=1))
        return False

    @staticmethod
    def _shutting_down(run: Lifecycle | None) -> bool:
        return run is not None and run.state.stopping

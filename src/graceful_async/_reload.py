"""Reload hooks: run on the reload signal, on the loop, one at a time, never during shutdown."""

from __future__ import annotations

import inspect
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import anyio

from ._hooks import Hook, check_hook, name_of
from ._lifecycle import Event, Lifecycle
from ._log import logger
from ._scopes import bounded_scope, check_timeout
from ._shutdown import current_run

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    if sys.version_info >= (3, 11):
        from typing import TypeVarTuple, Unpack
    else:
        from typing_extensions import TypeVarTuple, Unpack

    PosArgsT = TypeVarTuple("PosArgsT")

T = TypeVar("T")


@final
class ReloadHook(Hook[T]):
    """A registered reload hook, as returned by `on_reload`.

    Calling it calls the wrapped function, so a function decorated with ``@on_reload``
    stays usable as itself.
    """

    __slots__ = ()

    def unregister(self) -> None:
        """Remove the hook. Does nothing if it was removed already."""
        with _lock:
            if self in _hooks:
                _hooks.remove(self)


# Unlike shutdown hooks, reload hooks stay registered: they run at every reload, in
# the order they were registered, until unregistered.
_lock = threading.Lock()
_hooks: list[ReloadHook[Any]] = []


@contextmanager
def registrations_restored() -> Iterator[None]:
    """Put the reload hooks back as they were before the block (for tests)."""
    with _lock:
        saved = list(_hooks)
    try:
        yield
    finally:
        with _lock:
            _hooks[:] = saved


@overload
def on_reload(
    fn: Callable[[Unpack[PosArgsT]], T],
    /,
    *args: Unpack[PosArgsT],
    timeout: float | None = None,
    name: str | None = None,
) -> ReloadHook[T]: ...


@overload
def on_reload(
    fn: None = None, /, *, timeout: float | None = None, name: str | None = None
) -> Callable[[Callable[[], T]], ReloadHook[T]]: ...


def on_reload(  # type: ignore[misc]
    fn: Callable[..., T] | None = None,
    /,
    *args: Any,
    timeout: float | None = None,
    name: str | None = None,
) -> ReloadHook[T] | Callable[[Callable[[], T]], ReloadHook[T]]:
    """Register ``fn(*args)`` to run each time the service is asked to reload.

    A reload is asked for with the ``reload_signal`` given to `graceful_async.run()`,
    typically ``kill -HUP``. The hooks run on the event loop, in the order they were
    registered, one at a time; a reload asked for while one runs follows it (several
    become one). A hook that raises is logged with its traceback, the other hooks still
    run, and the service keeps running. Reloads never overlap the shutdown: one asked
    for once the shutdown has begun is ignored with a log line, and one under way when
    the shutdown begins may finish during the drain phase, then is cancelled with main.

    Works as a plain call, as a bare decorator (``@on_reload``) and as a decorator with
    options (``@on_reload(timeout=5)``). A hook stays registered, for every reload and
    every later `run()`, until it is unregistered.

    Args:
        fn: A sync or async callable.
        *args: Positional arguments for ``fn``.
        timeout: Seconds this hook may take at most before it is cancelled, or None
            for no limit.
        name: The name used in logs; ``fn``'s qualified name by default.

    Returns:
        A handle whose ``unregister()`` removes the hook. (With the decorator forms the
        decorated name is bound to this handle, which still calls ``fn`` when called.)

    Raises:
        TypeError: If ``fn`` is not callable or ``name`` is not a string.
        ValueError: If ``timeout`` is negative or not finite.

    Example:
        ```python
        async def main() -> None:
            settings = Settings.load()
            graceful_async.on_reload(settings.reload)
            await serve(settings)

        graceful_async.run(main, reload_signal=signal.SIGHUP)
        ```
    """
    check_timeout(timeout)
    check_hook(fn, name)
    if fn is None:

        def decorate(func: Callable[[], T]) -> ReloadHook[T]:
            return on_reload(func, timeout=timeout, name=name)

        return decorate
    hook = ReloadHook(fn, args, timeout, name or name_of(fn))
    with _lock:
        _hooks.append(hook)
    run = current_run()
    if run is not None and run.find(Reloader) is None:
        logger.warning(
            "reload hook %s registered, but run() was given no reload_signal, so nothing "
            "will run it; pass run(..., reload_signal=signal.SIGHUP)",
            hook.name,
        )
    return hook


class Reloader:
    """Runs the reload hooks when the reload signal arrives; attached by run() when it
    is given a ``reload_signal``.

    A task beside main waits for requests. The shutdown's cancel stops it, and it is
    waited for once main's tree has unwound: a reload never overlaps the shutdown hooks.
    """

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._state = lifecycle.state
        # anyio's scopes and events are made on the loop, as the task starts.
        self._scope: anyio.CancelScope | None = None
        self._wanted: anyio.Event | None = None
        self._done: anyio.Event | None = None
        lifecycle.run_beside_main("graceful_async reloader", self.run)
        lifecycle.subscribe(Event.RELOAD, self.request)
        lifecycle.subscribe(Event.CANCEL, self.stop)
        lifecycle.subscribe_unwound(self.wait_stopped)

    def request(self) -> None:
        """Ask for a reload (on the loop). Requests during a reload make one more."""
        if self._state.trigger is not None:
            logger.info("reload requested during shutdown: ignored")
            return
        assert self._wanted is not None, "the reloader's task starts before any request"
        self._wanted.set()

    def stop(self) -> None:
        """Cancel a reload under way and take no more (the shutdown's cancel)."""
        if self._scope is not None:
            self._scope.cancel("shutting down")

    async def wait_stopped(self) -> None:
        """Wait until the task has ended, after stop()."""
        self.stop()
        if self._done is not None:
            with bounded_scope():
                await self._done.wait()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        self._lifecycle.own_tasks.add(self._lifecycle.current_task())
        self._scope = anyio.CancelScope()
        self._wanted = anyio.Event()
        self._done = anyio.Event()
        try:
            with self._scope:
                task_status.started()
                while True:
                    await self._wanted.wait()
                    self._wanted = anyio.Event()
                    await self._reload()
        finally:
            self._done.set()

    async def _reload(self) -> None:
        with _lock:
            hooks = list(_hooks)
        logger.info("reloading: %d hook(s)", len(hooks))
        self._lifecycle.emit(Event.RELOADING)
        started = time.monotonic()
        failed = 0
        for hook in hooks:
            if self._state.trigger is not None:
                logger.info("reload cut short by the shutdown")
                return
            failed += not await _run_one(hook)
        self._lifecycle.emit(Event.RELOADED)
        logger.info(
            "reload done in %.3f s%s",
            time.monotonic() - started,
            f"; {failed} hook(s) failed" if failed else "",
        )


async def _run_one(hook: ReloadHook[Any]) -> bool:
    """Run one hook; log and swallow its failure. True if it succeeded."""
    limit = math.inf if hook.timeout is None else hook.timeout
    try:
        with anyio.move_on_after(limit) as scope:
            result = hook.fn(*hook.args)
            if inspect.isawaitable(result):
                await result
    except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
        raise  # the shutdown's cancellation, or the user's Ctrl+C
    except BaseException:
        # The service keeps running on its old configuration: a bad reload must not
        # take it down, not even one that calls sys.exit() (argparse does, on a bad
        # option).
        logger.exception("reload hook %s failed", hook.name)
        return False
    if scope.cancelled_caught:
        logger.warning(
            "reload hook %s overran its %.2f s timeout and was cancelled", hook.name, limit
        )
        return False
    return True

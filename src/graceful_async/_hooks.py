"""The on_shutdown registry and the hook phase: last registered first, each bounded."""

from __future__ import annotations

import inspect
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final, overload

from ._log import logger
from ._scopes import bounded_scope, check_timeout

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle

    if sys.version_info >= (3, 11):
        from typing import TypeVarTuple, Unpack
    else:
        from typing_extensions import TypeVarTuple, Unpack

    PosArgsT = TypeVarTuple("PosArgsT")

T = TypeVar("T")


class Hook(Generic[T]):
    """A registered hook: a function, its arguments, a time limit and a name."""

    __slots__ = ("args", "fn", "name", "timeout")

    def __init__(
        self, fn: Callable[..., T], args: tuple[Any, ...], timeout: float | None, name: str
    ) -> None:
        self.fn = fn
        self.args = args
        self.timeout = timeout
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} timeout={self.timeout!r}>"


@final
class ShutdownHook(Hook[T]):
    """A registered shutdown hook, as returned by `on_shutdown`.

    Calling it calls the wrapped function, so a function decorated with
    ``@on_shutdown`` stays usable as itself.
    """

    __slots__ = ()

    def unregister(self) -> None:
        """Remove the hook. Does nothing if it was removed already or has run."""
        _registry.remove(self)


def check_hook(fn: object, name: object) -> None:
    """Check the arguments common to every kind of hook."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string or None, got {name!r}")
    if fn is not None and not callable(fn):
        raise TypeError(f"fn must be a callable (sync or async), got {fn!r}")


def name_of(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


class _Registry:
    """All hooks not yet run, in registration order.

    Hooks registered while no run() is active wait for the next run(); each hook runs at
    most once. Once the hook phase begins, the registry is closed until run() ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[ShutdownHook[Any]] = []
        self._closed = False

    def add(self, hook: ShutdownHook[Any]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(
                    f"cannot register shutdown hook {hook.name!r}: the hook phase has "
                    "already begun; register hooks before shutdown, for example at "
                    "the start of main"
                )
            self._hooks.append(hook)

    def remove(self, hook: ShutdownHook[Any]) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def take_last(self) -> ShutdownHook[Any] | None:
        """Take the last registered hook off the registry; None once none is left."""
        with self._lock:
            return self._hooks.pop() if self._hooks else None

    def reopen(self) -> None:
        with self._lock:
            if self._closed:
                # Hooks that a cut-short hook phase never reached belong to this run:
                # they do not carry over to the next one.
                self._hooks.clear()
            self._closed = False


_registry = _Registry()


@overload
def on_shutdown(
    fn: Callable[[Unpack[PosArgsT]], T],
    /,
    *args: Unpack[PosArgsT],
    timeout: float | None = None,
    name: str | None = None,
) -> ShutdownHook[T]: ...


@overload
def on_shutdown(
    fn: None = None, /, *, timeout: float | None = None, name: str | None = None
) -> Callable[[Callable[[], T]], ShutdownHook[T]]: ...


# mypy cannot match a TypeVarTuple overload against any implementation signature yet,
# so the implementation is typed loosely and the overloads carry the real types.
def on_shutdown(  # type: ignore[misc]
    fn: Callable[..., T] | None = None,
    /,
    *args: Any,
    timeout: float | None = None,
    name: str | None = None,
) -> ShutdownHook[T] | Callable[[Callable[[], T]], ShutdownHook[T]]:
    """Register ``fn(*args)`` to run when `graceful_async.run()` ends, for any reason.

    Hooks run after main's whole task tree has unwound, last registered first. Each one
    is shielded from the shutdown cancellation and bounded by ``min(timeout, time left
    in the grace period)``. A hook that raises is logged with its traceback and the
    others still run; a hook that overruns is cancelled and logged by name.

    Works as a plain call, as a bare decorator (``@on_shutdown``) and as a decorator with
    options (``@on_shutdown(timeout=2)``).

    Args:
        fn: A sync or async callable.
        *args: Positional arguments for ``fn``.
        timeout: Seconds this hook may take at most, or None for "as long as the grace
            period allows".
        name: The name used in logs and in the stuck report; ``fn``'s qualified name by
            default.

    Returns:
        A handle whose ``unregister()`` removes the hook. (With the decorator forms the
        decorated name is bound to this handle, which still calls ``fn`` when called.)

    Raises:
        TypeError: If ``fn`` is not callable or ``name`` is not a string.
        ValueError: If ``timeout`` is negative or not finite.
        RuntimeError: If the hook phase has already begun.

    Example:
        ```python
        async def main() -> None:
            db = await connect()
            graceful_async.on_shutdown(db.close, timeout=2)
            await serve(db)
        ```
    """
    check_timeout(timeout)
    check_hook(fn, name)
    if fn is None:

        def decorate(func: Callable[[], T]) -> ShutdownHook[T]:
            return on_shutdown(func, timeout=timeout, name=name)

        return decorate
    hook = ShutdownHook(fn, args, timeout, name or name_of(fn))
    _registry.add(hook)
    return hook


async def run_hooks(run: Lifecycle) -> int:
    """Run every registered hook, last registered first. Returns how many ran."""
    _registry.close()
    count = 0
    # One at a time off the registry, rather than a copy taken up front, so that a hook
    # can still unregister one that has not run yet.
    while (hook := _registry.take_last()) is not None:
        await _run_one(run, hook)
        count += 1
    return count


@contextmanager
def reopened_afterwards() -> Iterator[None]:
    """Open the registry again when run() ends, for hooks meant for the next run()."""
    try:
        yield
    finally:
        _registry.reopen()


async def _run_one(run: Lifecycle, hook: ShutdownHook[Any]) -> None:
    limit = math.inf if hook.timeout is None else hook.timeout
    started = time.monotonic()
    run.running_hooks[hook.name] = started
    try:
        with bounded_scope(limit) as scope:
            result = hook.fn(*hook.args)
            if inspect.isawaitable(result):
                await result
    except BaseException:
        # Whatever a hook raises, even SystemExit, KeyboardInterrupt or a cancellation
        # of its own making (our scope absorbs the ones it causes), the hooks registered
        # before it must still run.
        logger.warning("shutdown hook %s failed", hook.name, exc_info=True)
        run.finished_hooks.append((hook.name, False))
        return
    finally:
        del run.running_hooks[hook.name]
    took = time.monotonic() - started
    run.finished_hooks.append((hook.name, not scope.cancelled_caught and took <= limit))
    if scope.cancelled_caught and run.state.escalated:
        logger.warning("shutdown hook %s cancelled by a second signal", hook.name)
    elif scope.cancelled_caught:
        logger.warning("shutdown hook %s overran its time limit and was cancelled", hook.name)
    elif took > limit:
        logger.warning(
            "shutdown hook %s took %.2f s, more than its %.2f s timeout (a sync hook cannot "
            "be cancelled)",
            hook.name,
            took,
            limit,
        )

"""Graceful shutdown for async Python services, on asyncio, uvloop and trio."""

from __future__ import annotations

from ._config import DEFAULT_GRACE as DEFAULT_GRACE
from ._hooks import ShutdownHook as ShutdownHook
from ._hooks import on_shutdown as on_shutdown
from ._runner import run as run
from ._scopes import cleanup_scope as cleanup_scope
from ._shutdown import request_shutdown as request_shutdown
from ._shutdown import shutdown_requested as shutdown_requested
from ._watchdog import FORCED_EXIT_STATUS as FORCED_EXIT_STATUS

__all__ = [
    "DEFAULT_GRACE",
    "FORCED_EXIT_STATUS",
    "ShutdownHook",
    "cleanup_scope",
    "on_shutdown",
    "request_shutdown",
    "run",
    "shutdown_requested",
]

# Tracebacks, reprs and the docs should say graceful_async.X, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("graceful_async."):
        _obj.__module__ = __name__
del _name, _obj

"""Graceful shutdown for async Python services, on asyncio, uvloop and trio."""

from __future__ import annotations

from ._children import ChildProcess as ChildProcess
from ._children import start_child as start_child
from ._config import DEFAULT_GRACE as DEFAULT_GRACE
from ._drain import drain as drain
from ._hooks import ShutdownHook as ShutdownHook
from ._hooks import on_shutdown as on_shutdown
from ._reload import ReloadHook as ReloadHook
from ._reload import on_reload as on_reload
from ._runner import run as run
from ._scopes import cleanup_scope as cleanup_scope
from ._scopes import in_flight as in_flight
from ._shutdown import is_ready as is_ready
from ._shutdown import request_shutdown as request_shutdown
from ._shutdown import set_ready as set_ready
from ._shutdown import shutdown_reason as shutdown_reason
from ._shutdown import shutdown_requested as shutdown_requested
from ._shutdown import time_left as time_left
from ._shutdown import wait_shutdown_requested as wait_shutdown_requested
from ._watchdog import FORCED_EXIT_STATUS as FORCED_EXIT_STATUS
from ._workers import worker as worker

# Plain sorted() order, which tests/test_public_api.py pins (ruff's would put the constants
# before ChildProcess).
__all__ = [  # noqa: RUF022
    "ChildProcess",
    "DEFAULT_GRACE",
    "FORCED_EXIT_STATUS",
    "ReloadHook",
    "ShutdownHook",
    "cleanup_scope",
    "drain",
    "in_flight",
    "is_ready",
    "on_reload",
    "on_shutdown",
    "request_shutdown",
    "run",
    "set_ready",
    "shutdown_reason",
    "shutdown_requested",
    "start_child",
    "time_left",
    "wait_shutdown_requested",
    "worker",
]

# Tracebacks, reprs and the docs should say graceful_async.X, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("graceful_async."):
        _obj.__module__ = __name__
del _name, _obj

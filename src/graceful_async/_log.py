from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging


@functools.cache
def _logger() -> logging.Logger:
    import logging

    # No NullHandler on purpose: when the application configures no logging at all, the
    # standard library's "last resort" handler still prints WARNING and above to stderr,
    # so overrunning or failing hooks are never silent, while INFO lines stay quiet.
    return logging.getLogger("graceful_async")


class _DeferredLogger:
    # Importing logging (with string and weakref) takes a few ms, and graceful_async only
    # logs once an event loop runs, which has imported logging anyway (asyncio and trio
    # both do). So the logger is looked up at its first use; every attribute
    # (logger.info, ...) is the real logger's.
    def __getattr__(self, name: str) -> Any:
        return getattr(_logger(), name)


logger = cast("logging.Logger", _DeferredLogger())

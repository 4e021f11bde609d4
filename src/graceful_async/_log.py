from __future__ import annotations

import logging

# No NullHandler on purpose: when the application configures no logging at all, the
# standard library's "last resort" handler still prints WARNING and above to stderr, so
# overrunning or failing hooks are never silent, while INFO lines stay quiet.
logger = logging.getLogger("graceful_async")

"""``python -m graceful_async package.module:main``: see ``--help``."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m graceful_async"))

"""Run a docs example as a program, and tell the test when it may send a signal.

``python docs_launcher.py program.py ARGS`` runs ``program.py`` as ``python program.py ARGS``
would, and ``python docs_launcher.py -m module ARGS`` as ``python -m module ARGS`` would,
with the file names and line numbers of the example unchanged (a stuck report quotes
them). On top of that:

- ``DOCS_READY_FD``: a pipe to write one byte to once the program is ready for a signal.
  With ``DOCS_READY=run`` (the default) that is when ``graceful_async.is_ready()`` turns
  True: ``run()`` has installed its handlers and main runs (or, with
  ``ready_on_start=False``, the program said it was ready). With ``DOCS_READY=asyncio``,
  for a plain asyncio program, it is the first ``asyncio.sleep()``.
- ``DOCS_SETUP``: a file run first, whose globals the program starts with: what a
  fragment assumes, such as a ``main`` for ``graceful_async.run(main, ...)``.
- ``DOCS_BACKEND`` (and ``DOCS_UVLOOP``): the backend for a ``run()`` call that names none,
  to run one example on each backend.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
import threading
import time
from typing import Any

import graceful_async


def _tell_ready() -> None:
    fd = int(os.environ["DOCS_READY_FD"])
    os.write(fd, b"R")
    os.close(fd)


def _watch_run() -> None:
    # Polled from a thread: is_ready() is safe from any thread, and the program's own
    # code stays exactly as the docs show it.
    while not graceful_async.is_ready():
        time.sleep(0.005)
    _tell_ready()


def _watch_asyncio_sleep() -> None:
    sleep = asyncio.sleep

    async def first_sleep(delay: float, result: Any = None) -> Any:
        asyncio.sleep = sleep
        _tell_ready()
        return await sleep(delay, result)

    asyncio.sleep = first_sleep


def _default_backend(name: str, uvloop: bool) -> None:
    run = graceful_async.run

    def run_on_backend(main: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("backend", name)
        kwargs.setdefault("backend_options", {"use_uvloop": True} if uvloop else None)
        return run(main, *args, **kwargs)

    graceful_async.run = run_on_backend  # type: ignore[assignment]


def launch(argv: list[str]) -> None:
    if "DOCS_READY_FD" in os.environ:
        if os.environ.get("DOCS_READY", "run") == "asyncio":
            _watch_asyncio_sleep()
        else:
            threading.Thread(target=_watch_run, name="docs-ready", daemon=True).start()
    if os.environ.get("DOCS_BACKEND"):
        _default_backend(os.environ["DOCS_BACKEND"], bool(os.environ.get("DOCS_UVLOOP")))
    setup: dict[str, Any] = {}
    if os.environ.get("DOCS_SETUP"):
        setup = runpy.run_path(os.environ["DOCS_SETUP"])
        setup = {k: v for k, v in setup.items() if not k.startswith("__")}
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], init_globals=setup, run_name="__main__")


if __name__ == "__main__":
    launch(sys.argv[1:])

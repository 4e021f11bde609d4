"""python -m graceful_async package.module:main: run a service's entry point from the shell."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._backends import BACKEND_NAMES, backend_named
from ._config import DRAIN_ENV, GRACE_ENV, PRE_DRAIN_DELAY_ENV, is_async_callable, make_config
from ._runner import run

BACKEND_ENV = "GRACEFUL_ASYNC_BACKEND"
UVLOOP_ENV = "GRACEFUL_ASYNC_UVLOOP"
LOG_LEVEL_ENV = "GRACEFUL_ASYNC_LOG_LEVEL"
RELOAD_SIGNAL_ENV = "GRACEFUL_ASYNC_RELOAD_SIGNAL"
DUMP_SIGNAL_ENV = "GRACEFUL_ASYNC_DUMP_SIGNAL"
FAST_EXIT_ENV = "GRACEFUL_ASYNC_FAST_EXIT"
# run()'s own default, which the command does not change.
DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

DESCRIPTION = """\
Run an async function with graceful shutdown: SIGTERM and Ctrl+C let the work in
flight finish (the drain phase), then cancel the rest, run every finally clause and
shutdown hook, and exit within the grace period with a status that tells the truth.
"""

EPILOG = f"""\
Each option may also be set in the environment; a flag given here wins.
  {GRACE_ENV:<30}  --grace
  {DRAIN_ENV:<30}  --drain
  {PRE_DRAIN_DELAY_ENV:<30}  --pre-drain-delay
  {BACKEND_ENV:<30}  --backend
  {UVLOOP_ENV:<30}  --uvloop (1, true or yes)
  {LOG_LEVEL_ENV:<30}  --log-level
  {RELOAD_SIGNAL_ENV:<30}  --reload-signal
  {DUMP_SIGNAL_ENV:<30}  --dump-signal
  {FAST_EXIT_ENV:<30}  --fast-exit (1, true or yes)

Exit status: what the program chose (sys.exit or request_shutdown), 128+N after
signal N, death by SIGINT after Ctrl+C, 1 on an error, 124 if the grace period ran out,
2 for bad usage (including a target that cannot be imported).
"""


class UsageError(Exception):
    """Raised when the command line or the environment asks for something impossible."""


def main(argv: Sequence[str] | None = None, prog: str = "graceful-async") -> int:
    """The ``graceful-async`` command. Returns 2 on bad usage; otherwise run() decides.

    Args:
        argv: The arguments, without the program name; defaults to ``sys.argv[1:]``.
        prog: The name shown in help and errors.
    """
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        options = _resolve(args)
        # Before the import: a module that configures logging as it is imported keeps
        # its own configuration, and ours must not be silently skipped either.
        logging.basicConfig(level=options["log_level"], format=LOG_FORMAT, stream=sys.stderr)
        target = _load(args.target)
        _check(target, options["run"], args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    run(target, **options["run"])
    return 0


def run_console_script() -> None:
    """The entry point of the ``graceful-async`` console script."""
    sys.exit(main())


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="MODULE:FUNCTION",
        help="the async function to run, such as myservice.app:main "
        "(the current directory is importable)",
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        metavar="S",
        help="seconds from the first signal until the process has ended (default 8)",
    )
    parser.add_argument(
        "--drain",
        type=_seconds,
        metavar="S",
        help="seconds the work in flight may take to finish, within the grace period "
        "(default: half of it)",
    )
    parser.add_argument(
        "--pre-drain-delay",
        type=_seconds,
        metavar="S",
        help="seconds to keep serving, reported not ready, before the drain begins (default 0)",
    )
    parser.add_argument("--backend", choices=BACKEND_NAMES, help="the event loop (default asyncio)")
    parser.add_argument("--uvloop", action="store_true", default=None, help="run asyncio on uvloop")
    parser.add_argument(
        "--reload-signal",
        type=_signal,
        metavar="SIG",
        help="a signal, such as HUP, that runs the on_reload hooks (default: none)",
    )
    parser.add_argument(
        "--dump-signal",
        type=_signal,
        metavar="SIG",
        help="a signal, such as USR1, that writes a report of every task and thread to "
        "stderr (default: none)",
    )
    parser.add_argument(
        "--fast-exit",
        action="store_true",
        default=None,
        help="free what cancelled anyio tasks left in reference cycles as soon as the loop "
        "has closed, so that the interpreter exits sooner (run()'s fast_exit)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)} (default INFO)",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    return value  # run() checks the range and names the option


def _signal(text: str) -> signal.Signals:
    """A signal by name (HUP, SIGHUP, in any case) or number."""
    name = text.strip().upper()
    try:
        return (
            signal.Signals(int(name))
            if name.isdigit()
            else signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        )
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected a signal name such as HUP or a number, got {text!r}"
        ) from None


def _env_signal(variable: str) -> signal.Signals | None:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return None
    try:
        return _signal(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{variable}: {exc}") from None


def _env_flag(variable: str) -> bool:
    raw = os.environ.get(variable, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no"):
        raise UsageError(f"{variable} must be 1, true, yes, 0, false or no, got {raw!r}")
    return raw in ("1", "true", "yes")


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Combine the flags with the environment; a flag wins over any variable."""
    env_backend = os.environ.get(BACKEND_ENV, "").strip()
    if env_backend not in ("", *BACKEND_NAMES):
        names = " or ".join(repr(name) for name in BACKEND_NAMES)
        raise UsageError(f"{BACKEND_ENV} must be {names}, got {env_backend!r}")
    env_uvloop = _env_flag(UVLOOP_ENV)
    if args.uvloop:
        if args.backend and not backend_named(args.backend).takes_uvloop:
            raise UsageError(f"--uvloop needs the asyncio backend, not --backend {args.backend}")
        backend, uvloop = "asyncio", True  # the flag wins over GRACEFUL_ASYNC_BACKEND
    elif args.backend:
        backend = args.backend
        # The flag wins over the variable.
        uvloop = env_uvloop and backend_named(backend).takes_uvloop
    else:
        backend = env_backend or "asyncio"
        uvloop = env_uvloop
        if uvloop and not backend_named(backend).takes_uvloop:
            raise UsageError(
                f"{UVLOOP_ENV} needs the asyncio backend, but {BACKEND_ENV} is {backend}"
            )
    level = args.log_level or os.environ.get(LOG_LEVEL_ENV, "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise UsageError(f"{LOG_LEVEL_ENV} must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    run_options = {
        "backend": backend,
        "backend_options": {"use_uvloop": True} if uvloop else None,
        "grace": args.grace,
        "drain": args.drain,
        "pre_drain_delay": args.pre_drain_delay,
        "reload_signal": args.reload_signal or _env_signal(RELOAD_SIGNAL_ENV),
        "dump_signal": args.dump_signal or _env_signal(DUMP_SIGNAL_ENV),
        "fast_exit": args.fast_exit or _env_flag(FAST_EXIT_ENV),
    }
    return {"run": run_options, "log_level": level}


def _check(
    target: Callable[[], Any], run_options: dict[str, Any], args: argparse.Namespace
) -> None:
    """Make the checks run() makes, so that a bad value is a usage error."""
    try:
        make_config(target, **run_options, signals=DEFAULT_SIGNALS, exit_codes=None)
    except (TypeError, ValueError, ModuleNotFoundError) as exc:
        message = str(exc)
        # run() names its own argument; here the user typed a flag.
        for name in ("grace", "drain", "pre_drain_delay", "reload_signal", "dump_signal"):
            if getattr(args, name) is not None and message.startswith(f"{name} "):
                message = "--" + name.replace("_", "-") + message[len(name) :]
        raise UsageError(message) from None


def _load(target: str) -> Callable[[], Any]:
    """Import ``module:attr.path`` and check it is an async function.

    A target that is not there is a usage error. A module that is there but fails while
    importing is a bug in it: that error propagates with its traceback.
    """
    module_name, colon, attr_path = target.partition(":")
    if not colon or not module_name or not attr_path:
        raise UsageError(f"the target must look like package.module:function, got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would; the console script does not
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {missing!r}"
            ) from None
        raise
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr_path!r}") from None
    if not is_async_callable(obj):
        raise UsageError(f"{target} must be an async function (async def), got {obj!r}")
    return obj  # type: ignore[no-any-return]

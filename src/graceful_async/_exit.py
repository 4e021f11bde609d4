"""Exit status policy: what run() leaves the process with, so its parent reads the truth.

- main returned by itself: run() returns its value.
- an error escaped main: the user's own exception propagates (status 1, normal traceback).
- ``sys.exit(n)`` in main's tree: that SystemExit propagates (status n, no traceback).
- a `worker` failed and was not restarted: SystemExit(1), even if the shutdown had
  begun for another reason (its traceback is already logged).
- ``request_shutdown(exit_code=n)``: SystemExit(n).
- signal N: SystemExit(exit_codes[N]) if mapped, else death by SIGINT for SIGINT, else
  SystemExit(128 + N).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ._shutdown import Trigger


class Outcome:
    """How main ended: a value, a SystemExit, or an error."""

    def __init__(self) -> None:
        self.value: Any = None
        self.system_exit: SystemExit | None = None
        self.error: BaseException | None = None

    @classmethod
    def of(cls, exc: BaseException) -> Outcome:
        outcome = cls()
        outcome.capture(exc)
        return outcome

    def adopt(self, escaped: list[BaseException]) -> None:
        """Take an exception that escaped the loop if main itself ended without one."""
        if escaped and self.error is None and self.system_exit is None:
            self.capture(escaped[0])

    def capture(self, exc: BaseException) -> None:
        # sys.exit() in a child task reaches main inside exception groups (one per task
        # group it crossed). If nothing but SystemExit is inside, treat it as the plain
        # sys.exit() it was; anything else is an error and propagates untouched.
        if isinstance(exc, BaseExceptionGroup):
            exits, rest = exc.split(SystemExit)
            if exits is not None and rest is None:
                self.system_exit = _first_leaf(exits)
                return
        if isinstance(exc, SystemExit):
            self.system_exit = exc
        else:
            self.error = exc


def _first_leaf(group: BaseExceptionGroup[SystemExit]) -> SystemExit:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, SystemExit)
    return exc


def conclude(
    outcome: Outcome, trigger: Trigger, exit_codes: dict[signal.Signals, int], failed: bool
) -> Any:
    """Return main's value or raise what ends the process with the right status."""
    # An error from main is a bug report and beats everything else, and so does a failed
    # worker (whose error was logged, not raised, so that its siblings could drain). An
    # explicit sys.exit() beats the trigger too: the program chose its status.
    if outcome.error is not None:
        raise outcome.error
    if failed:
        raise SystemExit(1)
    if outcome.system_exit is not None:
        raise outcome.system_exit
    if trigger.kind == "return":
        return outcome.value
    if trigger.kind == "request":
        raise SystemExit(trigger.exit_code)
    assert trigger.kind == "signal"
    assert trigger.signum is not None
    sig = signal.Signals(trigger.signum)
    if sig in exit_codes:
        raise SystemExit(exit_codes[sig])
    if sig == signal.SIGINT:
        _raise_quiet_keyboard_interrupt()
    raise SystemExit(128 + sig)


def _raise_quiet_keyboard_interrupt() -> NoReturn:
    # For Ctrl+C the parent must see death *by* SIGINT: bash stops a `for` loop only then,
    # and a status of 130 is not the same thing. CPython already does this right for an
    # uncaught KeyboardInterrupt: after atexit handlers run and output is flushed, it
    # restores SIG_DFL and kills itself with SIGINT. It only does so for the exact
    # KeyboardInterrupt type, so we raise a plain one and keep the interpreter from
    # printing its traceback with a one-shot excepthook that lets anything else through.
    exc = KeyboardInterrupt()
    sys.excepthook = _QuietInterruptHook(exc, sys.excepthook)
    raise exc


class _QuietInterruptHook:
    """An excepthook that swallows one KeyboardInterrupt and then removes itself."""

    def __init__(
        self,
        exc: KeyboardInterrupt,
        previous: Callable[[type[BaseException], BaseException, TracebackType | None], Any],
    ) -> None:
        self.exc = exc
        self.previous = previous

    def __call__(
        self, typ: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if sys.excepthook is self:
            sys.excepthook = self.previous
        if value is not self.exc:
            self.previous(typ, value, tb)


def remove_quiet_hook() -> None:
    """Undo a hook left behind when a caller caught our KeyboardInterrupt."""
    while isinstance(sys.excepthook, _QuietInterruptHook):
        sys.excepthook = sys.excepthook.previous


def exit_code(
    outcome: Outcome, trigger: Trigger, exit_codes: dict[signal.Signals, int], failed: bool
) -> int:
    """The status the parent sees once conclude() has ended the process.

    Death by SIGINT shows as 130 in a shell's ``$?``, and so it is given here.
    """
    if isinstance(outcome.error, KeyboardInterrupt) and not failed:
        return 128 + signal.SIGINT  # the interpreter dies by SIGINT
    if outcome.error is not None or failed:
        return 1
    if outcome.system_exit is not None:
        code = outcome.system_exit.code
        # The operating system keeps the low 8 bits: sys.exit(256) is 0, sys.exit(-1) 255.
        return 0 if code is None else code & 0xFF if isinstance(code, int) else 1
    if trigger.kind == "return":
        return 0
    if trigger.kind == "request":
        return trigger.exit_code
    assert trigger.signum is not None
    sig = signal.Signals(trigger.signum)
    return exit_codes.get(sig, 128 + sig)


def exit_status(
    outcome: Outcome, trigger: Trigger, exit_codes: dict[signal.Signals, int], failed: bool
) -> str:
    """Describe the status conclude() will produce, for the final log line."""
    if isinstance(outcome.error, KeyboardInterrupt) and not failed:
        return "death by SIGINT"
    if outcome.error is not None:
        return "1 (error)"
    if failed:
        return "1 (a worker failed)"
    if outcome.system_exit is None:
        if trigger.kind == "return":
            return "main's return value"
        if trigger.signum == signal.SIGINT and signal.SIGINT not in exit_codes:
            return "death by SIGINT"
    return str(exit_code(outcome, trigger, exit_codes, failed))

"""Exit status policy: what run() leaves the process with, so its parent reads the truth.

- main returned by itself: run() returns its value.
- an error escaped main: the user's own exception propagates (status 1, normal traceback;
  a plain KeyboardInterrupt ends the process by SIGINT, as CPython does).
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
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, final

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


@final
@dataclass(frozen=True)
class Verdict:
    """How the run ends, decided once by `decide`.

    The final log line, run()'s return or raise, `graceful_async.testing`'s
    ``exit_status`` and so the process's real status all read this one object.
    """

    #: The status the parent sees, as a shell's ``$?`` shows it: death by SIGINT is 130.
    status: int
    #: The status in words, for the final log line.
    description: str
    #: What run() raises; None when it returns ``value`` or dies by SIGINT quietly.
    exception: BaseException | None = None
    #: main's return value, when run() returns it.
    value: Any = None
    #: Whether run() raises a KeyboardInterrupt that the interpreter turns into death by
    #: SIGINT without a traceback.
    quiet_interrupt: bool = False

    @property
    def dies_by(self) -> int | None:
        """The signal the process dies by (SIGINT after Ctrl+C), if it dies by one."""
        interrupted = self.quiet_interrupt or type(self.exception) is KeyboardInterrupt
        return signal.SIGINT if interrupted else None

    @property
    def returns(self) -> bool:
        """Whether run() returns (rather than raising what ends the process)."""
        return self.exception is None and not self.quiet_interrupt

    def conclude(self) -> Any:
        """Return main's value, or raise what ends the process with ``status``."""
        if self.quiet_interrupt:
            _raise_quiet_keyboard_interrupt()
        if self.exception is not None:
            raise self.exception
        return self.value


_SIGINT_DEATH = 128 + signal.SIGINT


def decide(
    outcome: Outcome, trigger: Trigger, exit_codes: dict[signal.Signals, int], failed: bool
) -> Verdict:
    """Decide how the run ends, in this order of precedence.

    An error from main is a bug report and beats everything else, and so does a failed
    worker (whose error was logged, not raised, so that its siblings could drain). An
    explicit sys.exit() beats the trigger too: the program chose its status.
    """
    error = outcome.error
    if error is not None:
        # CPython dies by SIGINT only for an uncaught KeyboardInterrupt of that exact
        # type; a subclass, or one inside an exception group, exits 1 with a traceback.
        if type(error) is KeyboardInterrupt:
            return Verdict(_SIGINT_DEATH, "death by SIGINT (KeyboardInterrupt in main)", error)
        return Verdict(1, "1 (error)", error)
    if failed:
        return Verdict(1, "1 (a worker failed)", SystemExit(1))
    if outcome.system_exit is not None:
        code = outcome.system_exit.code
        # The operating system keeps the low 8 bits: sys.exit(256) is 0, sys.exit(-1) 255;
        # anything but an int (a message) is printed, with status 1.
        status = 0 if code is None else code & 0xFF if isinstance(code, int) else 1
        return Verdict(status, str(status), outcome.system_exit)
    if trigger.kind == "return":
        return Verdict(0, "main's return value", value=outcome.value)
    if trigger.kind == "request":
        return Verdict(trigger.exit_code, str(trigger.exit_code), SystemExit(trigger.exit_code))
    assert trigger.kind == "signal"
    assert trigger.signum is not None
    sig = signal.Signals(trigger.signum)
    if sig in exit_codes:
        return Verdict(exit_codes[sig], str(exit_codes[sig]), SystemExit(exit_codes[sig]))
    if sig == signal.SIGINT:
        return Verdict(_SIGINT_DEATH, "death by SIGINT", quiet_interrupt=True)
    return Verdict(128 + sig, str(128 + sig), SystemExit(128 + sig))


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

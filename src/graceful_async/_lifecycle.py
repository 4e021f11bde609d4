"""The phases of a run, as an explicit state machine with one owner.

    STARTING -> RUNNING -> [PRE_DRAIN ->] DRAINING -> CANCELLING -> HOOKS -> EXITING
    -> INTERPRETER_EXIT

`Lifecycle` makes every transition, on the loop (and, for the last one, in run() after the
loop): it checks that the transition is allowed, logs it once, and records when the phase
began. Other threads only read `ShutdownState.phase`, which it writes.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING, final

from ._log import logger

if TYPE_CHECKING:
    from ._shutdown import ShutdownState


@final
class Phase(enum.Enum):
    """Where a run is in its life; the value is how the log and the stuck report say it."""

    STARTING = "starting"
    RUNNING = "running"
    PRE_DRAIN = "pre-drain"
    DRAINING = "draining"
    CANCELLING = "cancelling"
    HOOKS = "hooks"
    EXITING = "exiting"
    INTERPRETER_EXIT = "interpreter exit (joining non-daemon threads, then atexit handlers)"


_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.RUNNING}),
    # The pre-drain delay applies only to the triggers that drain, and only while main
    # runs; otherwise the drain begins at once (and ends at once if nothing is in flight).
    Phase.RUNNING: frozenset({Phase.PRE_DRAIN, Phase.DRAINING}),
    Phase.PRE_DRAIN: frozenset({Phase.DRAINING}),
    Phase.DRAINING: frozenset({Phase.CANCELLING}),
    Phase.CANCELLING: frozenset({Phase.HOOKS}),
    Phase.HOOKS: frozenset({Phase.EXITING}),
    Phase.EXITING: frozenset({Phase.INTERPRETER_EXIT}),
    Phase.INTERPRETER_EXIT: frozenset(),
}

# The phases whose length the log reports when they end; DRAINING only when it had work
# in flight to wait for (the caller then says what ended it).
_TIMED = frozenset({Phase.PRE_DRAIN, Phase.CANCELLING, Phase.HOOKS})


@final
class Lifecycle:
    """Owns the phase of one run: every transition goes through `enter`."""

    def __init__(self, state: ShutdownState) -> None:
        self._state = state

    def enter(self, phase: Phase, done: str = "") -> None:
        """Move on to ``phase``, logging how long the phase that ends took (and ``done``).

        Raises:
            RuntimeError: If the run cannot go from its current phase to ``phase``.
        """
        state = self._state
        current = state.phase
        if phase not in _ALLOWED[current]:
            raise RuntimeError(
                f"graceful_async internal error: a run cannot go from the {current.value} "
                f"phase to the {phase.value} phase"
            )
        now = time.monotonic()
        if current in _TIMED or (current is Phase.DRAINING and done):
            detail = f" ({done})" if done else ""
            logger.info("%s phase took %.3f s%s", current.value, now - state.phase_started, detail)
        state.phase_started = now
        state.phase = phase

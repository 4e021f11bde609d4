"""The lifecycle: an explicit phase enum, one owner, allowed transitions only."""

from __future__ import annotations

import itertools
import logging
import re
import signal

import anyio
import pytest

import graceful_async
from graceful_async._lifecycle import Lifecycle, Phase
from graceful_async._shutdown import ShutdownState
from graceful_async.testing import run_service

from .support.helpers import Backend

# The one path through the phases, with the pre-drain delay as its only detour.
PATH = [
    Phase.STARTING,
    Phase.RUNNING,
    Phase.PRE_DRAIN,
    Phase.DRAINING,
    Phase.CANCELLING,
    Phase.HOOKS,
    Phase.EXITING,
    Phase.INTERPRETER_EXIT,
]
ALLOWED = {(a, b) for a, b in itertools.pairwise(PATH)} | {(Phase.RUNNING, Phase.DRAINING)}


def lifecycle_at(phase: Phase) -> tuple[ShutdownState, Lifecycle]:
    state = ShutdownState(grace=5)
    state.phase = phase
    return state, Lifecycle(state)


@pytest.mark.parametrize(("start", "end"), sorted(ALLOWED, key=str))
def test_allowed_transitions(start: Phase, end: Phase) -> None:
    """Each step of the path, and the skipped pre-drain delay, is allowed."""
    state, lifecycle = lifecycle_at(start)
    try:
        lifecycle.enter(end)
        assert state.phase is end
    finally:
        state.close()


FORBIDDEN = sorted(set(itertools.product(Phase, Phase)) - ALLOWED, key=str)


@pytest.mark.parametrize(("start", "end"), FORBIDDEN)
def test_a_transition_that_is_not_allowed_raises(start: Phase, end: Phase) -> None:
    """Going back, skipping a phase or staying put raises, and the phase stays."""
    state, lifecycle = lifecycle_at(start)
    try:
        with pytest.raises(RuntimeError, match=f"cannot go from the {re.escape(start.value)}"):
            lifecycle.enter(end)
        assert state.phase is start
    finally:
        state.close()


@pytest.mark.anyio
async def test_each_transition_is_logged_once(
    anyio_backend: tuple[str, dict[str, object]], logs: pytest.LogCaptureFixture
) -> None:
    """A run through every phase logs the end of each timed phase exactly once."""

    async def main() -> None:
        async with graceful_async.in_flight():  # outlasts the delay: the drain waits
            await anyio.sleep(0.3)

    async with run_service(main, grace=5, pre_drain_delay=0.05) as service:
        await service.wait_ready()
        service.send_signal(signal.SIGTERM)
    messages = [r.getMessage() for r in logs.records if r.levelno == logging.INFO]
    for phase in ("pre-drain", "draining", "cancelling", "hooks"):
        took = [m for m in messages if m.startswith(f"{phase} phase took")]
        assert len(took) == 1, messages


def test_the_phase_enum_says_what_the_log_says(backend: Backend) -> None:
    """The values are the words the log and the stuck report use."""
    assert [p.value for p in PATH[:7]] == [
        "starting",
        "running",
        "pre-drain",
        "draining",
        "cancelling",
        "hooks",
        "exiting",
    ]

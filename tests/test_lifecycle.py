"""The lifecycle: an explicit phase enum, one owner, allowed transitions only."""

from __future__ import annotations

import itertools
import logging
import re
import signal
import threading

import anyio
import pytest

import graceful_async
from graceful_async._config import make_config
from graceful_async._lifecycle import Event, Lifecycle, Phase
from graceful_async._runner import Runner
from graceful_async._shutdown import ShutdownState, Trigger
from graceful_async._watchdog import Watchdog
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


def test_drain_has_begun_from_the_draining_phase_on() -> None:
    """The one answer to "does the run still take work?" is the phase."""
    assert [p for p in PATH if p.drain_has_begun] == PATH[3:]


def test_events_reach_their_listeners_in_order_and_late_subscribers_next_time() -> None:
    """emit() calls each listener once, in order; one subscribed meanwhile waits its turn."""
    state, lifecycle = lifecycle_at(Phase.RUNNING)
    heard: list[str] = []
    try:
        lifecycle.subscribe(Event.DRAIN_BEGINS, lambda: heard.append("first"))

        def second() -> None:
            heard.append("second")
            lifecycle.subscribe(Event.DRAIN_BEGINS, lambda: heard.append("late"))

        lifecycle.subscribe(Event.DRAIN_BEGINS, second)
        lifecycle.subscribe(Event.CANCEL, lambda: heard.append("cancel"))
        lifecycle.emit(Event.DRAIN_BEGINS)
        assert heard == ["first", "second"]
        lifecycle.emit(Event.CANCEL)
        assert heard == ["first", "second", "cancel"]
    finally:
        state.close()


def test_a_feature_attaches_once_per_run() -> None:
    """attached() makes the feature on first use and hands back the same one after."""
    made: list[Lifecycle] = []

    class Feature:
        def __init__(self, lifecycle: Lifecycle) -> None:
            made.append(lifecycle)

    state, lifecycle = lifecycle_at(Phase.RUNNING)
    try:
        assert lifecycle.find(Feature) is None
        first = lifecycle.attached(Feature)
        assert lifecycle.attached(Feature) is first
        assert lifecycle.find(Feature) is first
        assert made == [lifecycle]
    finally:
        state.close()


@pytest.mark.anyio
async def test_unwound_listeners_run_in_order_even_one_attached_meanwhile(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """A listener that attaches another feature while main unwinds still gets it run."""
    state, lifecycle = lifecycle_at(Phase.CANCELLING)
    ran: list[str] = []
    try:

        async def late() -> None:
            ran.append("late")

        async def first() -> None:
            ran.append("first")
            lifecycle.subscribe_unwound(late)

        lifecycle.subscribe_unwound(first)
        await lifecycle.unwound()
        assert ran == ["first", "late"]
    finally:
        state.close()


@pytest.mark.anyio
async def test_a_bounded_scope_is_registered_for_the_block_and_cancelled_after_escalation(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    state, lifecycle = lifecycle_at(Phase.DRAINING)
    try:
        scope = anyio.CancelScope()
        with lifecycle.bounded(scope):
            assert lifecycle.bounded_scopes == {scope}
            assert not scope.cancel_called
        assert lifecycle.bounded_scopes == set()
        state.escalate()
        late = anyio.CancelScope()
        with lifecycle.bounded(late):
            assert late.cancel_called  # a second signal came before it was registered
    finally:
        state.close()


def test_the_watchdog_tells_the_features_before_it_forces_the_exit() -> None:
    """At the deadline, FORCED_EXIT reaches the listeners on the watchdog's thread, and
    only then is the exit forced."""
    state, lifecycle = lifecycle_at(Phase.RUNNING)
    order: list[tuple[str, str]] = []
    done = threading.Event()

    def force(report: str, status: int) -> None:
        order.append(("force", threading.current_thread().name))
        done.set()

    lifecycle.subscribe(
        Event.FORCED_EXIT, lambda: order.append(("listener", threading.current_thread().name))
    )
    try:
        with Watchdog(lifecycle, force=force):
            state.trigger_shutdown(Trigger("request"))
            state.escalate()  # the deadline is 1 s away
            assert done.wait(30)
        assert order == [
            ("listener", "graceful_async watchdog"),
            ("force", "graceful_async watchdog"),
        ]
    finally:
        state.close()


def test_the_runner_takes_its_options_by_keyword_only() -> None:
    """Runner(config, *, ...): a bare positional flag, as _supervise once took, is refused."""

    async def main() -> None:
        pass

    config = make_config(main, "asyncio", None, 5.0, (signal.SIGTERM,), None)
    with pytest.raises(TypeError, match="positional"):
        Runner(config, False)  # type: ignore[call-arg]
    runner = Runner(config, sweep_stray_tasks=False, install_handlers=False)
    runner.state.close()

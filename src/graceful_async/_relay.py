"""The relay: on the loop, it applies what the signal handlers and other threads recorded.

The handlers only record (a trigger, a count, a time) and poke the loop's socket. The
relay task wakes on that socket, and at the pre-drain delay's and the drain's ends, and
moves the run along: it announces the shutdown, begins and ends the drain, cancels main's
tree, pulls the bounded scopes in to the soft deadline and applies a second signal.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import anyio

from ._lifecycle import Event, Lifecycle, Phase
from ._log import logger
from ._scopes import to_loop_clock
from ._signals import forward_signals, wakeup_fd_chained

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from ._shutdown import Trigger


class Relay:
    """Applies what the signal handlers and other threads recorded, on the loop."""

    def __init__(self, lifecycle: Lifecycle, main_scope: anyio.CancelScope, handled: bool) -> None:
        self._lifecycle = lifecycle
        self._state = lifecycle.state
        self._handled = handled
        self._main_scope = main_scope
        # What this relay has passed on already, each once: these follow from the core's
        # facts (a trigger, the armed time, the escalation, the reload count).
        self._announced = False
        self._announced_armed = False
        self._applied_escalation = False
        self._reloads_seen = 0
        self._drain_began_with = 0
        self.main_done = False

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        lifecycle = self._lifecycle
        lifecycle.own_tasks.add(lifecycle.current_task())
        # Set from the loop, so that it chains onto the wake-up fd trio or uvloop set as
        # their loop started, and is put back before they take theirs down.
        waker = self._state.loop_waker
        chained = wakeup_fd_chained(waker.fileno()) if self._handled else None
        with chained or contextlib.nullcontext(-1) as previous:
            lifecycle.forward_fd = previous
            task_status.started()
            try:
                await self._relay()
            finally:
                lifecycle.forward_fd = -1

    async def _relay(self) -> None:
        state, lifecycle = self._state, self._lifecycle
        waker = state.loop_waker
        while True:
            # Asked at every wake-up, and the features' timers may act then: systemd's
            # watchdog pings come from the loop itself, so that a blocked loop stops
            # pinging and systemd restarts the service, which is the point of its watchdog.
            wake_by = lifecycle.next_wake_up()
            # Also wake up when the pre-drain delay or the drain phase ends.
            if state.phase is Phase.PRE_DRAIN:
                wake_by = min(wake_by, state.drain_begins_at)
            elif state.phase is Phase.DRAINING:
                wake_by = min(wake_by, state.drain_deadline)
            with anyio.CancelScope(deadline=to_loop_clock(wake_by)):
                await anyio.wait_readable(waker.reader)
            # One read per wake-up: under a flood of signals a loop until empty might
            # not end. What is left keeps the socket readable for the next turn.
            forward_signals(waker.read_some(), lifecycle.forward_fd)
            self.apply()

    def apply(self) -> None:
        state, lifecycle = self._state, self._lifecycle
        trigger = state.trigger
        if trigger is not None and not self._announced:
            self._announce(trigger)
        if (
            trigger is not None
            and not state.phase.drain_has_begun
            and (self.main_done or state.stopping)
        ):
            self._begin_drain()
        if state.phase is Phase.DRAINING:
            self._maybe_end_drain(trigger)
        if state.armed and not self._announced_armed:
            # A signal after main returned: the stop is now bounded.
            self._announced_armed = True
            lifecycle.emit(Event.ARMED)
        if self._reloads_seen != state.reloads_requested:
            self._reloads_seen = state.reloads_requested
            lifecycle.emit(Event.RELOAD)
        # Pull open cleanup scopes in to the soft deadline at every wake-up, not only the
        # first: another thread may still be setting the deadline when we first see the
        # trigger, and a signal after main returned sets it later.
        deadline = to_loop_clock(state.soft_deadline)
        for scope in lifecycle.bounded_scopes:
            scope.deadline = min(scope.deadline, deadline)
        if state.escalated and not self._applied_escalation:
            self._applied_escalation = True
            logger.warning("second signal: cancelling everything still running, exiting within 1 s")
            for scope in list(lifecycle.bounded_scopes):
                scope.cancel("second signal")

    def _announce(self, trigger: Trigger) -> None:
        # The moment of the trigger: is_ready() has already turned False, and systemd
        # learns that the stop has begun. The program itself keeps running as before
        # until the drain begins, right away or after the pre-drain delay.
        state = self._state
        self._announced = True
        logger.info("%s, shutting down (grace %.1f s)", trigger.headline(), state.grace)
        self._lifecycle.emit(Event.STOPPING)
        delay = state.drain_begins_at - time.monotonic()
        if state.phase is Phase.RUNNING and delay > 0 and not self.main_done:
            logger.info("not ready; still serving for the pre-drain delay (%.1f s)", delay)
            self._lifecycle.enter(Phase.PRE_DRAIN)

    def _begin_drain(self) -> None:
        state, lifecycle = self._state, self._lifecycle
        # drain() loops waiting for their next item stop waiting: they take no more.
        # Until each has woken up it counts as in flight: the source may already
        # have handed it an item, which must then get its drain time too.
        for scope in list(lifecycle.item_waits):
            state.in_flight.add(scope)
            scope.cancel("shutdown requested: no new work")
        self._drain_began_with = len(state.in_flight)
        delay_over = "delay over" if state.phase is Phase.PRE_DRAIN else ""
        lifecycle.enter(Phase.DRAINING, delay_over)
        assert lifecycle.requested is not None
        lifecycle.requested.set()
        lifecycle.emit(Event.DRAIN_BEGINS)

    def _maybe_end_drain(self, trigger: Trigger | None) -> None:
        # The drain phase: the trigger is known, but main's tree keeps running so that the
        # work in flight can finish. It ends when the last unit is done, at the drain
        # deadline, on a second signal, or when main ends by itself.
        state = self._state
        assert trigger is not None
        left = len(state.in_flight)
        if self.main_done:
            why = "main ended"
        elif not left:
            why = "nothing left in flight"
        elif state.escalated:  # the escalation itself is logged by the caller
            why = f"{left} unit(s) of work cut off by a second signal"
        elif time.monotonic() >= state.drain_deadline:
            why = f"{left} unit(s) of work cut off"
            logger.warning("drain time is up: cancelling %d unit(s) of work in flight", left)
        else:
            return
        # Log the drain phase only if it had something to wait for.
        self._lifecycle.enter(Phase.CANCELLING, why if self._drain_began_with else "")
        self._main_scope.cancel(trigger.describe())
        self._lifecycle.emit(Event.CANCEL)

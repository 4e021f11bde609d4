"""Properties of the shutdown hooks, for any interleaving.

Each test draws a whole scenario (who registers or unregisters which hook when, how main
ends), runs it with `run_service` on the test's own event loop, and checks the result
against a model built from the documentation.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graceful_async
from graceful_async import _hooks
from graceful_async.testing import run_service

pytestmark = pytest.mark.anyio

# How many examples: see the profiles in conftest.py. No deadline: the machine is
# shared, and its timing says nothing about the properties.
EXAMPLES = settings(deadline=None)

# An example takes milliseconds. This only bounds a hang, so that it fails the one
# example (which hypothesis then shrinks) instead of the whole test by its timeout.
HANG = 10.0


class _Boom(Exception):
    """Raised by a hook or main on purpose."""


# --- shutdown hooks

HookKind = Literal["sync", "async", "raises", "unregisters", "registers"]


@dataclass(frozen=True)
class Register:
    """Register a new hook; an "unregisters" hook unregisters registration ``target``."""

    kind: HookKind
    target: int


@dataclass(frozen=True)
class Again:
    """Register the function (and name) of registration ``target`` once more."""

    target: int


@dataclass(frozen=True)
class Unregister:
    """Unregister registration ``target``, which may be unregistered already."""

    target: int


@dataclass(frozen=True)
class Pause:
    """A checkpoint, so that the other tasks register meanwhile."""


HookOp = Register | Again | Unregister | Pause

_targets = st.integers(min_value=0, max_value=20)
_hook_ops = st.one_of(
    st.builds(
        Register,
        st.sampled_from(["sync", "async", "raises", "unregisters", "registers"]),
        _targets,
    ),
    st.builds(Again, _targets),
    st.builds(Unregister, _targets),
    st.just(Pause()),
)


@dataclass
class Registration:
    """One on_shutdown() call: the hook's name, what it does, and its handle."""

    name: str
    kind: HookKind
    target: int
    fn: Callable[[], Any]
    handle: graceful_async.ShutdownHook[Any]


@dataclass
class HookBook:
    """What the scenario did, as it did it, and what the hooks did when they ran."""

    registrations: list[Registration] = field(default_factory=list)
    unregistered: set[int] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def target(self, index: int) -> int | None:
        return index % len(self.registrations) if self.registrations else None

    def apply(self, op: HookOp) -> None:
        if isinstance(op, Register):
            self._register(op)
        elif isinstance(op, Again) and (t := self.target(op.target)) is not None:
            earlier = self.registrations[t]
            handle = graceful_async.on_shutdown(earlier.fn, name=earlier.name)
            self.registrations.append(
                Registration(earlier.name, earlier.kind, earlier.target, earlier.fn, handle)
            )
        elif isinstance(op, Unregister) and (t := self.target(op.target)) is not None:
            self.registrations[t].handle.unregister()
            self.unregistered.add(t)

    def _register(self, op: Register) -> None:
        name = f"hook {len(self.registrations)}"
        calls, registrations = self.calls, self.registrations
        fn: Callable[[], Any]
        if op.kind == "async":

            async def fn() -> None:
                await anyio.lowlevel.checkpoint()
                calls.append(name)

        else:

            def fn() -> None:
                calls.append(name)
                if op.kind == "raises":
                    raise _Boom(name)
                if op.kind == "unregisters":
                    registrations[op.target % len(registrations)].handle.unregister()
                if op.kind == "registers":
                    try:
                        graceful_async.on_shutdown(pytest.fail, "registered too late")
                    except RuntimeError:
                        self.refused.append(name)

        handle = graceful_async.on_shutdown(fn, name=name)
        registrations.append(Registration(name, op.kind, op.target, fn, handle))

    def expected_runs(self) -> list[Registration]:
        """The documented hook phase: last registered first, each at most once, and an
        unregistered hook (even one unregistered by an earlier hook) never runs."""
        pending = [i for i in range(len(self.registrations)) if i not in self.unregistered]
        ran = []
        while pending:
            hook = self.registrations[pending.pop()]
            ran.append(hook)
            if hook.kind == "unregisters":
                target = hook.target % len(self.registrations)
                if target in pending:
                    pending.remove(target)
        return ran


def _forget_registered_hooks() -> None:
    """Start each example with no hook left over from a failed one."""
    while _hooks._registry.take_last() is not None:
        pass


@EXAMPLES
@given(
    before=st.lists(_hook_ops, max_size=4),
    tasks=st.lists(st.lists(_hook_ops, max_size=8), min_size=1, max_size=3),
    end=st.sampled_from(["return", "request", "signal", "error"]),
)
async def test_hooks_run_last_registered_first_once_each_unless_unregistered(
    before: list[HookOp], tasks: list[list[HookOp]], end: str
) -> None:
    """Any interleaving of registrations and unregistrations, however main ends: the hooks
    still registered run once each, last registered first, and never again."""
    _forget_registered_hooks()
    book = HookBook()
    for op in before:  # no run() is active yet: these wait for the next one
        book.apply(op)
    registered = anyio.Event()

    async def task(ops: list[HookOp]) -> None:
        for op in ops:
            if isinstance(op, Pause):
                await anyio.lowlevel.checkpoint()
            else:
                book.apply(op)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for ops in tasks:
                tg.start_soon(task, ops)
        registered.set()
        if end == "error":
            raise _Boom("main failed")
        if end == "request":
            graceful_async.request_shutdown()
        if end != "return":
            await anyio.sleep_forever()

    with anyio.fail_after(HANG):
        async with run_service(main, grace=HANG / 2) as service:
            if end == "signal":
                await registered.wait()
                service.send_signal(signal.SIGTERM)

    expected = book.expected_runs()
    names = [hook.name for hook in expected]
    assert service.result.hooks_run == tuple(names)
    assert book.calls == names
    failed = [hook.name for hook in expected if hook.kind == "raises"]
    assert service.result.hooks_failed == tuple(failed)
    assert book.refused == [hook.name for hook in expected if hook.kind == "registers"]

    async def nothing() -> None:
        pass

    with anyio.fail_after(HANG):
        async with run_service(nothing) as again:
            pass
    assert again.result.hooks_run == ()
    assert book.calls == names

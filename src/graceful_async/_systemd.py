"""The systemd notify protocol: READY, STOPPING, EXTEND_TIMEOUT_USEC and watchdog pings.

systemd hands a ``Type=notify`` service the address of a datagram socket in
``NOTIFY_SOCKET``: a path, or a name in Linux's abstract namespace when it starts with
``@``. Each message is one datagram of newline-separated ``KEY=VALUE`` lines. This is the
whole protocol we need, so it is spoken here with the standard library rather than
through libsystemd.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import final

from ._lifecycle import Event, Lifecycle
from ._log import logger

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
#: What systemd tells the service alone: child processes do not inherit these.
SYSTEMD_VARIABLES = frozenset({NOTIFY_SOCKET_ENV, "WATCHDOG_USEC", "WATCHDOG_PID"})


class Notifier:
    """Sends notifications to the service manager. Never blocks, never raises."""

    def __init__(self, address: str, watchdog_interval: float | None) -> None:
        import socket  # deferred: costly to import, and most services run without systemd

        # "@name" is the abstract namespace, spelled with a leading NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        #: Seconds between two WATCHDOG=1 pings (half of what systemd allows), or None.
        self.watchdog_interval = watchdog_interval
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)
        self._warned = False
        self._next_ping = 0.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Notifier | None:
        """The notifier that the environment asks for, or None outside systemd."""
        address = environ.get(NOTIFY_SOCKET_ENV, "")
        if not address.startswith(("/", "@")):
            return None
        return cls(address, _watchdog_interval(environ))

    def send(self, **fields: object) -> bool:
        """Send one message, such as ``send(READY=1)``; True if it went out."""
        # One line per field: a newline inside a value (a shutdown reason is free text)
        # would smuggle in a field of its own, such as READY=1.
        message = "\n".join(
            f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items()
        )
        try:
            data = message.encode("utf-8", errors="backslashreplace")
            self._socket.sendto(data, self.address)
        except OSError as exc:
            # The service must go on, and stop, whether or not systemd listens. Say so
            # once: a broken notify socket tends to stay broken.
            if not self._warned:
                self._warned = True
                logger.warning("could not notify systemd (%s): %s", message.split("\n")[0], exc)
            return False
        return True

    def ready(self) -> None:
        self.send(READY=1, STATUS="ready")

    def reloading(self) -> None:
        # MONOTONIC_USEC tells systemd which reload this answers; time.monotonic() is
        # CLOCK_MONOTONIC, the clock it expects. READY=1 (ready()) ends the reload.
        self.send(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000, STATUS="reloading")

    def stopping(self, what: str, seconds_left: float) -> None:
        """Say that the stop has begun, and that it may take ``seconds_left`` more."""
        fields: dict[str, object] = {"STOPPING": 1, "STATUS": f"stopping: {what}"}
        fields.update(_extension(seconds_left))
        self.send(**fields)

    def extend_timeout(self, seconds_left: float) -> None:
        """Ask for ``seconds_left`` more (a signal came after main had returned)."""
        self.send(**_extension(seconds_left))

    def ping_if_due(self) -> float:
        """Send WATCHDOG=1 if it is time; return when the next ping is due."""
        if self.watchdog_interval is None:
            return math.inf
        now = time.monotonic()
        if now >= self._next_ping:
            self.send(WATCHDOG=1)
            self._next_ping = now + self.watchdog_interval
        return self._next_ping

    def close(self) -> None:
        self._socket.close()


@final
class SystemdNotifications:
    """Tells systemd how the run goes: attached by run() when ``NOTIFY_SOCKET`` asks.

    READY=1 when the service is marked ready; STOPPING=1 at the first trigger, with the
    time the stop may take; more time when a signal after main returned bounds the
    rest; RELOADING=1 and READY=1 around a reload; WATCHDOG=1 pings from the loop.
    """

    def __init__(self, lifecycle: Lifecycle, notifier: Notifier) -> None:
        self._state = lifecycle.state
        self._notifier = notifier
        self._reloading = False
        lifecycle.subscribe(Event.READY, notifier.ready)
        lifecycle.subscribe(Event.STOPPING, self._stopping)
        lifecycle.subscribe(Event.ARMED, self._armed)
        lifecycle.subscribe(Event.RELOADING, self._reload_begins)
        lifecycle.subscribe(Event.RELOADED, self._reload_done)
        lifecycle.subscribe(Event.ENDED, notifier.close)
        # Pinged from the loop itself: a loop that is blocked stops pinging, and systemd
        # then restarts the service, which is the point of its watchdog.
        lifecycle.wake_me(notifier.ping_if_due)

    @classmethod
    def attach(
        cls, lifecycle: Lifecycle, environ: Mapping[str, str] = os.environ
    ) -> SystemdNotifications | None:
        """Attach to ``lifecycle`` if the environment asks for notifications."""
        notifier = Notifier.from_environ(environ)
        return None if notifier is None else cls(lifecycle, notifier)

    def _stopping(self) -> None:
        state = self._state
        assert state.trigger is not None
        self._notifier.stopping(state.trigger.describe(), state.deadline - time.monotonic())

    def _armed(self) -> None:
        # systemd sent that signal and started its stop timeout: it must wait for us.
        self._notifier.extend_timeout(self._state.deadline - time.monotonic())

    def _reload_begins(self) -> None:
        # systemd hears of the reload (and waits for it, with Type=notify-reload) only
        # once the service has said it is ready: before that, it is still starting.
        self._reloading = self._state.marked_ready
        if self._reloading:
            self._notifier.reloading()

    def _reload_done(self) -> None:
        if self._reloading:
            self._reloading = False
            self._notifier.ready()


def _extension(seconds_left: float) -> dict[str, object]:
    if not math.isfinite(seconds_left):
        return {}
    # systemd's TimeoutStopSec may be shorter than our grace period. Asking for the time
    # we are sure to need (plus a second for the exit itself) keeps systemd from killing
    # us inside our own deadline; it never shortens the stop timeout systemd granted.
    return {"EXTEND_TIMEOUT_USEC": int((max(0.0, seconds_left) + 1.0) * 1_000_000)}


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    # systemd sets WATCHDOG_PID too when the variables might reach other processes; the
    # pings count only from that process.
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    # Half the allowed interval, as sd_watchdog_enabled(3) recommends.
    return usec / 2 / 1_000_000

"""Telling systemd how a daemon is doing: sd_notify and the watchdog.

A unit with ``Type=notify`` starts its daemon with ``$NOTIFY_SOCKET`` set:
a ``AF_UNIX`` datagram socket, a path or, when it starts with ``@``, an
abstract name. A daemon sends newline-separated ``KEY=value`` lines to it
(``READY=1`` once it serves, ``STOPPING=1`` when it begins to stop,
``STATUS=...`` free text, ``WATCHDOG=1`` as a keep-alive). The protocol is
the one of sd_notify(3); it is a dozen lines, so no library is needed.

With ``WatchdogSec=`` in the unit, systemd passes ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``, the process meant) and kills the service when no
``WATCHDOG=1`` came for that long. :class:`Watchdog` sends it from its own
thread only while a check proves the daemon is really working, so a hung
daemon goes silent and is restarted.

Outside systemd (no ``$NOTIFY_SOCKET``) everything here does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from flotilla import concurrency

LOG = logging.getLogger(__name__)


def notify(*states: str) -> bool:
    """Send ``states`` (``"READY=1"``, ...) to systemd; True when sent.

    Never raises: a daemon must not fail because its supervisor went away.
    """
    path = os.environ.get("NOTIFY_SOCKET")
    if not path or not states:
        return False
    if path.startswith("@"):
        address = "\0" + path[1:]          # abstract namespace
    elif path.startswith("/"):
        address = path
    else:                                   # vsock:... is for VMs, not us
        LOG.warning("NOTIFY_SOCKET=%s: unsupported address, not notifying", path)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        LOG.warning("cannot notify systemd at %s: %s", path, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds of ``WatchdogSec=`` meant for this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        return None
    return seconds if seconds > 0 else None


class Watchdog:
    """Sends ``WATCHDOG=1`` every ``interval / 4`` seconds while ``alive()``.

    ``alive()`` returns True when the daemon proved recently that it works,
    or a string saying what is wrong (logged once, when it turns so; then
    the pings stop and systemd ends the daemon after ``interval``).
    """

    def __init__(self, interval: float, alive: Callable[[], bool | str]) -> None:
        self.interval = interval
        self._alive = alive
        self._stop = concurrency.Event()
        self._handle: concurrency.Handle | None = None
        self.pings = 0

    @classmethod
    def from_environment(cls, alive: Callable[[], bool | str]) -> Watchdog | None:
        interval = watchdog_interval()
        return cls(interval, alive) if interval else None

    def start(self) -> None:
        self._handle = concurrency.spawn(self._loop)

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.wait(self.interval)

    def _check(self) -> bool | str:
        try:
            return self._alive()
        except Exception as exc:
            return "liveness check failed: %s: %s" % (type(exc).__name__, exc)

    def _loop(self) -> None:
        period = self.interval / 4
        problem: str | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            verdict = self._check()
            if verdict is True:
                if problem is not None:
                    LOG.info("watchdog: alive again")
                problem = None
                if notify("WATCHDOG=1"):
                    self.pings += 1
            elif problem is None:
                problem = verdict if isinstance(verdict, str) else "not alive"
                LOG.error("watchdog: %s; no keep-alive for systemd (it ends this "
                          "daemon %.0f s after the last one)", problem, self.interval)
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

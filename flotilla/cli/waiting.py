"""``--wait``: poll a server until it reaches a stable state, showing progress.

Rules:

* every change of (status, task_state) is printed on its own line as it is
  seen; between changes a spinner turns (on a terminal) or dots are
  printed, so a long build visibly is still alive;
* success is the target status with no task in progress (for a delete: the
  server is gone, 404, or DELETED);
* ERROR ends the wait with the server's fault message; so does a stable
  state other than the target once a task was seen to run (the action
  ran and ended elsewhere, e.g. a stop that left the server ACTIVE);
* a wait ends after ``timeout`` seconds with an error naming the last state.

Progress goes to stderr, so ``-f json`` output on stdout stays parseable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from openstack import exceptions as sdk_exc

DELETED = "DELETED"
STABLE = frozenset({"ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "ERROR",
                    "SHELVED", "SHELVED_OFFLOADED", "RESCUE", "DELETED"})
_SPINNER = "|/-\\"


class WaitFailed(Exception):
    """The server did not reach the target state (message says why)."""


def fault_message(server: Any) -> str:
    fault = getattr(server, "fault", None) or {}
    if isinstance(fault, dict):
        return fault.get("message") or fault.get("details") or "no fault recorded"
    return str(fault)


class Progress:
    """Prints state changes, and a spinner or dots in between."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last: str | None = None
        self.ticks = 0
        self.dirty = False  # something printed on the current line

    def update(self, state: str) -> None:
        if state != self.last:
            self._end_line()
            self.stream.write("%s: %s\n" % (self.label, state))
            self.last = state
        else:
            self.ticks += 1
            if self.tty:
                self.stream.write("\r%s" % _SPINNER[self.ticks % len(_SPINNER)])
            else:
                self.stream.write(".")
            self.dirty = True
        self.stream.flush()

    def _end_line(self) -> None:
        if self.dirty:
            self.stream.write("\r \r" if self.tty else "\n")
            self.dirty = False

    def finish(self) -> None:
        self._end_line()
        self.stream.flush()


def _state(server: Any) -> tuple[str, str | None]:
    status = (getattr(server, "status", None) or "UNKNOWN").upper()
    return status, getattr(server, "task_state", None)


def wait_for_server(fetch: Callable[[], Any], target: str, *, stream: TextIO,
                    label: str = "server", interval: float = 2.0,
                    timeout: float = 600.0,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> Any:
    """Poll ``fetch()`` (the server, or NotFoundException once it is gone)
    until ``target`` status (``DELETED`` for deletes) is reached; returns
    the last server seen (None when deleted). Raises WaitFailed."""
    progress = Progress(stream, label)
    deadline = clock() + timeout
    seen_task = False
    server = None
    try:
        while True:
            try:
                server = fetch()
            except sdk_exc.NotFoundException:
                if target == DELETED:
                    progress.update("deleted")
                    return None
                raise WaitFailed("%s disappeared while waiting for %s" % (label, target)) \
                    from None
            status, task = _state(server)
            progress.update(status if not task else "%s (%s)" % (status, task))
            seen_task = seen_task or bool(task)
            if status == "ERROR":
                raise WaitFailed("%s is in ERROR: %s" % (label, fault_message(server)))
            if not task and status == target:
                return server
            if not task and seen_task and status in STABLE and status != target:
                raise WaitFailed("%s is %s, expected %s" % (label, status, target))
            if clock() >= deadline:
                raise WaitFailed("timed out after %ds waiting for %s to be %s (last: %s%s)"
                                 % (timeout, label, target, status,
                                    " (%s)" % task if task else ""))
            sleep(interval)
    finally:
        progress.finish()

"""Host drain: disable a compute host, then move every guest off it (a
running or paused one by live migration, a stopped one by cold migration),
several at once, printing each guest's progress; the end names every guest
that could not be moved and why.

Where the logic lives: in the client that drives the drain (the operator's
``flotilla host drain`` through the public API, or ``flotilla-manage host
drain`` through the database and the conductor), not in a conductor flow.
What an operator needs to survive the client's death does survive it:

* the host is disabled first, in the database, so nothing new lands on it
  whatever happens to the client;
* each guest's move is a live or cold migration flow on the conductor,
  which keeps its state on the migration record and finishes (or reverts)
  without the client (a cold migration the client did not live to confirm
  waits in VERIFY_RESIZE, already on the other host, for an operator to
  confirm it);
* a drain run again after the client died finds the guests still on the
  host and migrates those: draining is idempotent, its state is the host's
  content, so there is no second record of it to keep consistent.

What a client-side drain gives up is only the pacing of the guests not yet
started (at most ``max_concurrent`` migrations run at once, so a dead client
leaves the rest on the disabled host, where a new drain picks them up). A
conductor flow would also need its own record, abort and resume for little
more: the live migration flow already is the unit that must survive.

Rules of :class:`Drainer`:

* the host's compute service is disabled with the reason given;
* ACTIVE and PAUSED servers without a task are live-migrated; SHUTOFF
  ones without a task are cold-migrated (they stay stopped) and the drain
  confirms each once it waits in VERIFY_RESIZE; any other (in error,
  suspended, busy) is named with its state as the reason. Which move is
  decided from the server as it is when its move starts (it may have been
  started or stopped while it waited for a free slot): a running guest is
  never cold-migrated;
* a server that left the host by a cold migration still waiting in
  VERIFY_RESIZE elsewhere (one a dead drain did not confirm) still has its
  source copy on the host: the drain confirms it; a resize off the host
  that waits so is its owner's to confirm or revert, and is named;
* at most ``max_concurrent`` migrations run at once; a migration the cloud
  refuses or that ends in error names its reason (the cloud's message);
* each running migration's progress is printed when it changes; every
  guest's outcome is printed when known;
* the drain ends when no migration it started is running; it returns the
  guests moved and those not moved with their reasons (a guest not moved is
  still on the host; the exit status of the commands is then 1).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol, TextIO

LIVE_MOVABLE = ("ACTIVE", "PAUSED")
COLD_MOVABLE = ("SHUTOFF",)


class DrainRefused(Exception):
    """The cloud refused to start a guest's migration (its message)."""


@dataclasses.dataclass
class Guest:
    """One server as a drain sees it (API status names)."""

    id: str
    name: str
    status: str
    host: str | None
    task_state: str | None = None
    #: Set by the drain when it starts the guest's move: a cold migration.
    cold: bool = False
    #: For a server found by DrainBackend.awaiting_confirmation: the kind
    #: of its move off the drained host ("migration" or "resize").
    awaiting: str | None = None


@dataclasses.dataclass
class Outcome:
    """Where a started migration stands: ``done`` False while it runs;
    ``moved`` whether the guest left the host; ``reason`` why not."""

    done: bool
    moved: bool = False
    reason: str | None = None
    progress: str | None = None
    #: A cold migration that waits in VERIFY_RESIZE for its confirmation.
    verify: bool = False


class DrainBackend(Protocol):
    """How a drain reaches the cloud."""

    def disable(self, host: str, reason: str) -> None: ...

    def guests(self, host: str) -> list[Guest]: ...

    def guest(self, guest_id: str) -> Guest | None:
        """The server as it is now; None once it is deleted."""

    def awaiting_confirmation(self, host: str) -> list[Guest]:
        """The servers of the cold migrations and resizes off ``host`` that
        are ``finished`` (``Guest.awaiting``: which), each once; the drain
        keeps those that wait, idle, in VERIFY_RESIZE on another host."""

    def live_migrate(self, guest: Guest) -> None:
        """Start the guest's live migration (the scheduler chooses where);
        DrainRefused with the cloud's reason if refused."""

    def cold_migrate(self, guest: Guest) -> None:
        """Start the stopped guest's cold migration (the scheduler chooses
        where); DrainRefused with the cloud's reason if refused."""

    def confirm_migration(self, guest: Guest) -> None:
        """Confirm the guest's cold migration that waits in VERIFY_RESIZE;
        DrainRefused with the cloud's reason if refused."""

    def outcome(self, guest: Guest, host: str) -> Outcome:
        """Where the guest's migration stands (``guest.cold``: the drain
        started, or confirms, a cold migration of it)."""


@dataclasses.dataclass
class DrainResult:
    host: str
    moved: list[Guest] = dataclasses.field(default_factory=list)
    failed: dict[str, tuple[Guest, str]] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def _size(n: int) -> str:
    # A guest's overlay copied incrementally is often well under a MiB.
    return "%d MiB" % (n // 2 ** 20) if n >= 2 ** 20 else "%d KiB" % max(1, n // 1024)


def format_progress(migration: dict) -> str | None:
    """A migration record's progress as one short text (None when the
    record has no figures yet)."""
    parts = []
    for kind in ("memory", "disk"):
        total = migration.get(kind + "_total_bytes")
        done = migration.get(kind + "_processed_bytes")
        if total:
            parts.append("%s %d%% of %s" % (kind, min(100, 100 * (done or 0) // total),
                                            _size(total)))
    status = migration.get("status")
    return " ".join(([status] if status else []) + parts) or None


def _unmovable(guest: Guest) -> str:
    return "status %s%s: only an idle ACTIVE, PAUSED or SHUTOFF server can be migrated" \
        % (guest.status, ", task %s" % guest.task_state if guest.task_state else "")


@dataclasses.dataclass
class _Move:
    """A migration the drain started: the progress last printed, and
    whether its confirmation was asked (cold migrations)."""

    guest: Guest
    shown: str | None = None
    confirmed: bool = False


class Drainer:
    def __init__(self, backend: DrainBackend, max_concurrent: int = 2,
                 poll_interval: float = 2.0, out: TextIO | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.backend = backend
        self.max_concurrent = max_concurrent
        self.poll_interval = poll_interval
        self.out = out
        self.sleep = sleep

    def _say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def drain(self, host: str, reason: str = "drained") -> DrainResult:
        """Disable ``host`` and move every guest off it (see the rules)."""
        result = DrainResult(host)
        self.backend.disable(host, reason)
        self._say("host %s disabled (%s)" % (host, reason))
        pending: list[Guest] = []
        for guest in self.backend.guests(host):
            if guest.status not in LIVE_MOVABLE + COLD_MOVABLE or guest.task_state:
                self._fail(result, guest, _unmovable(guest))
            else:
                pending.append(guest)
        self._say("%d guest(s) to move, at most %d at once"
                  % (len(pending), self.max_concurrent))
        running: dict[str, _Move] = {}
        for guest in self.backend.awaiting_confirmation(host):
            if guest.status != "VERIFY_RESIZE" or guest.host == host or guest.task_state:
                continue
            if guest.awaiting == "migration":
                running[guest.id] = _Move(dataclasses.replace(guest, cold=True))
                self._say("%s (%s): its cold migration off the host waits in "
                          "VERIFY_RESIZE" % (guest.name, guest.id))
            else:
                self._fail(result, guest, "its resize off the host waits in VERIFY_RESIZE "
                           "(the source copy is still here): its owner confirms or "
                           "reverts it")
        while pending or running:
            while pending and len(running) < self.max_concurrent:
                guest = self._current(result, pending.pop(0), host)
                if guest is None:
                    continue
                cold = guest.cold
                try:
                    if cold:
                        self.backend.cold_migrate(guest)
                    else:
                        self.backend.live_migrate(guest)
                except DrainRefused as exc:
                    self._fail(result, guest, "refused: %s" % exc)
                    continue
                running[guest.id] = _Move(guest)
                self._say("%s (%s): %s started" % (
                    guest.name, guest.id, "cold migration (stopped)" if cold
                    else "live migration"))
            if not running:
                break
            self.sleep(self.poll_interval)
            for guest_id, move in list(running.items()):
                guest = move.guest
                outcome = self.backend.outcome(guest, host)
                if outcome.verify and not move.confirmed:
                    move.confirmed = True
                    try:
                        self.backend.confirm_migration(guest)
                    except DrainRefused as exc:
                        del running[guest_id]
                        self._fail(result, guest, "its cold migration waits in "
                                   "VERIFY_RESIZE; confirm refused: %s" % exc)
                        continue
                    self._say("%s (%s): confirming its cold migration" % (
                        guest.name, guest.id))
                    continue
                if outcome.verify:
                    del running[guest_id]
                    self._fail(result, guest, "its cold migration still waits in "
                               "VERIFY_RESIZE after the confirm: confirm or revert it")
                    continue
                if not outcome.done:
                    if outcome.progress and outcome.progress != move.shown:
                        self._say("%s (%s): %s" % (guest.name, guest.id, outcome.progress))
                        move.shown = outcome.progress
                    continue
                del running[guest_id]
                if outcome.moved:
                    result.moved.append(guest)
                    self._say("%s (%s): moved" % (guest.name, guest.id))
                else:
                    self._fail(result, guest, outcome.reason or "the migration failed")
        # Anything on the host the drain did not account for (a server that
        # arrived before the disable took effect) is named too.
        accounted = {g.id for g in result.moved} | set(result.failed)
        for guest in self.backend.guests(host):
            if guest.id not in accounted:
                self._fail(result, guest, "still on the host (arrived during the drain); "
                           "run the drain again")
        self._say("host %s: %d moved, %d not moved" % (host, len(result.moved),
                                                       len(result.failed)))
        for guest, why in result.failed.values():
            self._say("  not moved: %s (%s): %s" % (guest.name, guest.id, why))
        return result

    def _current(self, result: DrainResult, listed: Guest, host: str) -> Guest | None:
        """The guest as it is now, marked for its move; None (said or named)
        when there is nothing to move."""
        guest = self.backend.guest(listed.id)
        if guest is None:
            self._say("%s (%s): deleted meanwhile" % (listed.name, listed.id))
            return None
        if guest.host != host:
            self._say("%s (%s): no longer on the host (now on %s)"
                      % (guest.name, guest.id, guest.host))
            return None
        if guest.status not in LIVE_MOVABLE + COLD_MOVABLE or guest.task_state:
            self._fail(result, guest, _unmovable(guest))
            return None
        return dataclasses.replace(guest, cold=guest.status in COLD_MOVABLE)

    def _fail(self, result: DrainResult, guest: Guest, why: str) -> None:
        result.failed[guest.id] = (guest, why)
        self._say("%s (%s): not moved: %s" % (guest.name, guest.id, why))

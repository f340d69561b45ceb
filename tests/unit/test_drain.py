"""flotilla.drain.Drainer's rules against a scripted backend: which guests
it moves and how (live, or cold then confirmed), and what it names when a
move cannot finish."""

from __future__ import annotations

import io

from flotilla.drain import Drainer, DrainRefused, Guest, Outcome


class ScriptedBackend:
    """Each guest's outcomes, one per poll (the last one repeats)."""

    def __init__(self, guests: list[Guest], outcomes: dict[str, list[Outcome]],
                 refuse_confirm: bool = False, now: dict[str, Guest | None] | None = None,
                 awaiting: list[Guest] | None = None) -> None:
        self._guests = guests
        self.outcomes = outcomes
        self.refuse_confirm = refuse_confirm
        #: A guest as it is when its move starts (changed since the listing;
        #: None: deleted); the listed one when not given.
        self.now = now or {}
        self.awaiting = awaiting or []
        self.listed = False
        self.calls: list[tuple[str, str]] = []
        self.disabled: tuple[str, str] | None = None

    def disable(self, host: str, reason: str) -> None:
        self.disabled = (host, reason)

    def guests(self, host: str) -> list[Guest]:
        listing, self.listed = not self.listed, True    # the first: as listed
        moved = {g for kind, g in self.calls if kind in ("live", "cold")}
        return [g for g in self._guests if (g.id not in moved or
                                            not self.outcomes[g.id][-1].moved)
                and (listing or getattr(self.now.get(g.id, g), "host", None) == host)]

    def guest(self, guest_id: str) -> Guest | None:
        if guest_id in self.now:
            return self.now[guest_id]
        return next(g for g in self._guests if g.id == guest_id)

    def awaiting_confirmation(self, host: str) -> list[Guest]:
        return self.awaiting

    def live_migrate(self, guest: Guest) -> None:
        self.calls.append(("live", guest.id))

    def cold_migrate(self, guest: Guest) -> None:
        assert guest.cold
        self.calls.append(("cold", guest.id))

    def confirm_migration(self, guest: Guest) -> None:
        self.calls.append(("confirm", guest.id))
        if self.refuse_confirm:
            raise DrainRefused("the conductor could not be reached")

    def outcome(self, guest: Guest, host: str) -> Outcome:
        script = self.outcomes[guest.id]
        return script.pop(0) if len(script) > 1 else script[0]


def _drain(backend: ScriptedBackend):
    out = io.StringIO()
    result = Drainer(backend, max_concurrent=2, poll_interval=0, out=out,
                     sleep=lambda s: None).drain("host1", "maintenance")
    return result, out.getvalue()


def test_running_guests_move_live_and_stopped_ones_cold_then_confirmed():
    guests = [Guest("a", "vm-a", "ACTIVE", "host1"), Guest("p", "vm-p", "PAUSED", "host1"),
              Guest("s", "vm-s", "SHUTOFF", "host1")]
    backend = ScriptedBackend(guests, {
        "a": [Outcome(done=False, progress="running memory 50% of 64 MiB"),
              Outcome(done=True, moved=True)],
        "p": [Outcome(done=True, moved=True)],
        "s": [Outcome(done=False, progress="resize_migrating"),
              Outcome(done=False, verify=True),
              Outcome(done=False, progress="resize_confirming"),
              Outcome(done=True, moved=True)]})
    result, text = _drain(backend)
    assert result.ok, result.failed
    assert sorted(g.id for g in result.moved) == ["a", "p", "s"]
    assert ("live", "a") in backend.calls and ("live", "p") in backend.calls
    assert ("cold", "s") in backend.calls
    assert backend.calls.count(("confirm", "s")) == 1
    assert "vm-s (s): cold migration (stopped) started" in text
    assert "vm-s (s): confirming its cold migration" in text
    assert "vm-a (a): running memory 50% of 64 MiB" in text
    assert backend.disabled == ("host1", "maintenance")


def test_guests_in_error_suspended_or_busy_are_named_not_moved():
    guests = [Guest("e", "vm-e", "ERROR", "host1"), Guest("u", "vm-u", "SUSPENDED", "host1"),
              Guest("b", "vm-b", "SHUTOFF", "host1", task_state="powering-on")]
    backend = ScriptedBackend(guests, {g.id: [Outcome(done=True)] for g in guests})
    result, text = _drain(backend)
    assert not result.moved and backend.calls == []
    assert sorted(result.failed) == ["b", "e", "u"]
    assert "status SHUTOFF, task powering-on" in result.failed["b"][1]
    assert "status ERROR" in result.failed["e"][1]
    assert "0 moved, 3 not moved" in text


def test_a_refused_confirm_names_the_guest_waiting_in_verify_resize():
    guests = [Guest("s", "vm-s", "SHUTOFF", "host1")]
    backend = ScriptedBackend(guests, {"s": [Outcome(done=False, verify=True)]},
                              refuse_confirm=True)
    result, _text = _drain(backend)
    assert list(result.failed) == ["s"]
    assert "waits in VERIFY_RESIZE; confirm refused: the conductor could not be " \
           "reached" in result.failed["s"][1]


def test_a_confirm_that_leaves_it_in_verify_resize_is_named_once():
    guests = [Guest("s", "vm-s", "SHUTOFF", "host1")]
    backend = ScriptedBackend(guests, {"s": [Outcome(done=False, verify=True)]})
    result, _text = _drain(backend)
    assert backend.calls == [("cold", "s"), ("confirm", "s")]
    assert "still waits in VERIFY_RESIZE after the confirm" in result.failed["s"][1]


def test_the_move_is_chosen_from_the_guest_as_it_is_when_its_turn_comes():
    """Listed stopped, started while it waited for a slot: moved live, not
    cold (a cold migration would power the running guest off); listed
    running, stopped meanwhile: cold; a guest deleted or gone elsewhere
    meanwhile is not named; one busy now is."""
    listed = [Guest("s", "vm-s", "SHUTOFF", "host1"), Guest("a", "vm-a", "ACTIVE", "host1"),
              Guest("d", "vm-d", "ACTIVE", "host1"), Guest("g", "vm-g", "ACTIVE", "host1"),
              Guest("b", "vm-b", "ACTIVE", "host1")]
    backend = ScriptedBackend(listed, {g.id: [Outcome(done=True, moved=True)]
                                       for g in listed}, now={
        "s": Guest("s", "vm-s", "ACTIVE", "host1"),
        "a": Guest("a", "vm-a", "SHUTOFF", "host1"),
        "d": None,
        "g": Guest("g", "vm-g", "ACTIVE", "host2"),
        "b": Guest("b", "vm-b", "ACTIVE", "host1", task_state="rebooting")})
    result, text = _drain(backend)
    assert backend.calls == [("live", "s"), ("cold", "a")]
    assert sorted(g.id for g in result.moved) == ["a", "s"]
    assert list(result.failed) == ["b"] and "task rebooting" in result.failed["b"][1]
    assert "vm-d (d): deleted meanwhile" in text
    assert "vm-g (g): no longer on the host (now on host2)" in text


def test_a_cold_migration_off_the_host_left_unconfirmed_is_confirmed():
    """A drain that died before its confirm leaves the guest in
    VERIFY_RESIZE on the other host with its source copy on this one: a
    new drain confirms it; a resize waiting so is its owner's, named."""
    left = Guest("c", "vm-c", "VERIFY_RESIZE", "host2", awaiting="migration")
    resized = Guest("r", "vm-r", "VERIFY_RESIZE", "host2", awaiting="resize")
    # Finished once, confirmed or reverted since, or busy: not waiting.
    settled = [Guest("x", "vm-x", "SHUTOFF", "host2", awaiting="migration"),
               Guest("b", "vm-b", "VERIFY_RESIZE", "host1", awaiting="migration"),
               Guest("t", "vm-t", "VERIFY_RESIZE", "host2", task_state="resize_reverting",
                     awaiting="migration")]
    backend = ScriptedBackend([], {"c": [Outcome(done=False, verify=True),
                                         Outcome(done=False, progress="resize_confirming"),
                                         Outcome(done=True, moved=True)]},
                              awaiting=[left, resized, *settled])
    result, text = _drain(backend)
    assert backend.calls == [("confirm", "c")]
    assert [g.id for g in result.moved] == ["c"]
    assert list(result.failed) == ["r"]
    assert "its owner confirms or reverts it" in result.failed["r"][1]
    assert "vm-c (c): its cold migration off the host waits in VERIFY_RESIZE" in text
    assert "vm-c (c): confirming its cold migration" in text

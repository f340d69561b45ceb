"""The flow runner: preflight, order, saved state, waits, aborts, reverts,
resuming after a restart; recorded on a real (SQLite) instance action."""

from __future__ import annotations

import dataclasses

import pytest

from conductor.flows import runner
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.objects import Flavor


@dataclasses.dataclass
class State(FlowState):
    seen: list[str] = dataclasses.field(default_factory=list)
    flavor: Flavor | None = None


class Recording(Step):
    def __init__(self, name, calls, fail=False, fail_check=False, revert_raises=False,
                 wait=False, report_fails=False, poll=None, resumable=False, abort=False):
        self.name, self.calls = name, calls
        self.fail, self.fail_check, self.revert_raises = fail, fail_check, revert_raises
        self.waits_for_report, self.report_fails, self._poll = wait, report_fails, poll
        self.resumable, self.abort = resumable, abort

    def check(self, state):
        self.calls.append(("check", self.name))
        if self.fail_check:
            raise ValueError("not now")

    def execute(self, state):
        self.calls.append(("execute", self.name))
        if not self.waits_for_report:   # a waiting step's state is saved before it
            state.seen.append(self.name)
        if self.abort:
            db.flow_record_update(state.recorder.ref, abort_requested=True)
            state.check_abort(self.name)
        if self.fail:
            raise RuntimeError("boom at host-7")

    def revert(self, state):
        self.calls.append(("revert", self.name))
        if self.revert_raises:
            raise RuntimeError("revert broke")

    def on_report(self, state, report):
        self.calls.append(("report", self.name, report))
        if self.report_fails or report.get("error"):
            raise RuntimeError(report.get("error", "bad report"))

    def poll(self, state):
        self.calls.append(("poll", self.name))
        return self._poll

    def details(self, state):
        return "did %s" % self.name


UUID = "11111111-2222-4333-8444-555555555555"


def _state():
    return State(RequestContext(request_id="req-1", user_id="u1", project_id="p1"), UUID,
                 flavor=Flavor(memory_mb=64))


def _recorder():
    return runner.ActionRecorder(UUID, "req-1", "stop", "conductor-1")


def _events():
    action = db.action_get(UUID, "req-1")
    return [(e.event, e.result, e.details) for e in db.action_events_get(action.id)]


def _record():
    return db.flow_record_get(db.FlowRecordRef.action(UUID, "req-1"))


def test_steps_run_in_order_after_every_check_and_are_recorded(instance):
    calls = []
    status = runner.run_flow("demo", [Recording("a", calls), Recording("b", calls)],
                             _state(), _recorder())
    assert status == runner.COMPLETED
    # Preflight: both checks before any execute.
    assert calls == [("check", "a"), ("check", "b"), ("execute", "a"), ("execute", "b")]
    assert _events() == [("conductor_a", "Success", "did a"),
                         ("conductor_b", "Success", "did b")]
    record = _record()
    assert (record.flow, record.flow_status, record.flow_owner, record.current_step) == (
        "demo", runner.COMPLETED, "conductor-1", None)
    # The state is saved whole, objects included, and comes back as it was.
    restored = State.from_data(record.flow_data)
    assert restored.seen == ["a", "b"] and restored.flavor == Flavor(memory_mb=64)
    assert restored.ctxt.request_id == "req-1"


def test_failure_reverts_failed_and_completed_steps_in_reverse(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls, revert_raises=True),
             Recording("c", calls, fail=True), Recording("d", calls)]
    with pytest.raises(FlowFailed) as info:
        runner.run_flow("demo", steps, _state(), _recorder())
    assert info.value.step == "c" and isinstance(info.value.cause, RuntimeError)
    # A revert that raises does not stop the others.
    assert [c for c in calls if c[0] == "revert"] == [
        ("revert", "c"), ("revert", "b"), ("revert", "a")]
    assert ("execute", "d") not in calls
    event, result, details = _events()[-1]
    assert (event, result) == ("conductor_c", "Error")
    # Users read the failure without the host the message named.
    assert details == "Unexpected error (RuntimeError)"
    assert _record().flow_status == runner.FAILED


def test_a_failed_check_executes_nothing(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls, fail_check=True)]
    with pytest.raises(FlowFailed, match="not now"):
        runner.run_flow("demo", steps, _state(), _recorder())
    assert [c for c in calls if c[0] == "execute"] == []
    assert ("conductor_b_check", "Error") in [e[:2] for e in _events()]


def test_a_waiting_step_saves_the_flow_and_a_report_continues_it(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls, wait=True), Recording("c", calls)]
    assert runner.run_flow("demo", steps, _state(), _recorder()) == runner.WAITING
    record = _record()
    assert (record.flow_status, record.current_step) == (runner.WAITING, "b")
    assert ("execute", "c") not in calls
    # Any conductor continues it from the saved state alone.
    state = State.from_data(record.flow_data)
    assert runner.continue_flow(steps, state, _recorder(), {"ok": 1}) == runner.COMPLETED
    assert ("report", "b", {"ok": 1}) in calls and ("execute", "c") in calls
    assert state.seen == ["a", "c"]
    # A second (duplicate) report is ignored.
    assert runner.continue_flow(steps, state, _recorder(), {"ok": 2}) == runner.COMPLETED
    assert ("report", "b", {"ok": 2}) not in calls


def test_a_report_that_arrives_before_execute_returns_is_not_lost(instance):
    calls = []

    class InstantReport(Recording):
        def execute(self, state):
            super().execute(state)
            # The agent answers before the cast call even returns.
            fresh = State.from_data(_record().flow_data)
            runner.continue_flow(steps, fresh, _recorder(), {"fast": True})

    steps = [Recording("a", calls), InstantReport("b", calls, wait=True),
             Recording("c", calls)]
    assert runner.run_flow("demo", steps, _state(), _recorder()) == runner.WAITING
    assert ("report", "b", {"fast": True}) in calls and ("execute", "c") in calls
    assert _record().flow_status == runner.COMPLETED


def test_a_failed_report_reverts_the_waiting_step_and_those_before(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls, wait=True), Recording("c", calls)]
    runner.run_flow("demo", steps, _state(), _recorder())
    with pytest.raises(FlowFailed, match="spawn failed"):
        runner.continue_flow(steps, _state(), _recorder(), {"error": "spawn failed"})
    assert [c for c in calls if c[0] == "revert"] == [("revert", "b"), ("revert", "a")]
    assert _record().flow_status == runner.FAILED


def test_a_lost_report_is_found_by_poll(instance):
    calls = []
    steps = [Recording("a", calls, wait=True, poll={"found": True}), Recording("b", calls)]
    runner.run_flow("demo", steps, _state(), _recorder())
    record = _record()
    assert runner.resume_flow(steps, State.from_data(record.flow_data), _recorder(),
                              record) == runner.COMPLETED
    assert ("report", "a", {"found": True}) in calls


def test_still_waiting_when_poll_finds_nothing(instance):
    calls = []
    steps = [Recording("a", calls, wait=True, poll=None)]
    runner.run_flow("demo", steps, _state(), _recorder())
    record = _record()
    assert runner.resume_flow(steps, _state(), _recorder(), record) == runner.WAITING
    assert _record().flow_status == runner.WAITING


def test_abort_between_steps_reverts_what_was_done(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls, wait=True), Recording("c", calls)]
    runner.run_flow("demo", steps, _state(), _recorder())
    db.flow_record_update(db.FlowRecordRef.action(UUID, "req-1"), abort_requested=True)
    with pytest.raises(FlowFailed) as info:
        runner.continue_flow(steps, _state(), _recorder(), {})
    assert info.value.aborted and info.value.step == "c"
    assert ("execute", "c") not in calls
    assert [c for c in calls if c[0] == "revert"] == [("revert", "b"), ("revert", "a")]
    assert _record().flow_status == runner.ABORTED


def test_a_long_step_honours_an_abort_inside_it(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls, abort=True), Recording("c", calls)]
    with pytest.raises(FlowFailed) as info:
        runner.run_flow("demo", steps, _state(), _recorder())
    assert info.value.aborted
    assert [c for c in calls if c[0] == "revert"] == [("revert", "b"), ("revert", "a")]
    assert _record().flow_status == runner.ABORTED


def test_resume_after_a_restart_reverts_an_interrupted_step(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls), Recording("c", calls)]
    # What a conductor killed during step b left behind.
    state = _state()
    state.seen = ["a"]
    db.flow_record_update(db.FlowRecordRef.action(UUID, "req-1"), flow="demo",
                          flow_status=runner.RUNNING, flow_owner="conductor-1",
                          current_step="b", flow_data=state.to_data())
    with pytest.raises(FlowFailed) as info:
        runner.resume_flow(steps, state, _recorder(), _record())
    assert isinstance(info.value.cause, runner.FlowInterrupted)
    assert [c for c in calls if c[0] == "revert"] == [("revert", "b"), ("revert", "a")]
    assert _record().flow_status == runner.FAILED


def test_resume_runs_a_resumable_step_again(instance):
    calls = []
    steps = [Recording("a", calls), Recording("b", calls, resumable=True), Recording("c", calls)]
    db.flow_record_update(db.FlowRecordRef.action(UUID, "req-1"), flow="demo",
                          flow_status=runner.RUNNING, flow_owner="conductor-1",
                          current_step="b", flow_data=_state().to_data())
    assert runner.resume_flow(steps, _state(), _recorder(), _record()) == runner.COMPLETED
    assert [c[1] for c in calls if c[0] == "execute"] == ["b", "c"]


def test_a_flow_for_a_request_without_an_action_records_one(db):
    uuid = "22222222-2222-4333-8444-555555555555"
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1",
                        "flavor": {"memory_mb": 64, "vcpus": 1}, "vm_state": "active"})
    calls = []
    state = State(RequestContext(request_id="req-9"), uuid)
    recorder = runner.ActionRecorder(uuid, "req-9", "delete", "c1")
    assert runner.run_flow("demo", [Recording("a", calls)], state, recorder) == \
        runner.COMPLETED
    assert db.action_get(uuid, "req-9").action == "delete"

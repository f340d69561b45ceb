"""The flow runner: order, reverts in reverse, step and events recorded."""

from __future__ import annotations

import pytest

from conductor.flows import runner
from conductor.flows.runner import FlowFailed, Step, run_flow


class Recorder:
    def __init__(self):
        self.log = []
        self.instance_uuid = "i"

    def set_step(self, step):
        self.log.append(("step", step))

    def start(self, event):
        self.log.append(("start", event))

    def finish(self, event, result, details=None, tb=None):
        self.log.append(("finish", event, result))


class Recording(Step):
    def __init__(self, name, calls, fail=False, fail_check=False, revert_raises=False):
        self.name, self.calls = name, calls
        self.fail, self.fail_check, self.revert_raises = fail, fail_check, revert_raises

    def check(self, state):
        self.calls.append(("check", self.name))
        if self.fail_check:
            raise ValueError("not now")

    def execute(self, state):
        self.calls.append(("execute", self.name))
        if self.fail:
            raise RuntimeError("boom")

    def revert(self, state):
        self.calls.append(("revert", self.name))
        if self.revert_raises:
            raise RuntimeError("revert broke")


def test_steps_run_in_order_and_are_recorded():
    calls, rec = [], Recorder()
    run_flow([Recording("a", calls), Recording("b", calls)], None, rec)
    assert calls == [("check", "a"), ("execute", "a"), ("check", "b"), ("execute", "b")]
    assert rec.log == [("step", "a"), ("start", "conductor_a"),
                       ("finish", "conductor_a", "Success"),
                       ("step", "b"), ("start", "conductor_b"),
                       ("finish", "conductor_b", "Success"), ("step", None)]


def test_failure_reverts_failed_and_completed_steps_in_reverse():
    calls, rec = [], Recorder()
    steps = [Recording("a", calls), Recording("b", calls, revert_raises=True),
             Recording("c", calls, fail=True), Recording("d", calls)]
    with pytest.raises(FlowFailed) as info:
        run_flow(steps, None, rec)
    assert info.value.step == "c" and isinstance(info.value.cause, RuntimeError)
    # A revert that raises does not stop the others.
    assert [c for c in calls if c[0] == "revert"] == [
        ("revert", "c"), ("revert", "b"), ("revert", "a")]
    assert ("execute", "d") not in calls
    assert ("finish", "conductor_c", "Error") in rec.log
    assert rec.log[-1] == ("step", None)


def test_a_failed_check_executes_nothing():
    calls = []
    with pytest.raises(FlowFailed, match="not now"):
        run_flow([Recording("a", calls, fail_check=True)], None, Recorder())
    assert ("execute", "a") not in calls


def test_runner_module_has_one_entry_point():
    assert callable(runner.run_flow)

"""The resize entries of flotilla.states: the tasks Nova names, where each
may start, the statuses the API shows, deadlines and the reaper's policy."""

from __future__ import annotations

import pytest

from api.compute import views
from flotilla import states as st


def test_resize_moves_through_nova_s_tasks():
    op = st.operation("resize")
    assert op.task_states == ("resize_prep", "resize_migrating", "resize_migrated",
                              "resize_finish")
    assert op.from_vm_states == (st.ACTIVE, st.STOPPED) and op.to_vm_state == st.RESIZED
    for task in op.task_states:
        assert st.operation_for_task(task) is op
        assert st.default_timeout(task) == op.timeout


@pytest.mark.parametrize("name, task", [("confirm_resize", "resize_confirming"),
                                        ("revert_resize", "resize_reverting")])
def test_confirm_and_revert_start_only_from_resized(name, task):
    op = st.operation(name)
    assert op.task_state == task and op.from_vm_states == (st.RESIZED,)


@pytest.mark.parametrize("name", ["resize", "confirm_resize", "revert_resize"])
def test_the_reaper_hands_them_to_the_resize_flow(name):
    op = st.operation(name)
    assert (op.on_timeout, op.flow) == (st.ON_TIMEOUT_CLEANUP, "resize")


@pytest.mark.parametrize("vm_state, task, status", [
    (st.ACTIVE, "resize_prep", "RESIZE"), (st.STOPPED, "resize_finish", "RESIZE"),
    (st.RESIZED, None, "VERIFY_RESIZE"), (st.RESIZED, "resize_reverting", "REVERT_RESIZE"),
    (st.RESIZED, "resize_confirming", "VERIFY_RESIZE")])
def test_statuses_as_nova_shows_them(vm_state, task, status):
    assert views.status(vm_state, task) == status


def test_a_resized_server_may_be_deleted():
    assert st.RESIZED in st.operation("delete").from_vm_states
    assert st.RESIZED in st.VM_STATES

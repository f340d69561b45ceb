"""The reaper's branches, on SQLite with the real build and delete flows
(their RPC clients record what they would send)."""

from __future__ import annotations

import datetime
import uuid as uuidlib

import pytest

from conductor.flows.build import BuildFlow
from conductor.flows.delete import DeleteFlow
from conductor.reaper import Reaper
from flotilla import binaries
from flotilla import states as st

PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


class Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


@pytest.fixture
def reaper(db, db_conf):
    compute = Recorder()
    flows = {"build": BuildFlow(db_conf, "c1", Recorder(), compute),
             "delete": DeleteFlow(db_conf, "c1", compute)}
    r = Reaper(db_conf, flows, "c1")
    r.compute = compute
    db.compute_node_update("h1", {"vcpus": 4, "memory_mb": 4096, "disk_gb": 40})
    return r


def _instance(db, vm_state, task_state, host=None, deadline=PAST, action="stop"):
    uuid = str(uuidlib.uuid4())
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1",
                        "flavor": {"memory_mb": 64, "vcpus": 1}, "vm_state": vm_state,
                        "task_state": task_state, "task_deadline": deadline, "host": host})
    db.action_start(uuid, action, "req-" + uuid[:8])
    return uuid


def _claim(db, uuid):
    node = db.compute_node_get("h1")
    db.allocation_claim("h1", uuid, {"vcpus": 1, "memory_mb": 64, "disk_gb": 0},
                        node.generation)


def _reaped(db, uuid):
    action = db.action_get_all(uuid)[0]
    events = [(e.event, e.result) for e in db.action_events_get(action.id)]
    return action, events


def test_a_stuck_build_ends_in_error_with_its_claim_freed(db, reaper):
    uuid = _instance(db, st.BUILDING, st.SPAWNING, host="h1", action="create")
    _claim(db, uuid)
    assert reaper.run() == 1
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state, inst.task_deadline) == (st.ERROR, None, None)
    assert db.allocation_get_by_consumer(uuid) == []
    [fault] = db.instance_fault_get_all(uuid)
    assert fault.code == 504 and "Task spawning timed out" in fault.message
    action, events = _reaped(db, uuid)
    assert ("conductor_reap_task", "Error") in events and action.message == "Error"


def test_a_stuck_delete_without_a_host_is_completed_here(db, reaper):
    uuid = _instance(db, st.ERROR, st.DELETING, host=None, action="delete")
    assert reaper.run() == 1
    inst = db.instance_get(uuid, read_deleted=True)
    assert inst.deleted and inst.vm_state == st.DELETED
    action, events = _reaped(db, uuid)
    assert ("conductor_soft_delete", "Success") in events and action.message is None


def test_a_stuck_delete_on_a_down_host_is_completed_here(db, reaper):
    uuid = _instance(db, st.ACTIVE, st.DELETING, host="h1", action="delete")
    _claim(db, uuid)
    db.service_heartbeat("h1", binaries.COMPUTE, "compute")
    with db.session_scope() as session:   # its last heartbeat, long ago
        from flotilla.db.models import Service
        session.query(Service).update({"last_seen_at": PAST})
    assert reaper.run() == 1
    assert db.instance_get(uuid, read_deleted=True).deleted
    assert db.allocation_get_by_consumer(uuid) == []
    assert reaper.compute.calls == []     # nothing sent to the dead host


def test_a_stuck_delete_on_a_live_host_goes_to_error_for_a_retry(db, reaper):
    uuid = _instance(db, st.ACTIVE, st.DELETING, host="h1", action="delete")
    db.service_heartbeat("h1", binaries.COMPUTE, "compute")
    assert reaper.run() == 1
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.ERROR, None)
    assert "Task deleting timed out" in db.instance_fault_get_all(uuid)[0].message


@pytest.mark.parametrize("vm_state, task", [(st.ACTIVE, st.POWERING_OFF),
                                            (st.ACTIVE, st.REBOOTING),
                                            (st.PAUSED, st.UNPAUSING)])
def test_other_stuck_tasks_return_to_the_last_stable_state(db, reaper, vm_state, task):
    uuid = _instance(db, vm_state, task, host="h1")
    assert reaper.run() == 1
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (vm_state, None)
    action, events = _reaped(db, uuid)
    assert events == [("conductor_reap_task", "Error")] and action.message == "Error"
    assert "Task %s timed out" % task in db.instance_fault_get_all(uuid)[0].message


def test_a_task_this_version_does_not_know_is_restored(db, reaper):
    uuid = _instance(db, st.ACTIVE, "shelving_image_uploading", host="h1")
    assert reaper.run() == 1
    assert db.instance_get(uuid).task_state is None


def test_tasks_before_their_deadline_are_left_alone(db, reaper):
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    uuid = _instance(db, st.ACTIVE, st.POWERING_OFF, deadline=future)
    assert reaper.run() == 0
    assert db.instance_get(uuid).task_state == st.POWERING_OFF


def test_a_task_without_a_deadline_gets_one_and_is_not_ended(db, reaper):
    uuid = _instance(db, st.ACTIVE, st.PAUSING, deadline=None)
    assert reaper.run() == 0
    inst = db.instance_get(uuid)
    assert inst.task_state == st.PAUSING and inst.task_deadline is not None


def test_a_task_that_ended_meanwhile_wins(db, reaper):
    uuid = _instance(db, st.ACTIVE, st.POWERING_OFF)
    stale = db.instance_get(uuid)
    db.instance_update(uuid, {"vm_state": st.STOPPED, "task_state": None,
                              "task_deadline": None})
    assert reaper.end_task(stale) is False
    assert db.instance_get(uuid).vm_state == st.STOPPED
    assert db.instance_fault_get_all(uuid) == []

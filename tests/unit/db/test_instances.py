"""Instances: compare-and-swap transitions, soft delete, faults, actions.

Shared by the SQLite and PostgreSQL tiers (see tests/integration/db).
"""

from __future__ import annotations

import datetime
import json

import pytest

from flotilla import exception
from flotilla.db.types import utcnow
from tests.unit.db.fixtures import race

FLAVOR = {"flavorid": "m1.small", "name": "m1.small", "vcpus": 1,
          "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0}


def _active(db, **values):
    values = {"name": "vm", "project_id": "p1", "user_id": "u1",
              "flavor": FLAVOR, "vm_state": "active", "task_state": None,
              "host": "host1", **values}
    return db.instance_create(values)


def test_create_fills_sizes_from_flavor_snapshot(db):
    inst = _active(db)
    assert (inst.vcpus, inst.memory_mb, inst.flavor_id) == (1, 512, "m1.small")
    got = db.instance_get(inst.uuid)
    assert got.flavor == FLAVOR
    assert got.created_at.tzinfo is not None


def test_to_dict_is_json_with_iso_timestamps(db):
    inst = _active(db, metadata={"k": "v"})
    values = json.loads(json.dumps(db.instance_get(inst.uuid).to_dict()))
    assert values["uuid"] == inst.uuid
    assert values["metadata"] == {"k": "v"}
    created = datetime.datetime.fromisoformat(values["created_at"])
    assert created.utcoffset() == datetime.timedelta(0)


def test_cas_success(db):
    inst = _active(db)
    deadline = utcnow() + datetime.timedelta(minutes=5)
    out = db.instance_update(inst.uuid, {"task_state": "powering_off",
                                         "task_deadline": deadline},
                             expected_vm_state="active",
                             expected_task_state=None)
    assert out.task_state == "powering_off"
    assert out.task_deadline == deadline
    out = db.instance_update(inst.uuid, {"vm_state": "stopped", "task_state": None},
                             expected_vm_state=("active", "error"),
                             expected_task_state=["powering_off"])
    assert (out.vm_state, out.task_state) == ("stopped", None)


def test_cas_conflict_names_actual_state_and_overwrites_nothing(db):
    inst = _active(db, task_state="rebooting")
    with pytest.raises(exception.InstanceStateConflict) as info:
        db.instance_update(inst.uuid, {"task_state": "powering_off", "name": "x"},
                           expected_vm_state="active", expected_task_state=None)
    err = info.value
    assert err.kwargs["actual_vm_state"] == "active"
    assert err.kwargs["actual_task_state"] == "rebooting"
    assert "rebooting" in str(err) and err.code == 409
    after = db.instance_get(inst.uuid)
    assert (after.task_state, after.name) == ("rebooting", "vm")


def test_cas_expected_none_means_null(db):
    inst = _active(db)
    with pytest.raises(exception.InstanceStateConflict):
        db.instance_update(inst.uuid, {"vm_state": "error"},
                           expected_task_state="spawning")
    db.instance_update(inst.uuid, {"vm_state": "error"},
                       expected_task_state=(None, "spawning"))
    assert db.instance_get(inst.uuid).vm_state == "error"


def test_cas_unknown_instance(db):
    with pytest.raises(exception.InstanceNotFound):
        db.instance_update("no-such-uuid", {"vm_state": "error"},
                           expected_vm_state="active")


def test_update_rejects_protected_fields(db):
    inst = _active(db)
    with pytest.raises(exception.Invalid):
        db.instance_update(inst.uuid, {"uuid": "other"})


def test_cas_race_exactly_one_wins(db):
    inst = _active(db)
    wins, conflicts = race(
        12, lambda n: db.instance_update(inst.uuid, {"task_state": "deleting",
                                                     "display_description": str(n)},
                                         expected_vm_state="active",
                                         expected_task_state=None),
        exception.InstanceStateConflict)
    assert len(wins) == 1 and len(conflicts) == 11
    assert db.instance_get(inst.uuid).display_description == str(wins[0])


def test_soft_delete(db):
    inst = _active(db)
    _active(db, name="other")
    deleted = db.instance_destroy(inst.uuid, expected_task_state=None)
    assert deleted.deleted and deleted.deleted_at is not None
    with pytest.raises(exception.InstanceNotFound):
        db.instance_get(inst.uuid)
    assert db.instance_get(inst.uuid, read_deleted=True).deleted
    assert [i.name for i in db.instance_get_all_by_host("host1")] == ["other"]
    assert len(db.instance_get_all(read_deleted=True)) == 2
    with pytest.raises(exception.InstanceNotFound):
        db.instance_update(inst.uuid, {"vm_state": "active"})


def test_vm_state_deleted_and_the_deleted_flag_are_one_write(db):
    """No reader can see a live row in vm_state deleted (issue 9, part 10)."""
    inst = _active(db, task_state="deleting")
    retired = db.instance_update(inst.uuid, {"vm_state": "deleted", "task_state": None},
                                 expected_task_state="deleting")
    assert retired.deleted and retired.deleted_at == retired.updated_at
    with pytest.raises(exception.InstanceNotFound):
        db.instance_get(inst.uuid)
    assert db.instance_get_all() == []
    # The destroy that writers still send afterwards returns the row as is.
    again = db.instance_destroy(inst.uuid, expected_vm_state="deleted")
    assert again.deleted and again.deleted_at == retired.deleted_at
    with pytest.raises(exception.InstanceNotFound):
        db.instance_destroy(inst.uuid, expected_vm_state="active")


def test_destroy_of_a_deleted_row_not_retired_by_state_is_not_found(db):
    inst = _active(db)
    db.instance_destroy(inst.uuid)
    with pytest.raises(exception.InstanceNotFound):
        db.instance_destroy(inst.uuid)


def test_expired_tasks(db):
    inst = _active(db)
    past = utcnow() - datetime.timedelta(seconds=1)
    db.instance_update(inst.uuid, {"task_state": "spawning", "task_deadline": past})
    _active(db, name="idle")
    assert [i.uuid for i in db.instance_get_expired_tasks()] == [inst.uuid]


def test_faults_and_actions(db):
    inst = _active(db)
    db.instance_fault_create(inst.uuid, 500, "boom" * 100, details="tb", host="h")
    (fault,) = db.instance_fault_get_all(inst.uuid)
    # Cut in one place, and kept whole in the details.
    assert len(fault.message) == 255 and fault.message.endswith("...")
    assert fault.details == "boom" * 100 + "\n\ntb"
    with pytest.raises(exception.InstanceNotFound):
        db.instance_fault_create("nope", 500, "x")

    db.action_start(inst.uuid, "stop", "req-1", user_id="u1", project_id="p1")
    db.action_event_start(inst.uuid, "req-1", "compute_stop_instance", host="h")
    db.action_set_step(inst.uuid, "req-1", "power_off")
    db.action_event_finish(inst.uuid, "req-1", "compute_stop_instance", "Success")
    action = db.action_finish(inst.uuid, "req-1")
    # Finishing the action leaves a flow's step to the flow.
    assert action.finish_time is not None and action.current_step == "power_off"
    (event,) = db.action_events_get(action.id)
    assert event.result == "Success" and event.finish_time >= event.start_time
    assert [a.action for a in db.action_get_all(inst.uuid)] == ["stop"]
    with pytest.raises(exception.NotFound):
        db.action_event_finish(inst.uuid, "req-1", "compute_stop_instance", "Error")

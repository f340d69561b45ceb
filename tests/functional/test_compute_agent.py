"""The compute agent serves every RPC through the conductor, in one process."""

from __future__ import annotations

import pytest

from compute.virt import events, power_state
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.objects import Instance


def _events(uuid):
    result = []
    for action in db.action_get_all(uuid):
        for event in db.action_events_get(action.id):
            result.append((action.action, event.event, event.result))
    return result


def test_boot_runs_the_guest_and_records_the_action(fake_cloud):
    inst = fake_cloud.boot("host1", name="web")
    assert inst["vm_state"] == st.ACTIVE
    assert inst["power_state"] == power_state.RUNNING
    assert inst["host"] == "host1" and inst["launched_at"]
    assert inst["uuid"] in fake_cloud.drivers["host1"].guests
    assert inst["uuid"] not in fake_cloud.drivers["host2"].guests
    assert ("create", "compute_create_instance", "Success") in _events(inst["uuid"])


@pytest.mark.parametrize("method, vm_state, power", [
    ("stop_instance", st.STOPPED, power_state.SHUTDOWN),
    ("pause_instance", st.PAUSED, power_state.PAUSED),
    ("suspend_instance", st.SUSPENDED, power_state.SUSPENDED),
])
def test_operation_and_its_inverse(fake_cloud, method, vm_state, power):
    inverse = {"stop_instance": "start_instance", "pause_instance": "unpause_instance",
               "suspend_instance": "resume_instance"}[method]
    uuid = fake_cloud.boot("host1")["uuid"]
    getattr(fake_cloud.compute, method)(fake_cloud.ctxt, "host1", uuid)
    inst = fake_cloud.wait_for(uuid, lambda i: i["vm_state"] == vm_state
                               and i["task_state"] is None)
    assert inst["power_state"] == power
    getattr(fake_cloud.compute, inverse)(fake_cloud.ctxt, "host1", uuid)
    inst = fake_cloud.wait_for(uuid, lambda i: i["vm_state"] == st.ACTIVE
                               and i["task_state"] is None)
    assert inst["power_state"] == power_state.RUNNING


@pytest.mark.parametrize("reboot_type", ["SOFT", "HARD"])
def test_reboot(fake_cloud, reboot_type):
    uuid = fake_cloud.boot("host1")["uuid"]
    fake_cloud.compute.reboot_instance(fake_cloud.ctxt, "host1", uuid, reboot_type)
    fake_cloud.wait_for(uuid, lambda i: ("reboot", "compute_reboot_instance", "Success")
                        in _events(uuid))
    driver = fake_cloud.drivers["host1"]
    assert ("reboot", uuid) in driver.calls
    assert db.instance_get(uuid).vm_state == st.ACTIVE


def test_operation_in_the_wrong_state_is_refused_and_recorded(fake_cloud):
    uuid = fake_cloud.boot("host1")["uuid"]
    fake_cloud.compute.start_instance(fake_cloud.ctxt, "host1", uuid)  # already active
    fake_cloud.wait_for(uuid, lambda i: ("start", "compute_start_instance", "Error")
                        in _events(uuid))
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.ACTIVE, None)
    assert ("power_on", uuid) not in fake_cloud.drivers["host1"].calls


def test_spawn_failure_ends_in_error_with_a_fault(fake_cloud):
    uuid = fake_cloud.create_instance()
    fake_cloud.drivers["host1"].inject_spawn_failure(uuid)
    fake_cloud.compute.build_and_run_instance(fake_cloud.ctxt, "host1", uuid, None)
    inst = fake_cloud.wait_for(uuid, lambda i: i["vm_state"] == st.ERROR)
    assert inst["task_state"] is None
    faults = db.instance_fault_get_all(uuid)
    # The owner reads what failed; the reason (a hypervisor's words) is for admins.
    assert faults and faults[0].message == "The server could not be created on its host."
    assert "injected failure" in faults[0].details and "host1" not in faults[0].message


def test_terminate_is_idempotent(fake_cloud):
    uuid = fake_cloud.boot("host2")["uuid"]
    fake_cloud.compute.terminate_instance(fake_cloud.ctxt, "host2", uuid)
    inst = fake_cloud.wait_for(uuid, lambda i: i["deleted"], read_deleted=True)
    assert inst["vm_state"] == st.DELETED and inst["terminated_at"]
    assert uuid not in fake_cloud.drivers["host2"].guests
    with pytest.raises(exception.InstanceNotFound):
        db.instance_get(uuid)
    fake_cloud.compute.terminate_instance(fake_cloud.ctxt, "host2", uuid)  # no error


def test_console_and_diagnostics_are_calls(fake_cloud):
    uuid = fake_cloud.boot("host1")["uuid"]
    output = fake_cloud.compute.get_console_output(fake_cloud.ctxt, "host1", uuid)
    # What the fake guest printed on its console, through the agent.
    assert output == fake_cloud.drivers["host1"].get_console_output(Instance(uuid=uuid))
    assert output == "flotilla fake guest %s booted\n" % uuid
    diags = fake_cloud.compute.get_diagnostics(fake_cloud.ctxt, "host1", uuid)
    assert "disks" in diags
    with pytest.raises(exception.InstanceNotFound):   # not on that host
        fake_cloud.compute.get_console_output(fake_cloud.ctxt, "host2", uuid)


def test_cast_to_a_host_without_an_agent_fails_at_once(fake_cloud):
    uuid = fake_cloud.create_instance()
    with pytest.raises(exception.MessageUndeliverable):
        fake_cloud.compute.build_and_run_instance(fake_cloud.ctxt, "nohost", uuid, None)


def test_agent_heartbeat_and_resources_reach_the_database(fake_cloud):
    services = {(s.host, s.binary) for s in db.service_get_all()}
    assert {("host1", "flotilla-compute"), ("host2", "flotilla-compute")} <= services
    node = db.compute_node_get("host1")
    assert node.vcpus == 8 and node.memory_mb == 8192


def test_guest_stopping_by_itself_moves_the_instance_to_stopped(fake_cloud):
    uuid = fake_cloud.boot("host1")["uuid"]
    fake_cloud.drivers["host1"].external_transition(uuid, events.STOPPED)
    inst = fake_cloud.wait_for(uuid, lambda i: i["vm_state"] == st.STOPPED)
    assert inst["power_state"] == power_state.SHUTDOWN


def test_power_state_sync_catches_missed_events(fake_cloud):
    uuid = fake_cloud.boot("host1")["uuid"]
    fake_cloud.drivers["host1"].external_transition(uuid, events.PAUSED, emit=False)
    fake_cloud.compute_services["host1"].manager.sync_power_states()
    assert db.instance_get(uuid).power_state == power_state.PAUSED


def test_init_host_reconciles_after_a_crash(fake_cloud):
    driver = fake_cloud.drivers["host1"]
    running = fake_cloud.boot("host1")["uuid"]
    vanished = fake_cloud.boot("host1")["uuid"]
    mid_spawn = fake_cloud.boot("host1")["uuid"]
    mid_stop = fake_cloud.boot("host1")["uuid"]
    fake_cloud.stop_host("host1")
    # What a crash leaves behind: a domain nobody knows, a domain gone,
    # operations half done.
    orphan = "00000000-0000-4000-8000-000000000001"
    driver.spawn(Instance(uuid=orphan), None)
    driver.destroy(Instance(uuid=vanished))
    db.instance_update(mid_spawn, {"vm_state": st.BUILDING, "task_state": st.SPAWNING})
    db.instance_update(mid_stop, {"task_state": st.POWERING_OFF})
    driver.external_transition(mid_stop, events.STOPPED, emit=False)
    fake_cloud.start_host("host1", driver)
    assert orphan not in driver.guests
    assert db.instance_get(running).vm_state == st.ACTIVE
    assert db.instance_get(vanished).vm_state == st.ERROR
    assert "vanished" in db.instance_fault_get_all(vanished)[0].message
    assert (db.instance_get(mid_spawn).vm_state, db.instance_get(mid_spawn).task_state) \
        == (st.ACTIVE, None)
    stopped = db.instance_get(mid_stop)
    assert (stopped.vm_state, stopped.task_state) == (st.STOPPED, None)
    assert "interrupted" in db.instance_fault_get_all(mid_stop)[0].message


def test_libvirt_test_driver_serves_the_lifecycle(libvirt_test_cloud):
    cloud = libvirt_test_cloud
    inst = cloud.boot("lvhost", name="on-test-driver")
    assert inst["vm_state"] == st.ACTIVE, db.instance_fault_get_all(inst["uuid"])
    uuid = inst["uuid"]
    for method, state in (("stop_instance", st.STOPPED), ("start_instance", st.ACTIVE),
                          ("pause_instance", st.PAUSED), ("unpause_instance", st.ACTIVE),
                          ("suspend_instance", st.SUSPENDED), ("resume_instance", st.ACTIVE)):
        getattr(cloud.compute, method)(cloud.ctxt, "lvhost", uuid)
        got = cloud.wait_for(uuid, lambda i, s=state: i["vm_state"] == s
                             and i["task_state"] is None)
        assert got["vm_state"] == state, (method, db.instance_fault_get_all(uuid))
    cloud.compute.terminate_instance(cloud.ctxt, "lvhost", uuid)
    cloud.wait_for(uuid, lambda i: i["deleted"], read_deleted=True)
    assert uuid not in cloud.drivers["lvhost"].list_instances()

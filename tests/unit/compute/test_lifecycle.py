"""Lifecycle: the agent's state guards, events, faults and action ends,
including the recovery after a failed driver call.

The agent talks to a real ConductorManager over memory:// on SQLite (what
the agent sends is what a conductor receives), with the fake driver.
"""

from __future__ import annotations

import uuid as uuidlib

import pytest

from compute.lifecycle import Lifecycle
from compute.virt import power_state
from compute.virt.fake import FakeDriver
from conductor.manager import ConductorManager
from conductor.rpcapi import ConductorAPI
from flotilla import exception, rpc
from flotilla import states as st
from flotilla.context import RequestContext


@pytest.fixture
def agent(db, db_conf):
    db_conf.set_override("transport_url", "memory://")
    transport = rpc.get_transport(db_conf)
    server = rpc.RPCServer(transport, "conductor", None,
                           [ConductorManager(db_conf, transport)])
    server.start()
    driver = FakeDriver()
    driver.init_host("h1")
    lifecycle = Lifecycle("h1", driver, ConductorAPI(transport))
    yield lifecycle
    server.stop()
    server.wait(5)
    transport.cleanup()


def _active_instance(db, lifecycle: Lifecycle, ctxt: RequestContext, action: str) -> str:
    uuid = str(uuidlib.uuid4())
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1", "user_id": "u1",
                        "flavor": {"memory_mb": 64, "vcpus": 1}, "vm_state": st.BUILDING,
                        "task_state": st.SCHEDULING})
    db.action_start(uuid, "create", "req-build")
    assert lifecycle.build(RequestContext(request_id="req-build"), uuid, None)
    db.action_start(uuid, action, ctxt.request_id, user_id="u1", project_id="p1")
    return uuid


def _events(db, uuid, request_id):
    action = db.action_get(uuid, request_id)
    return action, [(e.event, e.result, e.host) for e in db.action_events_get(action.id)]


def test_a_successful_operation_records_and_finishes_its_action(db, agent):
    ctxt = RequestContext(request_id="req-stop")
    uuid = _active_instance(db, agent, ctxt, "stop")
    result = agent.run(ctxt, st.operation("stop"), uuid, agent.driver.power_off)
    assert (result["vm_state"], result["task_state"]) == (st.STOPPED, None)
    assert result["power_state"] == power_state.SHUTDOWN
    action, events = _events(db, uuid, "req-stop")
    assert events == [("compute_stop_instance", "Success", "h1")]
    assert action.finish_time is not None and action.message is None


def test_a_failed_driver_call_recovers_to_the_last_stable_state(db, agent):
    ctxt = RequestContext(request_id="req-stop")
    uuid = _active_instance(db, agent, ctxt, "stop")
    agent.driver.inject_failure("power_off", exception.HypervisorUnavailable(
        uri="qemu+tcp://10.0.0.7/system", reason="connection reset"))
    assert agent.run(ctxt, st.operation("stop"), uuid, agent.driver.power_off) is None
    inst = db.instance_get(uuid)
    # Back where it was: still active, no task, the power state libvirt reports.
    assert (inst.vm_state, inst.task_state, inst.task_deadline) == (st.ACTIVE, None, None)
    assert inst.power_state == power_state.RUNNING
    [fault] = db.instance_fault_get_all(uuid)
    assert fault.code == 503 and fault.host == "h1"
    # The owner reads what failed; the address stays with the admins.
    assert "10.0.0.7" not in fault.message and "10.0.0.7" in fault.details
    action, events = _events(db, uuid, "req-stop")
    [event] = db.action_events_get(action.id)
    assert (event.event, event.result) == ("compute_stop_instance", "Error")
    assert "10.0.0.7" not in event.details and "Traceback" in event.traceback
    assert action.finish_time is not None and action.message == "Error"


def test_recovery_when_the_guest_vanished_mid_call(db, agent):
    ctxt = RequestContext(request_id="req-reboot")
    uuid = _active_instance(db, agent, ctxt, "reboot")

    def reboot_and_vanish(instance):
        agent.driver.destroy(instance)
        raise exception.InstanceNotFound(instance_uuid=instance.uuid)

    agent.run(ctxt, st.operation("reboot_hard"), uuid, reboot_and_vanish)
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.ACTIVE, None)
    assert inst.power_state == power_state.NOSTATE   # the state sync repairs the rest


def test_an_operation_in_the_wrong_state_does_nothing_and_says_why(db, agent):
    ctxt = RequestContext(request_id="req-start")
    uuid = _active_instance(db, agent, ctxt, "start")
    assert agent.run(ctxt, st.operation("start"), uuid, agent.driver.power_on) is None
    assert ("power_on", uuid) not in agent.driver.calls
    action, events = _events(db, uuid, "req-start")
    assert events == [("compute_start_instance", "Error", "h1")]
    assert action.message == "Error"
    assert db.instance_fault_get_all(uuid) == []    # a refusal is not a fault


def test_a_failed_destroy_leaves_the_instance_in_error(db, agent):
    ctxt = RequestContext(request_id="req-delete")
    uuid = _active_instance(db, agent, ctxt, "delete")
    agent.driver.inject_failure("destroy", RuntimeError("disk busy"))
    assert agent.terminate(ctxt, uuid) is False
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.ERROR, None)
    assert db.action_get(uuid, "req-delete").message == "Error"
    assert db.instance_fault_get_all(uuid)[0].message == "Unexpected error (RuntimeError)"

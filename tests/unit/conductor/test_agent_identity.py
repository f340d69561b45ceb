"""Issue 13 defect 6: a compute agent acts only as the host its key proves,
on that host's instances (or one migrating to or from it).

A real ConductorManager serves on memory:// with the deployment key; each
"agent" is a client transport holding only its host key, as a compute host
is configured. Before this, any agent could read, rewrite and delete any
host's instances through the conductor.
"""

from __future__ import annotations

import logging
import uuid as uuidlib

import pytest

from conductor.manager import ConductorManager
from conductor.rpcapi import ConductorAPI
from flotilla import exception, rpc
from flotilla.context import RequestContext
from flotilla.rpc import envelope, signing
from tests.fixtures.waiting import wait_until

KEY = "deployment-key"


@pytest.fixture
def cloud(db, db_conf):
    db_conf.set_override("transport_url", "memory://")
    db_conf.set_override("signing_key", KEY, group="rpc")
    control = rpc.get_transport(db_conf)
    server = rpc.RPCServer(control, "conductor", None, [ConductorManager(db_conf, control)])
    server.start()
    agents = {}

    def agent(host: str) -> ConductorAPI:
        if host not in agents:
            db_conf.set_override("signing_key", None, group="rpc")
            db_conf.set_override("host_key", signing.host_key(KEY, host), group="rpc")
            db_conf.set_override("host", host)
            agents[host] = rpc.get_transport(db_conf)
            db_conf.set_override("signing_key", KEY, group="rpc")
            db_conf.clear_override("host_key", group="rpc")
            db_conf.clear_override("host")
        return ConductorAPI(agents[host])

    yield agent, control
    server.stop()
    server.wait(5)
    for transport in (control, *agents.values()):
        transport.cleanup()


def _instance(db, host: str) -> str:
    uuid = str(uuidlib.uuid4())
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1",
                        "flavor": {"memory_mb": 64, "vcpus": 1}, "vm_state": "active",
                        "host": host})
    db.action_start(uuid, "stop", "req-1")
    return uuid


def _ctxt() -> RequestContext:
    return RequestContext(request_id="req-1")


def test_an_agent_acts_on_its_own_instances(db, cloud):
    agent, _ = cloud
    mine = _instance(db, "h1")
    h1 = agent("h1")
    assert h1.instance_get(_ctxt(), mine)["host"] == "h1"
    h1.instance_update(_ctxt(), mine, {"power_state": 4}, {"vm_state": "active"})
    h1.action_event_start(_ctxt(), mine, "stop", "compute_stop_instance", "h1")
    h1.instance_fault_create(_ctxt(), mine, 500, "m", host="h9")
    assert db.instance_fault_get_all(mine)[0].host == "h1"   # not the claimed h9
    assert [i["uuid"] for i in h1.instance_get_all_by_host(_ctxt(), "h1")] == [mine]
    h1.service_heartbeat(_ctxt(), "h1", "flotilla-compute", "compute")
    h1.compute_node_update(_ctxt(), "h1", {"vcpus": 2})


def test_an_agent_finishes_deleting_its_own_instance(db, cloud):
    """The agent retires the row (vm_state deleted, hidden from normal
    reads), then destroys it: both steps are its own to take."""
    agent, _ = cloud
    mine, theirs = _instance(db, "h1"), _instance(db, "h2")
    h1 = agent("h1")
    for uuid in (mine, theirs):
        db.instance_update(uuid, {"vm_state": "deleted", "task_state": None})
    h1.instance_destroy(_ctxt(), mine, {"vm_state": "deleted"})
    assert db.instance_get(mine, read_deleted=True).deleted
    with pytest.raises(exception.Forbidden):
        h1.instance_destroy(_ctxt(), theirs, {"vm_state": "deleted"})


@pytest.mark.parametrize("call", [
    lambda api, uuid: api.instance_get(_ctxt(), uuid),
    lambda api, uuid: api.instance_update(_ctxt(), uuid, {"vm_state": "error"}, {}),
    lambda api, uuid: api.instance_destroy(_ctxt(), uuid, {}),
    lambda api, uuid: api.instance_fault_create(_ctxt(), uuid, 500, "x"),
    lambda api, uuid: api.action_event_start(_ctxt(), uuid, "stop", "e", "h1"),
    lambda api, uuid: api.action_finish(_ctxt(), uuid, "Success"),
    lambda api, uuid: api.instance_get_all_by_host(_ctxt(), "h2"),
    lambda api, uuid: api.service_heartbeat(_ctxt(), "h2", "flotilla-compute", "compute"),
    lambda api, uuid: api.compute_node_update(_ctxt(), "h2", {"vcpus": 1}),
    lambda api, uuid: api.delete_instance(_ctxt(), uuid),
], ids=["get", "update", "destroy", "fault", "event", "finish", "list", "heartbeat",
        "node", "delete"])
def test_an_agent_cannot_touch_another_hosts_instances(db, cloud, call, caplog):
    agent, _ = cloud
    theirs = _instance(db, "h2")
    caplog.set_level(logging.WARNING)
    try:
        call(agent("h1"), theirs)
    except exception.Forbidden as exc:
        assert "compute host h1 may not" in str(exc)
    else:
        # A cast has nobody to answer: the conductor refuses it and logs why.
        wait_until(lambda: any("compute host h1 may not" in r.getMessage()
                               or "compute host h1 may not" in str(r.exc_info)
                               for r in caplog.records), 5, "the refusal")
    inst = db.instance_get(theirs)
    assert (inst.vm_state, inst.host, inst.deleted) == ("active", "h2", False)
    assert db.instance_fault_get_all(theirs) == []


def test_an_agent_terminates_its_own_instance(db, cloud):
    """The agent's terminate: vm_state deleted (which retires the row), then
    instance_destroy of that retired row; another host still may not."""
    agent, _ = cloud
    mine = _instance(db, "h1")
    agent("h1").instance_update(_ctxt(), mine, {"vm_state": "deleted", "task_state": None},
                                {})
    with pytest.raises(exception.Forbidden):
        agent("h2").instance_destroy(_ctxt(), mine, {"vm_state": "deleted"})
    assert agent("h1").instance_destroy(_ctxt(), mine, {"vm_state": "deleted"})["deleted"]


def test_an_agent_cannot_move_an_instance_to_another_host(db, cloud):
    agent, _ = cloud
    mine = _instance(db, "h1")
    with pytest.raises(exception.Forbidden, match="to host h2"):
        agent("h1").instance_update(_ctxt(), mine, {"host": "h2"}, {})
    assert db.instance_get(mine).host == "h1"


def test_both_hosts_of_a_migration_in_progress_may_act(db, cloud):
    from flotilla.db.models import Migration
    agent, _ = cloud
    uuid = _instance(db, "h1")
    with db.session_scope() as session:
        session.add(Migration(uuid=str(uuidlib.uuid4()), instance_uuid=uuid,
                              source_host="h1", dest_host="h2", status="running",
                              migration_type="live-migration"))
    assert agent("h2").instance_get(_ctxt(), uuid)["uuid"] == uuid
    with pytest.raises(exception.Forbidden):
        agent("h3").instance_get(_ctxt(), uuid)


def test_an_agent_cannot_sign_as_another_host(db, cloud):
    """h1 holds only its own key: a body naming h2 as signer does not verify."""
    _, control = cloud
    theirs = _instance(db, "h2")
    body = envelope.build_request(_ctxt(), "instance_get", {"instance_uuid": theirs},
                                  "1.0", reply_to=None, ttl=30)
    forged = envelope.encode(body, signing.host_key(KEY, "h1"), signer="h2")
    with pytest.raises(exception.InvalidMessage, match="bad signature"):
        envelope.decode_request(forged, key=control.options.keyring.checking,
                                max_size=1 << 20)
    genuine = envelope.encode(body, signing.host_key(KEY, "h2"), signer="h2")
    request = envelope.decode_request(genuine, key=control.options.keyring.checking,
                                      max_size=1 << 20)
    assert request.context.agent_host == "h2"


def test_a_signer_claimed_in_the_context_is_ignored(db, cloud):
    _, control = cloud
    body = envelope.build_request(_ctxt(), "instance_get", {}, "1.0", reply_to=None, ttl=30)
    body["context"]["agent_host"] = "h1"
    request = envelope.decode_request(envelope.encode(body, KEY),
                                      key=control.options.keyring.checking, max_size=1 << 20)
    assert request.context.agent_host is None


def test_agents_hear_only_what_is_signed_with_their_key():
    keyring = signing.Keyring(KEY)
    h1 = signing.Keyring(agent_key=signing.host_key(KEY, "h1"), host="h1")
    key, signer = keyring.sending("compute", "h1")
    assert (key, signer) == (signing.host_key(KEY, "h1"), None)
    assert h1.checking(None) == key
    # What the control plane sends to h2 does not verify on h1.
    assert keyring.sending("compute", "h2")[0] != h1.checking(None)
    # Shared queues and other topics use the deployment key.
    assert keyring.sending("conductor", None) == (KEY, None)
    assert keyring.sending("scheduler", None) == (KEY, None)
    # An agent's key tells nothing of the deployment key or another host's.
    assert KEY not in h1.agent_key and signing.host_key(KEY, "h2") != h1.agent_key


def test_a_deployment_keyed_service_on_an_agent_queue_uses_that_hosts_key():
    """flotilla-all, or an agent given the deployment key: what the control
    plane signs for compute.h1 verifies there, and the reply verifies at
    the caller."""
    keyring = signing.Keyring(KEY)
    sent_key, _ = keyring.sending("compute", "h1")
    assert keyring.checking(None, "compute.h1") == sent_key
    assert keyring.replying(None, "compute.h1") == (sent_key, None)
    assert keyring.checking_reply("compute", "h1") == sent_key
    # The shared topic, fanout queues and other services keep the deployment key.
    for queue in ("compute", "conductor", "flotilla_fanout_compute.h1.x", "compute.", None):
        assert keyring.checking(None, queue) == KEY, queue
    # A named signer is still checked with its own host key.
    assert keyring.checking("h2", "compute.h1") == signing.host_key(KEY, "h2")

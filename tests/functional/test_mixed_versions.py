"""A rolling upgrade: compute agents of the previous release beside a newer
conductor and scheduler.

The old agent is emulated faithfully where it matters: it serves only the
compute RPC API 1.0 (its dispatcher refuses anything newer) and its
conductor client is capped at 1.1, the conductor API of its release. The
conductor is told ``[upgrade_levels] compute = auto`` and must work out 1.0
from the agent's heartbeat. Builds, stops and deletes still work end to end.
"""

from __future__ import annotations

import pytest

from api.state import APIState
from compute.manager import ComputeManager
from compute.virt.fake import FakeDriver
from conductor.rpcapi import ConductorAPI
from flotilla import binaries
from flotilla import states as st
from flotilla.db import api as db
from tests.fixtures.scheduling import SchedulingCloud, events

HOSTS = ["old1", "old2"]


class PreviousReleaseComputeManager(ComputeManager):
    """The agent of the release before conductor 1.2 / compute 1.1."""

    RPC_API_VERSION = "1.0"


@pytest.fixture
def cloud(conf):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("compute", "auto", group="upgrade_levels")
    conf.set_override("flow_poll_interval", 1, group="conductor")
    c = SchedulingCloud(conf, [], lambda host: FakeDriver())
    for host in HOSTS:
        c.start_host(host, FakeDriver(),
                     conductor=ConductorAPI(c.transport, version_cap="1.1"),
                     manager_class=PreviousReleaseComputeManager)
    yield c
    c.stop()


def test_old_agents_report_their_version(cloud):
    # A 1.1 conductor client cannot send rpc_version: the heartbeat says nothing,
    # which "auto" reads as the last release that did not report (compute 1.0).
    versions = {s.host: s.rpc_version for s in db.service_get_all(binary=binaries.COMPUTE)}
    assert versions == {"old1": None, "old2": None}


def test_build_stop_and_delete_on_an_agent_of_the_previous_release(cloud):
    ctxt, [uuid] = cloud.boot_servers(1)
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE and inst["host"] in HOSTS
    assert uuid in cloud.drivers[inst["host"]].guests
    # The old agent sends no build report: the conductor's poll ends the flow.
    cloud.wait_for(uuid, lambda i: db.flow_record_get(
        db.FlowRecordRef.action(uuid, ctxt.request_id)).flow_status == "completed")
    assert db.action_get(uuid, ctxt.request_id).finish_time is not None

    # The API's compute client, made as the API makes it, works out the cap.
    api_compute = APIState(cloud.conf, cloud.transport).compute
    assert api_compute.client.current_cap == "1.0"
    stop_ctxt = cloud.ctxt
    db.action_start(uuid, "stop", stop_ctxt.request_id)
    db.instance_update(uuid, {"task_state": st.POWERING_OFF})
    api_compute.stop_instance(stop_ctxt, inst["host"], uuid)
    inst = cloud.wait_for(uuid, lambda i: i["vm_state"] == st.STOPPED
                          and i["task_state"] is None)
    assert ("stop", "compute_stop_instance", "Success", inst["host"]) in events(uuid)

    cloud.conductor.delete_instance(cloud.ctxt, uuid)
    gone = cloud.wait_for(uuid, lambda i: i["deleted"], read_deleted=True)
    assert gone["vm_state"] == st.DELETED
    assert uuid not in cloud.drivers[inst["host"]].guests

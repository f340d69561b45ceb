"""``os-extend`` of an in-use volume at the API (microversion 3.42): when it
is let through to the conductor's flow, and every refusal with its reason
(api/volume/online_extend.py)."""

from __future__ import annotations

import types

import pytest

from api.volume import online_extend
from flotilla import rpc
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from tests.fixtures.recording_endpoint import recording_endpoint
from tests.functional.api.fixtures import api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import V, _available, _extend, _server
from volume.manager import VolumeManager


@pytest.fixture
def cloud(api_cloud):  # noqa: F811
    api_cloud.volume = recording_endpoint(VolumeManager)
    server = rpc.RPCServer(api_cloud.transport, "volume", "vol1", [api_cloud.volume])
    server.start()
    api_cloud._servers.append(server)
    db.service_heartbeat("vol1", "flotilla-volume", "volume")
    # host1's agent serves 1.11 and its driver can grow a disk under a guest.
    db.service_heartbeat("host1", "flotilla-compute", "compute", rpc_version="1.11")
    db.compute_node_update("host1", {"capabilities": ["supports_attach",
                                                      "supports_extend_volume"]})
    return api_cloud


def _in_use(cloud) -> tuple[str, str, str]:
    """(volume id, server uuid, attachment uuid) of a volume attached to a
    server on host1."""
    vid = _available(cloud)
    uuid = _server(cloud)
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    att = vdb.attachment_create(vid, uuid, "host1")
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb"})
    return vid, uuid, att.uuid


def test_an_in_use_volume_is_extended_online_at_3_42(cloud):
    vid, uuid, att = _in_use(cloud)
    r = _extend(cloud, vid, 3)
    assert r.status_code == 202, r.text
    row = vdb.volume_get(vid)
    assert (row.status, row.size_gb, row.status_deadline is not None) == \
        (st.VOLUME_EXTENDING, 3, True)
    [cast] = cloud.conductor.wait_for("extend_volume")
    assert {k: cast[k] for k in ("instance_uuid", "volume_id", "attachment_id",
                                 "new_size_gb", "old_size_gb")} == \
        {"instance_uuid": uuid, "volume_id": vid, "attachment_id": att,
         "new_size_gb": 3, "old_size_gb": 1}
    # The server's action records it; the offline path is not taken.
    actions = cloud.request("GET", "/compute/v2.1/servers/%s/os-instance-actions" % uuid)
    assert "extend_volume" in [a["action"] for a in actions.json["instanceActions"]]
    assert [c for c in cloud.volume.calls if c[0] == "extend_volume"] == []
    # Extending already: 400.
    assert _extend(cloud, vid, 4).status_code == 400


def test_below_3_42_an_in_use_volume_must_be_available(cloud):
    vid, _uuid, _att = _in_use(cloud)
    r = _extend(cloud, vid, 2, version="3.41")
    assert r.status_code == 400 and "must be available" in r.text and "3.42" in r.text, \
        r.text
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE
    assert [c for c in cloud.conductor.calls if c[0] == "extend_volume"] == []


@pytest.mark.parametrize("setup, why", [
    (lambda: db.service_heartbeat("host1", "flotilla-compute", "compute",
                                  rpc_version="1.10"), "serves RPC 1.10"),
    (lambda: db.compute_node_update("host1", {"capabilities": ["supports_attach"]}),
     "cannot grow a disk"),
    (lambda: db.compute_node_update("host1", {"capabilities": None}),
     "cannot grow a disk"),
])
def test_a_host_that_cannot_extend_online_is_400_with_the_reason(cloud, setup, why):
    vid, _uuid, _att = _in_use(cloud)
    setup()
    r = _extend(cloud, vid, 2)
    assert r.status_code == 400 and why in r.text and "detach" in r.text, r.text
    row = vdb.volume_get(vid)
    assert (row.status, row.size_gb) == (st.VOLUME_IN_USE, 1)
    assert [c for c in cloud.conductor.calls if c[0] == "extend_volume"] == []


def test_a_server_in_a_task_is_409(cloud):
    vid, uuid, _att = _in_use(cloud)
    db.instance_update(uuid, {"task_state": st.MIGRATING})
    r = _extend(cloud, vid, 2)
    assert r.status_code == 409 and "task_state" in r.text, r.text
    db.instance_update(uuid, {"task_state": None, "vm_state": st.SUSPENDED})
    r = _extend(cloud, vid, 2)
    assert r.status_code == 409 and "suspended" in r.text, r.text
    # Paused by its user: the extend would resume a guest an I/O error paused.
    db.instance_update(uuid, {"vm_state": st.PAUSED})
    r = _extend(cloud, vid, 2)
    assert r.status_code == 409 and "paused" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE


def test_an_in_use_extend_counts_in_the_quota(cloud):
    vid, _uuid, _att = _in_use(cloud)
    cloud.request("PUT", V + "/os-quota-sets/p1", "admin",
                  json={"quota_set": {"gigabytes": 2}})
    r = _extend(cloud, vid, 3)
    assert r.status_code == 413 and "gigabytes" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE


def test_capped_rpc_apis_refuse_with_the_reason():
    def state(conductor=True, volume=True, compute=True):
        return types.SimpleNamespace(
            conductor=types.SimpleNamespace(can_extend_volume=lambda: conductor),
            volume=types.SimpleNamespace(can_extend_online=lambda: volume),
            compute=types.SimpleNamespace(can_extend_volume=lambda: compute))
    assert "conductors are capped below RPC 1.11" in \
        online_extend.host_can_extend(state(conductor=False), "host1")
    assert "volume services are capped below RPC 1.3" in \
        online_extend.host_can_extend(state(volume=False), "host1")
    assert "compute agents are capped below RPC 1.11" in \
        online_extend.host_can_extend(state(compute=False), "host1")


def test_a_conductor_that_cannot_be_reached_leaves_the_volume_in_use(cloud, monkeypatch):
    """The cast refused: the attached volume is in-use again with its old
    size and the reason (error_extending would leave it stuck: nothing
    resets that), the server's action ended in Error."""
    from flotilla import exception
    vid, uuid, _att = _in_use(cloud)

    def unreachable(*args, **kwargs):
        raise exception.MessagingUnavailable(reason="broker down")
    monkeypatch.setattr("conductor.rpcapi.ConductorAPI.extend_volume", unreachable)
    r = _extend(cloud, vid, 3)
    assert r.status_code == 202, r.text
    row = vdb.volume_get(vid)
    assert (row.status, row.size_gb) == (st.VOLUME_IN_USE, 1)
    assert "conductor could not be reached" in row.status_reason

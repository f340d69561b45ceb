"""Every volume status change is a compare-and-swap (issue 11), also on
the paths that end a volume after a failure: the API's failed casts, and a
server's delete that finds one of its volumes in a flow in flight."""

from __future__ import annotations

import time

import pytest

from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import V, _available, _create
from tests.functional.volume.test_volume_api import cloud as api_volume_cloud  # noqa: F401
from tests.functional.volume.test_volume_flows import (  # noqa: F401
    _attach,
    _detach,
    _volume,
    _wait_status,
    cloud,
)


def test_a_failed_create_cast_leaves_a_status_that_moved_meanwhile(api_volume_cloud,  # noqa: F811
                                                                  monkeypatch):
    def cast_lost(self, ctxt, host, volume_id, from_source=False, from_volume=False):
        # The reaper ended the create before the failure came back.
        vdb.volume_update(volume_id, {"status": st.VOLUME_ERROR,
                                      "status_reason": "creating timed out"},
                          expected_status=st.VOLUME_CREATING)
        raise exception.MessagingException(reason="broker gone")

    monkeypatch.setattr("volume.rpcapi.VolumeAPI.create_volume", cast_lost)
    r = _create(api_volume_cloud)
    assert r.status_code == 202, r.text
    row = vdb.volume_get(r.json["volume"]["id"])
    assert (row.status, row.status_reason) == (st.VOLUME_ERROR, "creating timed out")


def test_a_failed_create_cast_puts_a_creating_volume_in_error(api_volume_cloud,  # noqa: F811
                                                             monkeypatch):
    def cast_lost(self, ctxt, host, volume_id, from_source=False, from_volume=False):
        raise exception.MessagingException(reason="broker gone")

    monkeypatch.setattr("volume.rpcapi.VolumeAPI.create_volume", cast_lost)
    r = _create(api_volume_cloud)
    assert r.status_code == 202 and r.json["volume"]["status"] == st.VOLUME_ERROR, r.text
    assert "could not be reached" in vdb.volume_get(r.json["volume"]["id"]).status_reason


@pytest.mark.parametrize("meanwhile", ["removed", "reaped", "none"])
def test_a_failed_delete_cast_is_a_compare_and_swap_on_deleting(
        api_volume_cloud, monkeypatch, meanwhile):  # noqa: F811
    vid = _available(api_volume_cloud)

    def cast_lost(self, ctxt, host, volume_id):
        if meanwhile == "removed":
            vdb.volume_destroy(volume_id, expected_status=st.VOLUME_DELETING)
        elif meanwhile == "reaped":
            vdb.volume_update(volume_id, {"status": st.VOLUME_ERROR_DELETING,
                                          "status_reason": "deleting timed out"},
                              expected_status=st.VOLUME_DELETING)
        raise exception.MessagingException(reason="broker gone")

    monkeypatch.setattr("volume.rpcapi.VolumeAPI.delete_volume", cast_lost)
    r = api_volume_cloud.request("DELETE", V + "/volumes/" + vid)
    assert r.status_code == 202, r.text
    if meanwhile == "removed":
        with pytest.raises(vdb.VolumeNotFound):
            vdb.volume_get(vid)
        return
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_ERROR_DELETING
    assert row.status_reason == ("deleting timed out" if meanwhile == "reaped"
                                 else "the volume service could not be reached")


def _held_detach(cloud, host: str):  # noqa: F811
    """A server on ``host`` with a volume whose detach is in flight: the
    guest ignores the request (the compute host waits for it)."""
    inst = cloud.boot(host)
    vid = _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    cloud.drivers[host].hold_detach(inst["uuid"])
    _detach(cloud, inst["uuid"], vid)
    guest = cloud.drivers[host].guests[inst["uuid"]]
    deadline = time.monotonic() + 10
    while vid not in guest.pending_detach:
        assert time.monotonic() < deadline, "the detach never reached the guest"
        time.sleep(0.02)
    return inst["uuid"], vid


def test_a_release_leaves_a_volume_whose_detach_is_in_flight_to_that_flow(cloud, conf):  # noqa: F811
    conf.set_override("detach_timeout", 20, group="volume")
    uuid, vid = _held_detach(cloud, "host1")
    flow = cloud.conductor_service.manager.flows["volume"]
    # What a server's delete does once the guest is gone: this volume is
    # not its to end (the detach flow's next steps would unexport a volume
    # attached again meanwhile).
    assert flow.release_instance(cloud.ctxt, uuid) == 0
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_DETACHING and len(vdb.attachments_of_volume(vid)) == 1
    assert cloud.daemon.exported == {vid}
    # The guest lets go: the detach flow ends it, by its own compare-and-swap.
    cloud.drivers["host1"].hold_detach(uuid, False)
    row = _wait_status(vid, st.VOLUME_AVAILABLE)
    assert row.status_reason is None and vdb.attachments_of_volume(vid) == []
    assert cloud.daemon.exported == set()


def test_a_server_deleted_while_a_detach_of_its_volume_is_in_flight(cloud, conf):  # noqa: F811
    conf.set_override("detach_timeout", 2, group="volume")
    uuid, vid = _held_detach(cloud, "host2")
    # The delete waits for the host's detach (it holds the server); the
    # guest never lets go, so the detach fails; the guest is destroyed and
    # whichever of the delete's release and the detach flow comes last
    # frees the volume.
    cloud.conductor.delete_instance(cloud.ctxt, uuid)
    row = _wait_status(vid, st.VOLUME_AVAILABLE, timeout=30)
    assert row.status_reason is None
    deadline = time.monotonic() + 10
    while vdb.attachments_of_volume(vid) or cloud.daemon.exported:
        assert time.monotonic() < deadline, (vdb.attachments_of_volume(vid),
                                             cloud.daemon.exported)
        time.sleep(0.02)
    with pytest.raises(exception.InstanceNotFound):
        db.instance_get(uuid)

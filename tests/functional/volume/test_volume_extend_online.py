"""The online extend flow of an in-use volume (conductor/flows/volume_extend.py)
end to end in one process: conductor, two compute agents on the fake
driver and a volume service on in-memory stand-ins; and the agent resuming
a guest a volume's I/O error paused (compute/ops/volume_io.py). The real
parts run on the rig (tests/integration/virt/test_contract_rig.py,
tests/integration/e2e/test_volumes.py)."""

from __future__ import annotations

import time

import pytest

from compute.virt import events, power_state
from flotilla import binaries, exception, service
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from tests.fixtures.waiting import wait_until
from tests.functional.volume.test_volume_flows import (
    MemoryBackend,
    MemoryDaemon,
    _attach,
    _events,
    _volume,
    _wait_status,
)
from volume.manager import VolumeManager

GIB = 2 ** 30


class GrowingDaemon(MemoryDaemon):
    """MemoryDaemon that also serves a volume at a new size."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[str, int] = {}
        self.fail_grow = False

    def grow_export(self, volume_id: str, path: str, size_bytes: int,
                    writable: bool = True) -> dict:
        if self.fail_grow:
            raise RuntimeError("block_resize refused")
        self.sizes[volume_id] = size_bytes
        return self.export(volume_id, path, writable)


@pytest.fixture
def cloud(fake_cloud, conf):
    conf.set_override("detach_timeout", 1, group="volume")
    fake_cloud.backend, fake_cloud.daemon = MemoryBackend(), GrowingDaemon()
    svc = service.Service(conf, binaries.VOLUME, "volume",
                          VolumeManager(conf, host="vol1", backend=fake_cloud.backend,
                                        daemon=fake_cloud.daemon),
                          transport=fake_cloud.transport, per_host=True, host="vol1")
    svc.start()
    yield fake_cloud
    svc.stop(grace=5)


def _in_use(cloud):
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    att, _ctxt = _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    return inst, vid, vdb.attachment_get(att.uuid)


def _extend(cloud, inst, vid, att, new_size: int = 2):
    """What the API does for an in-use volume (api/volume/online_extend.py)."""
    ctxt = cloud.ctxt
    old = vdb.volume_extend_begin(vid, new_size, st.VOLUME_IN_USE,
                                  {"volumes": -1, "gigabytes": -1}, vdb.deadline(300))
    db.action_start(inst["uuid"], "extend_volume", ctxt.request_id, ctxt.user_id,
                    ctxt.project_id)
    cloud.conductor.extend_volume(ctxt, inst["uuid"], vid, att.uuid, new_size, old)
    return ctxt


def _failed_back_in_use(vid: str, timeout: float = 10):
    """The volume after a failed online extend: in-use again (still
    attached, usable) with the old size and the reason."""
    deadline = time.monotonic() + timeout
    while (row := vdb.volume_get(vid)).status != st.VOLUME_IN_USE or not row.status_reason:
        assert time.monotonic() < deadline, "volume %s is %s" % (vid, row.status)
        time.sleep(0.02)
    return row


def _finished(inst, ctxt, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while (action := db.action_get(inst["uuid"], ctxt.request_id)).finish_time is None:
        assert time.monotonic() < deadline, "the extend action never finished"
        time.sleep(0.02)
    return action


def test_an_in_use_volume_grows_and_the_guest_sees_it(cloud):
    inst, vid, att = _in_use(cloud)
    ctxt = _extend(cloud, inst, vid, att, 3)
    row = _wait_status(vid, st.VOLUME_IN_USE)
    assert (row.size_gb, row.status_reason) == (3, None)
    assert cloud.backend.volumes[vid] == 3
    assert cloud.daemon.sizes[vid] == 3 * GIB and vid in cloud.daemon.exported
    guest = cloud.drivers["host1"].guests[inst["uuid"]]
    assert guest.volume_sizes[vid] == 3 * GIB
    assert guest.power_state == power_state.RUNNING
    assert _finished(inst, ctxt).message != "Error"
    assert _events(inst["uuid"], ctxt.request_id) == [
        ("conductor_extending", "Success"), ("conductor_grow_export", "Success"),
        ("conductor_extend_on_host", "Success"), ("conductor_in_use", "Success")]
    # Still attached and usable: the server never left ACTIVE.
    assert vdb.attachment_get(att.uuid).status == "attached"
    assert db.instance_get(inst["uuid"]).vm_state == st.ACTIVE


def test_a_failed_grow_puts_the_old_size_back_with_the_reason(cloud):
    inst, vid, att = _in_use(cloud)
    cloud.daemon.fail_grow = True
    ctxt = _extend(cloud, inst, vid, att, 2)
    row = _failed_back_in_use(vid)
    assert row.size_gb == 1
    assert "grow_export" in row.status_reason and "block_resize refused" in \
        row.status_reason, row.status_reason
    assert _finished(inst, ctxt).message == "Error"
    assert ("conductor_grow_export", "Error") in _events(inst["uuid"], ctxt.request_id)
    assert cloud.drivers["host1"].guests[inst["uuid"]].volume_sizes.get(vid) is None
    assert vdb.attachment_get(att.uuid).status == "attached"


def test_a_failed_extend_on_the_host_puts_the_old_size_back(cloud):
    inst, vid, att = _in_use(cloud)
    cloud.drivers["host1"].inject_failure(
        "extend_volume", exception.VolumeAttachFailed(
            volume_id=vid, instance_uuid=inst["uuid"], reason="blockResize failed"))
    ctxt = _extend(cloud, inst, vid, att, 2)
    row = _failed_back_in_use(vid)
    assert row.size_gb == 1 and "extend_on_host" in row.status_reason, row.status_reason
    assert _finished(inst, ctxt).message == "Error"
    events_seen = _events(inst["uuid"], ctxt.request_id)
    assert ("conductor_extend_on_host", "Error") in events_seen
    assert ("conductor_in_use", "Success") not in events_seen


def test_a_failed_check_ends_the_extend_without_touching_anything(cloud):
    inst, vid, att = _in_use(cloud)
    # The server moved to another host since the attachment was recorded.
    db.instance_update(inst["uuid"], {"host": "host2"})
    ctxt = _extend(cloud, inst, vid, att, 2)
    row = _failed_back_in_use(vid)
    assert row.size_gb == 1 and "extending" in row.status_reason, row.status_reason
    assert cloud.backend.volumes[vid] == 1 and vid not in cloud.daemon.sizes
    assert _finished(inst, ctxt).message == "Error"


def test_an_extend_resumes_a_guest_paused_by_the_volumes_io_error(cloud):
    inst, vid, att = _in_use(cloud)
    driver = cloud.drivers["host1"]
    agent = cloud.compute_services["host1"].manager
    agent.volumes.io_errors.watch = lambda *a: False     # the extend alone here
    driver.volume_outage(vid)
    assert driver.get_info(inst).power_state == power_state.PAUSED
    driver.volume_back(vid)
    _extend(cloud, inst, vid, att, 2)
    _wait_status(vid, st.VOLUME_IN_USE)
    assert driver.get_info(inst).power_state == power_state.RUNNING


def test_the_agent_resumes_a_guest_paused_by_a_volumes_io_error(cloud):
    inst, vid, _att = _in_use(cloud)
    driver = cloud.drivers["host1"]
    driver.volume_outage(vid)        # a request of the guest failed: paused
    # While the export is away the agent keeps it paused, and tries again.
    wait_until(lambda: driver.calls.count(("resume_after_io_error", inst["uuid"])) >= 2,
               timeout=15, what="the agent trying twice")
    assert driver.get_info(inst).power_state == power_state.PAUSED
    driver.volume_back(vid)
    cloud.wait_for(inst["uuid"], lambda i: i["power_state"] == power_state.RUNNING)
    assert driver.get_info(inst).power_state == power_state.RUNNING
    assert db.instance_get(inst["uuid"]).vm_state == st.ACTIVE


def test_the_agent_never_resumes_a_guest_its_user_paused(cloud):
    inst, vid, _att = _in_use(cloud)
    driver = cloud.drivers["host1"]
    agent = cloud.compute_services["host1"].manager
    resumer = agent.volumes.io_errors
    # The user paused it (the server is PAUSED), then an I/O error is reported.
    driver.pause(inst)
    db.instance_update(inst["uuid"], {"vm_state": st.PAUSED})
    driver._emit(events.VolumeIOErrorEvent(inst["uuid"], vid))
    assert resumer.attempt(inst["uuid"]) is False
    # The server ACTIVE but the guest paused for another reason: still not.
    db.instance_update(inst["uuid"], {"vm_state": st.ACTIVE})
    assert resumer.attempt(inst["uuid"]) is False
    assert driver.get_info(inst).power_state == power_state.PAUSED


def test_an_agent_that_starts_resumes_a_guest_an_io_error_paused_meanwhile(cloud):
    inst, vid, _att = _in_use(cloud)
    driver = cloud.drivers["host1"]
    cloud.stop_host("host1")
    driver.volume_outage(vid)            # its event is lost: no agent listens
    driver.volume_back(vid)
    assert driver.get_info(inst).power_state == power_state.PAUSED
    cloud.start_host("host1", driver)
    cloud.wait_for(inst["uuid"], lambda i: driver.get_info(inst).power_state
                   == power_state.RUNNING)
    assert db.instance_get(inst["uuid"]).vm_state == st.ACTIVE


def test_a_volume_whose_extend_failed_stays_usable(cloud):
    """Nothing resets an error_extending volume: a failed online extend
    leaves it in-use, so its server's delete releases it (and it could be
    detached or extended again)."""
    inst, vid, att = _in_use(cloud)
    cloud.daemon.fail_grow = True
    _extend(cloud, inst, vid, att, 2)
    _failed_back_in_use(vid)
    db.instance_update(inst["uuid"], {"task_state": st.DELETING})
    cloud.conductor.delete_instance(cloud.ctxt, inst["uuid"])
    row = _wait_status(vid, st.VOLUME_AVAILABLE)
    assert vdb.attachments_of_volume(vid) == [] and cloud.daemon.exported == set()
    assert row.size_gb == 1


def test_a_server_deleted_during_the_extend_has_its_volume_released_by_the_flow(
        cloud, monkeypatch):
    """Its delete left the extending volume to the flow: the flow releases
    it when it ends."""
    inst, vid, att = _in_use(cloud)
    real_grow = cloud.daemon.grow_export

    def grow_while_the_server_goes(volume_id, path, size_bytes, writable=True):
        db.instance_update(inst["uuid"], {"task_state": st.DELETING})
        cloud.conductor.delete_instance(cloud.ctxt, inst["uuid"])
        deadline = time.monotonic() + 10
        while any(i.uuid == inst["uuid"] for i in db.instance_get_all()):
            assert time.monotonic() < deadline, "the server was not deleted"
            time.sleep(0.02)
        # Its delete left the extending volume (and its attachment) alone.
        assert vdb.attachments_of_volume(volume_id)
        return real_grow(volume_id, path, size_bytes, writable)

    monkeypatch.setattr(cloud.daemon, "grow_export", grow_while_the_server_goes)
    _extend(cloud, inst, vid, att, 2)
    row = _wait_status(vid, st.VOLUME_AVAILABLE)
    assert vdb.attachments_of_volume(vid) == [] and cloud.daemon.exported == set()
    assert row.status == st.VOLUME_AVAILABLE

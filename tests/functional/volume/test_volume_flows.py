"""The conductor's volume flows end to end in one process: conductor,
two compute agents on the fake driver and a volume service whose backend
and storage daemon are in-memory stand-ins (the real ones are exercised on
the rig, tests/integration/e2e/test_volumes.py)."""

from __future__ import annotations

import time

import pytest

from flotilla import binaries, service
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from volume.backend import VolumeBackend
from volume.manager import VolumeManager


class MemoryBackend(VolumeBackend):
    pool = "memory"

    def __init__(self) -> None:
        self.volumes: dict[str, int] = {}

    def start(self) -> None:
        pass

    def create(self, volume_id: str, size_gb: int) -> str:
        self.volumes[volume_id] = size_gb
        return "/memory/" + volume_id

    def delete(self, volume_id: str) -> None:
        self.volumes.pop(volume_id, None)

    def extend(self, volume_id: str, size_gb: int) -> None:
        if volume_id not in self.volumes:
            raise FileNotFoundError(volume_id)
        self.volumes[volume_id] = max(size_gb, self.volumes[volume_id])

    def path(self, volume_id: str) -> str | None:
        return "/memory/" + volume_id if volume_id in self.volumes else None

    def free_bytes(self) -> int:
        return 1 << 40


class MemoryDaemon:
    def __init__(self) -> None:
        self.exported: set[str] = set()
        self.read_only: set[str] = set()     # exported with writable=False
        self.fail_export = False
        self.dead = False
        self.on_restart = None

    def ensure_running(self, timeout: float = 15, wait: bool = True) -> bool:
        """True when it was dead and started again (with no exports, then
        ``on_restart`` ran), as StorageDaemon's."""
        started, self.dead = self.dead, False
        if started and self.on_restart is not None:
            self.on_restart()
        return started

    def remove_orphans(self, keep: set[str]) -> list[str]:
        removed = sorted(self.exported - keep)
        self.exported -= set(removed)
        return removed

    def stop_if_idle(self) -> bool:
        return not self.exported

    def export(self, volume_id: str, path: str, writable: bool = True) -> dict:
        if self.fail_export:
            raise RuntimeError("export refused")
        if volume_id not in self.exported and not writable:
            self.read_only.add(volume_id)    # kept as added, as the daemon's
        self.exported.add(volume_id)
        return {"volume_id": volume_id, "export": volume_id, "host": "127.0.0.1",
                "port": 10809}

    def unexport(self, volume_id: str) -> None:
        self.exported.discard(volume_id)
        self.read_only.discard(volume_id)


def start_volume_service(conf, cloud) -> service.Service:
    """A volume service "vol1" on in-memory stand-ins (``cloud.backend``,
    ``cloud.daemon``) on the cloud's transport; stop it when done."""
    cloud.backend, cloud.daemon = MemoryBackend(), MemoryDaemon()
    svc = service.Service(conf, binaries.VOLUME, "volume",
                          VolumeManager(conf, host="vol1", backend=cloud.backend,
                                        daemon=cloud.daemon),
                          transport=cloud.transport, per_host=True, host="vol1")
    svc.start()
    return svc


@pytest.fixture
def cloud(fake_cloud, conf):
    conf.set_override("detach_timeout", 1, group="volume")
    svc = start_volume_service(conf, fake_cloud)
    yield fake_cloud
    svc.stop(grace=5)


def _wait_status(volume_id: str, status: str, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        row = vdb.volume_get(volume_id)
        if row.status == status:
            return row
        assert time.monotonic() < deadline, "volume %s is %s, not %s (%s)" % (
            volume_id, row.status, status, row.status_reason)
        time.sleep(0.02)


def _volume(cloud) -> str:
    from volume.rpcapi import VolumeAPI
    row = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_CREATING, "host": "vol1",
                             "project_id": "p1"}, {"volumes": -1, "gigabytes": -1})
    VolumeAPI(cloud.transport).create_volume(cloud.ctxt, "vol1", row.id)
    _wait_status(row.id, st.VOLUME_AVAILABLE)
    return row.id


def _attach(cloud, uuid: str, volume_id: str, device: str | None = None):
    """As the API does: reserved, an attachment (with the ``device`` the
    agent reserved), the action, the cast."""
    ctxt = cloud.ctxt
    vdb.volume_update(volume_id, {"status": st.VOLUME_RESERVED},
                      expected_status=st.VOLUME_AVAILABLE)
    att = vdb.attachment_create(volume_id, uuid, db.instance_get(uuid).host)
    if device:
        vdb.attachment_update(att.uuid, {"device": device})
    db.action_start(uuid, "attach_volume", ctxt.request_id, ctxt.user_id, ctxt.project_id)
    cloud.conductor.attach_volume(ctxt, uuid, volume_id, att.uuid)
    return att, ctxt


def _detach(cloud, uuid: str, volume_id: str):
    ctxt = cloud.ctxt
    att = [a for a in vdb.attachments_of_instance(uuid) if a.volume_id == volume_id][0]
    vdb.volume_update(volume_id, {"status": st.VOLUME_DETACHING},
                      expected_status=(st.VOLUME_IN_USE, st.VOLUME_ERROR))
    db.action_start(uuid, "detach_volume", ctxt.request_id, ctxt.user_id, ctxt.project_id)
    cloud.conductor.detach_volume(ctxt, uuid, volume_id, att.uuid)
    return ctxt


def _events(uuid: str, request_id: str) -> list[tuple[str, str]]:
    action = db.action_get(uuid, request_id)
    return [(e.event, e.result) for e in db.action_events_get(action.id)]


def test_attach_then_detach(cloud):
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    assert cloud.backend.volumes == {vid: 1}
    att, ctxt = _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    row = vdb.attachment_get(att.uuid)
    assert (row.status, row.device, row.connection_info["export"]) == ("attached", "vdb", vid)
    assert cloud.drivers["host1"].get_volume_devices(inst) == {vid: "vdb"}
    assert cloud.daemon.exported == {vid}
    assert [e for e, _ in _events(inst["uuid"], ctxt.request_id)] == [
        "conductor_reserve", "conductor_export", "conductor_attach_on_host",
        "conductor_in_use"]

    ctxt = _detach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_AVAILABLE)
    assert vdb.attachments_of_volume(vid) == []
    assert cloud.drivers["host1"].get_volume_devices(inst) == {}
    assert cloud.daemon.exported == set()
    deadline = time.monotonic() + 10
    while db.action_get(inst["uuid"], ctxt.request_id).finish_time is None:
        assert time.monotonic() < deadline, "the detach action never finished"
        time.sleep(0.02)
    assert [e for e, _ in _events(inst["uuid"], ctxt.request_id)] == [
        "conductor_detach_on_host", "conductor_unexport", "conductor_available"]


def test_reserved_devices_are_the_ones_the_volumes_take(cloud):
    from compute.rpcapi import ComputeAPI
    compute = ComputeAPI(cloud.transport)
    inst = cloud.boot("host1")
    first, second, third = _volume(cloud), _volume(cloud), _volume(cloud)
    # Two attaches on their way: each gets its own name, asked again the same.
    assert compute.reserve_volume_device(cloud.ctxt, "host1", inst["uuid"], first) == "vdb"
    assert compute.reserve_volume_device(cloud.ctxt, "host1", inst["uuid"], second) == "vdc"
    assert compute.reserve_volume_device(cloud.ctxt, "host1", inst["uuid"], first) == "vdb"
    # The second attaches first and still takes vdc; then the first takes vdb.
    for vid, device in ((second, "vdc"), (first, "vdb")):
        att, _ctxt = _attach(cloud, inst["uuid"], vid, device)
        _wait_status(vid, st.VOLUME_IN_USE)
        assert vdb.attachment_get(att.uuid).device == device
    # An attached volume is answered with its device; a name taken since it
    # was reserved (here: by a disk plugged behind the agent's back) gives way.
    assert compute.reserve_volume_device(cloud.ctxt, "host1", inst["uuid"], second) == "vdc"
    assert compute.reserve_volume_device(cloud.ctxt, "host1", inst["uuid"], third) == "vdd"
    cloud.drivers["host1"].attach_volume(inst, {"volume_id": "stray", "export": "stray",
                                                "host": "127.0.0.1", "port": 1}, "vdd")
    att, _ctxt = _attach(cloud, inst["uuid"], third, "vdd")
    _wait_status(third, st.VOLUME_IN_USE)
    assert vdb.attachment_get(att.uuid).device == "vde"


def test_a_failed_export_reverts_the_reservation(cloud):
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    cloud.daemon.fail_export = True
    att, ctxt = _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_AVAILABLE)
    deadline = time.monotonic() + 10
    while vdb.attachments_of_volume(vid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ("conductor_export", "Error") in _events(inst["uuid"], ctxt.request_id)
    assert cloud.drivers["host1"].get_volume_devices(inst) == {}


def test_a_guest_that_never_lets_go_leaves_the_volume_in_error_still_attached(cloud):
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    cloud.drivers["host1"].hold_detach(inst["uuid"])
    _detach(cloud, inst["uuid"], vid)
    row = _wait_status(vid, st.VOLUME_ERROR)
    assert "did not release vdb" in row.status_reason
    assert cloud.daemon.exported == {vid}
    assert len(vdb.attachments_of_volume(vid)) == 1
    # The guest lets go now: asking again (from error) detaches.
    cloud.drivers["host1"].hold_detach(inst["uuid"], False)
    _detach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_AVAILABLE)
    assert cloud.daemon.exported == set()


def test_server_delete_releases_its_volumes(cloud):
    inst = cloud.boot("host2")
    vid = _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    cloud.conductor.delete_instance(cloud.ctxt, inst["uuid"])
    _wait_status(vid, st.VOLUME_AVAILABLE)
    assert vdb.attachments_of_volume(vid) == [] and cloud.daemon.exported == set()


def test_volume_delete_and_restore_of_exports(cloud, conf):
    from volume.rpcapi import VolumeAPI
    inst = cloud.boot("host1")
    vid, other = _volume(cloud), _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    # A storage daemon that lost its exports: the restart restores them.
    cloud.daemon.exported.clear()
    manager = VolumeManager(conf, host="vol1", backend=cloud.backend, daemon=cloud.daemon)
    assert manager.restore_exports() == [vid]
    assert cloud.daemon.exported == {vid}
    vdb.volume_update(other, {"status": st.VOLUME_DELETING},
                      expected_status=st.VOLUME_AVAILABLE)
    VolumeAPI(cloud.transport).delete_volume(cloud.ctxt, "vol1", other)
    deadline = time.monotonic() + 10
    while other in cloud.backend.volumes:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(vdb.VolumeNotFound):
        _wait_status(other, "gone", timeout=0)


def test_every_transitional_status_has_a_timeout_end():
    assert set(st.VOLUME_ON_TIMEOUT) == set(st.VOLUME_TRANSITIONAL)


@pytest.mark.parametrize("status, ended", sorted(st.VOLUME_ON_TIMEOUT.items()))
def test_reaper_ends_transitional_statuses(cloud, status, ended):
    vid = _volume(cloud)
    flow = cloud.conductor_service.manager.flows["volume"]
    # Within its deadline the status stays.
    vdb.volume_update(vid, {"status": status, "status_deadline": vdb.deadline(60)})
    assert flow.reap() == 0 and vdb.volume_get(vid).status == status
    vdb.volume_update(vid, {"status_deadline": vdb.deadline(-5)})
    assert flow.reap() == 1
    row = vdb.volume_get(vid)
    assert row.status == ended and "%s timed out" % status in row.status_reason
    assert row.status_deadline is None
    assert flow.reap() == 0


def test_a_local_delete_releases_the_volumes_too(cloud):
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    # The host's agent is gone: the conductor deletes the server itself.
    cloud.stop_host("host1")
    flow = cloud.conductor_service.manager.flows["delete"]
    row = db.instance_get(inst["uuid"])
    assert flow.delete_locally(cloud.ctxt, row.uuid, row.vm_state, row.task_state)
    _wait_status(vid, st.VOLUME_AVAILABLE)
    assert vdb.attachments_of_volume(vid) == [] and cloud.daemon.exported == set()


def test_extend_grows_an_available_volume_and_a_failure_puts_the_size_back(cloud):
    from volume.rpcapi import VolumeAPI
    vid = _volume(cloud)
    assert vdb.volume_extend_begin(vid, 3, st.VOLUME_AVAILABLE,
                                   {"volumes": -1, "gigabytes": -1}, vdb.deadline(60)) == 1
    assert (vdb.volume_get(vid).status, vdb.volume_get(vid).size_gb) == \
        (st.VOLUME_EXTENDING, 3)
    VolumeAPI(cloud.transport).extend_volume(cloud.ctxt, "vol1", vid, 3, 1)
    row = _wait_status(vid, st.VOLUME_AVAILABLE)
    assert (row.size_gb, cloud.backend.volumes[vid]) == (3, 3)
    # The backend lost the file: error_extending, the old size back.
    vdb.volume_extend_begin(vid, 5, st.VOLUME_AVAILABLE, {"volumes": -1, "gigabytes": -1},
                            vdb.deadline(60))
    del cloud.backend.volumes[vid]
    VolumeAPI(cloud.transport).extend_volume(cloud.ctxt, "vol1", vid, 5, 3)
    row = _wait_status(vid, st.VOLUME_ERROR_EXTENDING)
    assert row.size_gb == 3 and "FileNotFoundError" in row.status_reason
    # Ended once: a second end finds it no longer extending and moves nothing.
    assert vdb.volume_extend_failed(vid, 1, "late") is False
    assert (vdb.volume_get(vid).size_gb, vdb.volume_get(vid).status_reason) == \
        (3, row.status_reason)


def test_extend_is_a_compare_and_swap_within_the_quota(cloud):
    vid = _volume(cloud)
    limits = {"volumes": -1, "gigabytes": 2}
    with pytest.raises(vdb.VolumeOverQuota, match="gigabytes"):
        vdb.volume_extend_begin(vid, 3, st.VOLUME_AVAILABLE, limits, vdb.deadline(60))
    with pytest.raises(vdb.VolumeStatusConflict):
        vdb.volume_extend_begin(vid, 2, st.VOLUME_IN_USE, limits, vdb.deadline(60))
    assert vdb.volume_extend_begin(vid, 2, st.VOLUME_AVAILABLE, limits,
                                   vdb.deadline(60)) == 1
    # A second request while extending moves nothing.
    with pytest.raises(vdb.VolumeStatusConflict):
        vdb.volume_extend_begin(vid, 4, st.VOLUME_AVAILABLE,
                                {"volumes": -1, "gigabytes": -1}, vdb.deadline(60))
    # The reaper ends an extend past its deadline in error_extending.
    vdb.volume_update(vid, {"status_deadline": vdb.deadline(-5)})
    assert cloud.conductor_service.manager.flows["volume"].reap() == 1
    assert vdb.volume_get(vid).status == st.VOLUME_ERROR_EXTENDING


NEW_IMAGE = "6d0c2b0e-7a43-4c55-9d2b-2f9a5e0c1b11"


def test_a_rebuild_keeps_the_attached_volumes(cloud):
    """A rebuild defines the guest anew around its new root disk: with the
    volumes attached now (compute 1.9 carries them), still exported."""
    from flotilla.db import images as images_db
    images_db.image_create({"id": NEW_IMAGE, "name": "new", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "checksum": "0" * 64,
                            "size": 1024, "owner": "p1"})
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    ctxt = cloud.ctxt
    db.instance_update(inst["uuid"], {"task_state": st.REBUILDING})
    db.action_start(inst["uuid"], "rebuild", ctxt.request_id, ctxt.user_id, ctxt.project_id)
    cloud.conductor.rebuild_instance(ctxt, inst["uuid"], NEW_IMAGE)
    done = cloud.wait_for(inst["uuid"], lambda i: i["task_state"] is None
                          and i["image_ref"] == NEW_IMAGE)
    assert done["vm_state"] == st.ACTIVE
    guest = cloud.drivers["host1"].guests[inst["uuid"]]
    assert guest.devices() == {vid: "vdb"}
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE and cloud.daemon.exported == {vid}

"""What services repair after a kill under a volume operation (issue 11
faults), in one process: the volume service's start-up recovery and its
storage-daemon watch (volume.recovery), the compute agent's start-up
removal of volume disks without an attachment, and a detach whose agent
gave up while the guest let go after all. The rig test is
tests/integration/e2e/test_volume_faults.py."""

from __future__ import annotations

import pytest

from flotilla import states as st
from flotilla.db import volumes as vdb
from tests.functional.volume.test_volume_flows import (
    MemoryBackend,
    MemoryDaemon,
    _attach,
    _detach,
    _volume,
    _wait_status,
    cloud,  # noqa: F401 - fixture
)
from volume import recovery
from volume.manager import VolumeManager

NO_QUOTA = {"volumes": -1, "gigabytes": -1}


def _row(status: str, host: str = "vol1") -> str:
    return vdb.volume_create({"size_gb": 1, "status": status, "host": host,
                              "project_id": "p1"}, NO_QUOTA).id


@pytest.fixture
def manager(conf, fake_cloud):
    return VolumeManager(conf, host="vol1", backend=MemoryBackend(), daemon=MemoryDaemon())


def test_an_interrupted_create_ends_in_error_and_its_file_goes(manager):
    vid = _row(st.VOLUME_CREATING)
    manager.backend.create(vid, 1)             # what the killed create had made
    other_host = _row(st.VOLUME_CREATING, host="vol2")
    done = recovery.recover_host(manager)
    assert done["errored"] == [vid]
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_ERROR and row.status_reason == recovery.INTERRUPTED_CREATE
    assert row.status_deadline is None and vid not in manager.backend.volumes
    assert vdb.volume_get(other_host).status == st.VOLUME_CREATING   # not this host's
    # The create request, still queued for the restarted service, does nothing.
    manager.create_volume(None, vid)
    assert vdb.volume_get(vid).status == st.VOLUME_ERROR
    assert vid not in manager.backend.volumes


def test_an_interrupted_delete_is_done_again(manager):
    vid = _row(st.VOLUME_DELETING)
    manager.backend.create(vid, 1)
    assert recovery.recover_host(manager)["deleted"] == [vid]
    assert vid not in manager.backend.volumes
    with pytest.raises(vdb.VolumeNotFound):
        vdb.volume_get(vid)


def test_only_exports_without_an_attachment_are_removed(manager, fake_cloud):
    inst = fake_cloud.boot("host1")
    attaching, orphan = _row(st.VOLUME_ATTACHING), _row(st.VOLUME_AVAILABLE)
    vdb.attachment_create(attaching, inst["uuid"], "host1")
    manager.daemon.exported |= {attaching, orphan}
    assert recovery.recover_host(manager)["unexported"] == [orphan]
    assert manager.daemon.exported == {attaching}


def test_a_dead_storage_daemon_is_started_again_with_its_exports(manager, fake_cloud):
    inst = fake_cloud.boot("host1")
    vid = _row(st.VOLUME_IN_USE)
    manager.backend.create(vid, 1)
    vdb.attachment_create(vid, inst["uuid"], "host1")
    assert recovery.watch_storage_daemon(manager) is False     # it answers
    manager.daemon.exported.clear()
    manager.daemon.dead = True                                  # killed
    assert recovery.watch_storage_daemon(manager) is True
    assert manager.daemon.exported == {vid}


def test_an_agent_removes_at_start_the_volume_disks_without_an_attachment(cloud):  # noqa: F811
    inst = cloud.boot("host1")
    kept = _volume(cloud)
    _attach(cloud, inst["uuid"], kept)
    _wait_status(kept, st.VOLUME_IN_USE)
    driver = cloud.drivers["host1"]
    # A disk left by an attach whose revert could not reach the agent.
    driver.attach_volume(inst, {"volume_id": "left-behind", "export": "left-behind",
                                "host": "127.0.0.1", "port": 10809})
    assert set(driver.get_volume_devices(inst)) == {kept, "left-behind"}
    ops = cloud.compute_services["host1"].manager.volumes
    assert ops.remove_orphan_disks(cloud.ctxt) == [(inst["uuid"], "left-behind")]
    assert set(driver.get_volume_devices(inst)) == {kept}
    assert ops.remove_orphan_disks(cloud.ctxt) == []


def test_an_instance_with_no_domain_has_no_volume_disk_to_check(cloud, caplog):  # noqa: F811
    """A server of the host whose guest never started (an agent killed
    mid-spawn) or is gone: nothing to detach, and no error logged."""
    inst = cloud.boot("host1")
    cloud.drivers["host1"].destroy(inst)
    ops = cloud.compute_services["host1"].manager.volumes
    assert ops.remove_orphan_disks(cloud.ctxt) == []
    assert not [r for r in caplog.records if "not checked" in r.getMessage()], caplog.text


def test_a_detach_whose_guest_let_go_late_completes(cloud, monkeypatch):  # noqa: F811
    """The agent gave up (as one killed while waiting does: the call fails)
    but the guest let go meanwhile: the flow asks again and finishes."""
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    driver = cloud.drivers["host1"]
    ops = cloud.compute_services["host1"].manager.volumes
    detach = ops.detach

    def late_release(*args, **kwargs):
        try:
            return detach(*args, **kwargs)
        finally:
            driver.hold_detach(inst["uuid"], False)
    monkeypatch.setattr(ops, "detach", late_release)
    driver.hold_detach(inst["uuid"])
    ctxt = _detach(cloud, inst["uuid"], vid)
    row = _wait_status(vid, st.VOLUME_AVAILABLE)
    assert row.status_reason is None and vdb.attachments_of_volume(vid) == []
    assert cloud.daemon.exported == set() and driver.get_volume_devices(inst) == {}
    assert db_action_message(inst["uuid"], ctxt.request_id) is None


def db_action_message(uuid: str, request_id: str):
    from flotilla.db import api as db
    return db.action_get(uuid, request_id).message


def test_an_agent_lists_the_attachments_of_its_own_host_only(cloud):  # noqa: F811
    import dataclasses

    from flotilla import exception
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    _attach(cloud, inst["uuid"], vid)
    _wait_status(vid, st.VOLUME_IN_USE)
    manager = cloud.conductor_service.manager
    as_host1 = dataclasses.replace(cloud.ctxt, agent_host="host1")
    assert manager.volume_attachments_by_host(as_host1, "host1") == {inst["uuid"]: [vid]}
    with pytest.raises(exception.Forbidden):
        manager.volume_attachments_by_host(dataclasses.replace(cloud.ctxt,
                                                               agent_host="host2"), "host1")


def test_a_restore_racing_a_detach_leaves_no_export(manager, fake_cloud):
    """The detach flow unexports, then deletes the attachment. A restore
    (the storage daemon started again) that read the attachment just
    before must not leave the volume exported: both interleavings."""
    vid = _row(st.VOLUME_DETACHING)
    manager.backend.create(vid, 1)
    vdb.attachment_create(vid, fake_cloud.boot("host1")["uuid"], "host1")
    manager.export_volume(None, vid)
    # 1. The unexport lands between the restore's read and its export.
    real_export = manager.daemon.export

    def export_after_unexport(volume_id, path, writable=True):
        manager.unexport_volume(None, volume_id)
        return real_export(volume_id, path, writable)

    manager.daemon.export = export_after_unexport
    assert manager.restore_exports() == []
    manager.daemon.export = real_export
    assert manager.daemon.exported == set()
    # 2. The unexport came first: the restore does not export again.
    assert manager.restore_exports() == []
    assert manager.daemon.exported == set()
    # An attach exporting it again clears the mark: a restore exports it.
    manager.export_volume(None, vid)
    manager.daemon.exported.clear()
    assert manager.restore_exports() == [vid]
    assert manager.daemon.exported == {vid}


def test_a_create_that_outlived_its_volume_removes_its_file(manager, monkeypatch):
    """The reaper ended a slow create in error and the tenant deleted the
    volume: the file the create then made is removed, not orphaned."""
    vid = _row(st.VOLUME_CREATING)
    real_create = manager.backend.create

    def slow_create(volume_id, size_gb):
        vdb.volume_update(volume_id, {"status": st.VOLUME_ERROR},
                          expected_status=st.VOLUME_CREATING)   # the reaper
        vdb.volume_update(volume_id, {"status": st.VOLUME_DELETING},
                          expected_status=st.VOLUME_ERROR)      # the tenant's delete
        manager.delete_volume(None, volume_id)                  # ran before the file
        return real_create(volume_id, size_gb)

    monkeypatch.setattr(manager.backend, "create", slow_create)
    manager.create_volume(None, vid)
    assert vid not in manager.backend.volumes
    with pytest.raises(vdb.VolumeNotFound):
        vdb.volume_get(vid)

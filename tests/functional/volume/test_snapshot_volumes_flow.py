"""Volumes made from volume snapshots at boot (``source_type`` snapshot:
the mappings of a volume-backed server's image, or given directly) through
the conductor's build flow in one process (see test_boot_from_volume_flow;
the volume service copies a snapshot through an in-memory stand-in)."""

from __future__ import annotations

import pytest

from flotilla import objects
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from tests.fixtures.scheduling import events
from tests.fixtures.waiting import wait_until
from tests.functional.volume.test_boot_from_volume_flow import (  # noqa: F401
    IMAGE,
    _boot,
    _existing,
    cloud,
)

META = {"image_id": IMAGE, "image_name": "guest", "min_ram": "0"}


@pytest.fixture
def copies(cloud):  # noqa: F811
    """(volume, snapshot, size) of each copy the volume service made."""
    made = []

    def create_from_snapshot(volume_id, snapshot_id, size_gb):
        made.append((volume_id, snapshot_id, size_gb))
        return cloud.backend.create(volume_id, size_gb)

    cloud.backend.create_from_snapshot = create_from_snapshot
    return made


def _snapshot(cloud, status=st.SNAPSHOT_CREATING) -> str:  # noqa: F811
    """A snapshot of a bootable 1 GiB volume on vol1 (made from IMAGE)."""
    vid = _existing(cloud, bootable=True)
    vdb.volume_update(vid, {"image_metadata": META})
    row = sdb.snapshot_create({"volume_id": vid, "status": status, "user_id": "u1",
                               "metadata": {}}, {"snapshots": -1, "gigabytes": -1},
                              (st.VOLUME_AVAILABLE,))
    return row.id


def _from_snapshot(sid: str, boot_index=0, size=2, delete=True):
    return objects.BlockDeviceMapping(source_type="snapshot", destination_type="volume",
                                      snapshot_id=sid, boot_index=boot_index,
                                      volume_size=size, delete_on_termination=delete)


def test_the_build_waits_for_the_snapshot_then_boots_from_its_copy(
        cloud, copies):  # noqa: F811
    boot_snap = _snapshot(cloud)
    extra_snap = _snapshot(cloud, st.SNAPSHOT_AVAILABLE)
    _ctxt, uuid = _boot(cloud, [_from_snapshot(boot_snap),
                                _from_snapshot(extra_snap, None, 1, False)])
    # Still being taken (an image is active before its snapshots are):
    # the build waits in create_volumes, having made no volume from it.
    wait_until(lambda: "conductor_create_volumes" in {e for _a, e, _r, _h in events(uuid)},
               timeout=10, what="the build at create_volumes")
    assert not any(v.snapshot_id == boot_snap for v in vdb.volume_get_all())
    sdb.snapshot_update(boot_snap, {"status": st.SNAPSHOT_AVAILABLE},
                        expected_status=st.SNAPSHOT_CREATING)
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE, inst
    attachments = {a.boot_index: a for a in vdb.attachments_of_instance(uuid)}
    boot, extra = vdb.volume_get(attachments[0].volume_id), \
        vdb.volume_get(attachments[None].volume_id)
    assert sorted(copies) == sorted([(boot.id, boot_snap, 2), (extra.id, extra_snap, 1)])
    assert (boot.snapshot_id, boot.host, boot.size_gb, boot.bootable, boot.status,
            boot.project_id) == (boot_snap, "vol1", 2, True, st.VOLUME_IN_USE, "p1")
    assert boot.image_metadata == META and cloud.written == []
    assert (attachments[0].device, attachments[0].delete_on_termination,
            attachments[None].device, attachments[None].delete_on_termination) == \
        ("vda", True, "vdb", False)
    guest = cloud.drivers[inst["host"]].guests[uuid]
    assert guest.devices() == {boot.id: "vda", extra.id: "vdb"}

    db.instance_update(uuid, {"task_state": st.DELETING})
    cloud.conductor.delete_instance(cloud.ctxt, uuid)
    wait_until(lambda: boot.id not in cloud.backend.volumes, timeout=15,
               what="the boot copy deleted with its server")
    wait_until(lambda: vdb.volume_get(extra.id).status == st.VOLUME_AVAILABLE, timeout=5,
               what="the extra copy kept, available")
    assert {s.status for s in sdb.snapshot_get_all(project_id="p1")} == \
        {st.SNAPSHOT_AVAILABLE}


def test_a_snapshot_that_fails_fails_the_build_with_nothing_made(
        cloud, copies):  # noqa: F811
    sid = _snapshot(cloud)
    kept = {v.id for v in vdb.volume_get_all()}
    _ctxt, uuid = _boot(cloud, [_from_snapshot(sid)])
    wait_until(lambda: "conductor_create_volumes" in {e for _a, e, _r, _h in events(uuid)},
               timeout=10, what="the build at create_volumes")
    sdb.snapshot_update(sid, {"status": st.SNAPSHOT_ERROR},
                        expected_status=st.SNAPSHOT_CREATING)
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ERROR
    assert copies == [] and {v.id for v in vdb.volume_get_all()} == kept
    assert ("conductor_create_volumes", "Error") in [(e, r) for _a, e, r, _h in events(uuid)]
    assert any("snapshot %s is error" % sid in (f.details or "") + f.message
               for f in db.instance_fault_get_all(uuid))

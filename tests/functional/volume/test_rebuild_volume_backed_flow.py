"""Rebuild of a server booted from a volume through the conductor's rebuild
flow in one process: scheduler, conductor, agents on the fake driver and a
volume service on in-memory stand-ins (the image write is replaced; the
real one runs on the rig, tests/integration/e2e/test_volumes.py)."""

from __future__ import annotations

import pytest

from compute.virt import power_state
from flotilla import objects
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import instances as instances_db
from flotilla.db import volumes as vdb
from tests.fixtures.scheduling import events
from tests.fixtures.waiting import wait_until
from tests.functional.volume.test_boot_from_volume_flow import (  # noqa: F401
    IMAGE,
    _boot,
    _existing,
    _from_image,
    cloud,
)
from volume import images as volume_images
from volume.manager import VolumeManager

NEW_IMAGE = "5b1e0c0a-3f7d-4d1e-8a3c-2b9e6f4a7d21"


@pytest.fixture
def bfv(cloud, monkeypatch):  # noqa: F811
    """An active server booted from a volume made from IMAGE, with a data
    volume; the fake image write records what the volume and guest were
    like while it wrote."""
    images_db.image_create({"id": NEW_IMAGE, "name": "new", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "checksum": "1" * 64,
                            "size": 2048, "owner": "p1", "min_ram": 0})
    extra = _existing(cloud)
    _ctxt, uuid = _boot(cloud, [_from_image(delete=False), objects.BlockDeviceMapping(
        source_type="volume", destination_type="volume", volume_id=extra, tag="data")])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE, inst
    [boot] = [a.volume_id for a in vdb.attachments_of_instance(uuid) if a.boot_index == 0]
    cloud.seen = []
    driver = cloud.drivers[inst["host"]]

    def write_image(conf, image_id, path, volume_bytes):
        guest = driver.guests.get(uuid)
        cloud.seen.append({"image": image_id, "path": path,
                           "status": vdb.volume_get(boot).status,
                           "exported": boot in cloud.daemon.exported,
                           "power": guest.power_state if guest else None})
        fail = getattr(cloud, "fail_write", None)
        if fail is not None:
            raise fail
        cloud.written.append((image_id, path))
        return type("Info", (), {"format": "qcow2", "virtual_size": volume_bytes})()

    monkeypatch.setattr("volume.images.write_image", write_image)
    cloud.written.clear()
    cloud.bfv = {"uuid": uuid, "boot": boot, "extra": extra, "host": inst["host"],
                 "driver": driver}
    return cloud


def _rebuild(cloud, reimage: bool = True, image: str = NEW_IMAGE) -> dict:  # noqa: F811
    uuid, ctxt = cloud.bfv["uuid"], cloud.ctxt
    db.instance_update(uuid, {"task_state": st.REBUILDING})
    db.action_start(uuid, "rebuild", ctxt.request_id, ctxt.user_id, ctxt.project_id)
    cloud.conductor.rebuild_instance(ctxt, uuid, image, volume_backed=True,
                                     reimage_boot_volume=reimage)
    return cloud.wait_for(uuid, lambda i: i["task_state"] is None, timeout=30)


def test_the_root_volume_is_reimaged_in_place_and_the_server_runs_again(bfv):
    b = bfv.bfv
    done = _rebuild(bfv)
    assert (done["vm_state"], done["image_ref"], done["host"]) == \
        (st.ACTIVE, "", b["host"])
    # Written in place, while the guest was off and the volume unexported.
    assert bfv.written == [(NEW_IMAGE, "/memory/" + b["boot"])]
    assert bfv.seen == [{"image": NEW_IMAGE, "path": "/memory/" + b["boot"],
                         "status": st.VOLUME_DOWNLOADING, "exported": False,
                         "power": power_state.SHUTDOWN}]
    volume = vdb.volume_get(b["boot"])
    assert (volume.status, volume.size_gb, volume.image_id,
            volume.image_metadata["image_id"]) == (st.VOLUME_IN_USE, 1, NEW_IMAGE,
                                                   NEW_IMAGE)
    # Same volumes, same devices, exported again; the guest runs.
    attachments = {a.volume_id: a.device for a in vdb.attachments_of_instance(b["uuid"])}
    assert attachments == {b["boot"]: "vda", b["extra"]: "vdb"}
    guest = b["driver"].guests[b["uuid"]]
    assert guest.devices() == {b["boot"]: "vda", b["extra"]: "vdb"}
    assert guest.power_state == power_state.RUNNING
    assert bfv.daemon.exported == {b["boot"], b["extra"]}
    assert vdb.volume_get(b["extra"]).status == st.VOLUME_IN_USE
    steps = {"conductor_stop_guest", "conductor_unexport_root", "conductor_reimage_root",
             "conductor_export_root", "conductor_rebuild_on_host",
             "conductor_record_image"}
    wait_until(lambda: steps <= {e for _a, e, r, _h in events(b["uuid"])
                                 if r == "Success"}, timeout=10,
               what="the rebuild's steps recorded as done")


def test_a_stopped_server_stays_stopped(bfv):
    b = bfv.bfv
    b["driver"].power_off(db.instance_get(b["uuid"]).to_dict(), timeout=0)
    db.instance_update(b["uuid"], {"vm_state": st.STOPPED,
                                   "power_state": power_state.SHUTDOWN})
    done = _rebuild(bfv)
    assert done["vm_state"] == st.STOPPED
    assert bfv.written == [(NEW_IMAGE, "/memory/" + b["boot"])]
    assert b["driver"].guests[b["uuid"]].power_state == power_state.SHUTDOWN
    assert vdb.volume_get(b["boot"]).status == st.VOLUME_IN_USE


def test_without_reimage_the_guest_restarts_on_its_untouched_volume(bfv):
    """Nova below 2.93 with the volume's own image: no re-image."""
    b = bfv.bfv
    done = _rebuild(bfv, reimage=False, image=IMAGE)
    assert (done["vm_state"], done["image_ref"]) == (st.ACTIVE, "")
    assert bfv.written == [] and bfv.seen == []
    volume = vdb.volume_get(b["boot"])
    assert (volume.status, volume.image_id) == (st.VOLUME_IN_USE, IMAGE)
    assert b["driver"].guests[b["uuid"]].devices() == {b["boot"]: "vda", b["extra"]: "vdb"}


def test_a_refusal_before_the_write_leaves_server_and_volume_as_they_were(bfv):
    b = bfv.bfv
    bfv.fail_write = volume_images.ImageTooLarge(image_id=NEW_IMAGE, size=2 * 2 ** 30,
                                                 volume_size=2 ** 30)
    done = _rebuild(bfv)
    assert done["vm_state"] == st.ACTIVE
    volume = vdb.volume_get(b["boot"])
    assert (volume.status, volume.image_id) == (st.VOLUME_IN_USE, IMAGE)
    assert b["driver"].guests[b["uuid"]].power_state == power_state.RUNNING
    assert bfv.daemon.exported == {b["boot"], b["extra"]}
    wait_until(lambda: ("conductor_reimage_root", "Error") in
               [(e, r) for _a, e, r, _h in events(b["uuid"])], timeout=10,
               what="the re-image step recorded as failed")
    faults = instances_db.instance_fault_get_all(b["uuid"])
    assert any("larger than the volume" in (f.details or "") for f in faults), \
        [(f.message, f.details) for f in faults]


def test_a_failed_write_errors_the_volume_and_the_server(bfv):
    """The volume may be half written: it must not boot. The volume ends in
    error with the reason, the server in ERROR with a fault; the export is
    back (the attachment stands) and the guest stays off."""
    b = bfv.bfv
    bfv.fail_write = RuntimeError("qemu-img convert died")
    done = _rebuild(bfv)
    assert done["vm_state"] == st.ERROR
    volume = vdb.volume_get(b["boot"])
    assert volume.status == st.VOLUME_ERROR and "re-image" in volume.status_reason
    assert b["driver"].guests[b["uuid"]].power_state == power_state.SHUTDOWN
    assert bfv.daemon.exported == {b["boot"], b["extra"]}
    faults = instances_db.instance_fault_get_all(b["uuid"])
    assert any("could not be re-imaged" in f.message for f in faults), \
        [(f.message, f.details) for f in faults]


def test_agents_capped_below_1_14_fail_it_before_anything_changes(bfv):
    b = bfv.bfv
    bfv.conductor_manager.flows["rebuild"].compute.client.version_cap = "1.13"
    done = _rebuild(bfv)
    assert done["vm_state"] == st.ACTIVE
    assert bfv.seen == [] and vdb.volume_get(b["boot"]).status == st.VOLUME_IN_USE
    assert b["driver"].guests[b["uuid"]].power_state == power_state.RUNNING
    messages = [f.details or "" for f in instances_db.instance_fault_get_all(b["uuid"])]
    assert any("capped below RPC 1.14" in m for m in messages), messages


def test_the_reaper_and_a_restarted_volume_service_end_a_stuck_reimage(bfv):
    from volume import recovery
    b = bfv.bfv
    vdb.volume_update(b["boot"], {"status": st.VOLUME_DOWNLOADING,
                                  "status_deadline": vdb.deadline(-5)})
    assert bfv.conductor_manager.flows["volume"].reap() == 1
    assert vdb.volume_get(b["boot"]).status == st.VOLUME_ERROR
    vdb.volume_update(b["boot"], {"status": st.VOLUME_DOWNLOADING,
                                  "status_deadline": vdb.deadline(600)})
    restarted = VolumeManager(bfv.conf, host="vol1", backend=bfv.backend,
                              daemon=bfv.daemon)
    done = recovery.recover_host(restarted)
    assert b["boot"] in done["errored"]
    volume = vdb.volume_get(b["boot"])
    assert volume.status == st.VOLUME_ERROR and "re-image interrupted" in \
        volume.status_reason


def _faults(uuid: str) -> list[str]:
    return [f.message for f in instances_db.instance_fault_get_all(uuid)]


def test_a_server_deleted_during_the_reimage_has_its_root_volume_released(bfv, monkeypatch):
    """Its delete leaves the downloading root volume to the flow, which
    releases it at its end: delete_on_termination honoured, no export or
    attachment left."""
    b = bfv.bfv
    [att] = [a for a in vdb.attachments_of_instance(b["uuid"]) if a.volume_id == b["boot"]]
    vdb.attachment_update(att.uuid, {"delete_on_termination": True})
    real_write = volume_images.write_image

    def write_while_the_server_goes(conf, image_id, path, volume_bytes):
        db.instance_update(b["uuid"], {"task_state": st.DELETING})
        bfv.conductor.delete_instance(bfv.ctxt, b["uuid"])
        wait_until(lambda: all(i.uuid != b["uuid"] for i in db.instance_get_all()),
                   timeout=10, what="the server deleted")
        # Its delete left the downloading volume (and its attachment) alone.
        assert vdb.attachments_of_volume(b["boot"])
        return real_write(conf, image_id, path, volume_bytes)

    monkeypatch.setattr("volume.images.write_image", write_while_the_server_goes)
    _start_rebuild(bfv)
    wait_until(lambda: b["boot"] not in bfv.backend.volumes, timeout=20,
               what="the root volume deleted (delete_on_termination)")
    wait_until(lambda: b["boot"] not in {v.id for v in vdb.volume_get_all()}, timeout=10,
               what="the root volume's row gone")
    wait_until(lambda: vdb.volume_get(b["extra"]).status == st.VOLUME_AVAILABLE,
               timeout=10, what="the data volume released")
    assert bfv.daemon.exported == set()


def _start_rebuild(cloud, image: str = NEW_IMAGE) -> None:  # noqa: F811
    uuid, ctxt = cloud.bfv["uuid"], cloud.ctxt
    db.instance_update(uuid, {"task_state": st.REBUILDING})
    db.action_start(uuid, "rebuild", ctxt.request_id, ctxt.user_id, ctxt.project_id)
    cloud.conductor.rebuild_instance(ctxt, uuid, image, volume_backed=True,
                                     reimage_boot_volume=True)


def test_the_downloading_deadline_covers_the_reimage_call(bfv, monkeypatch):
    """Set right before the call: at least the call's timeout ahead, so the
    reaper cannot end a re-image its call still waits for."""
    from conductor.flows.rebuild_volume import DEADLINE_MARGIN
    b = bfv.bfv
    ahead = []
    real_write = volume_images.write_image

    def write(conf, image_id, path, volume_bytes):
        ahead.append((vdb.volume_get(b["boot"]).status_deadline - vdb.deadline(0))
                     .total_seconds())
        return real_write(conf, image_id, path, volume_bytes)

    monkeypatch.setattr("volume.images.write_image", write)
    done = _rebuild(bfv)
    assert done["vm_state"] == st.ACTIVE
    [seconds] = ahead
    assert seconds >= bfv.conf.volume.operation_timeout + DEADLINE_MARGIN / 2, seconds


def test_an_image_deleted_after_the_reimage_does_not_fail_the_rebuild(bfv, monkeypatch):
    """The volume-backed guest needs no image from the image service."""
    b = bfv.bfv
    real_write = volume_images.write_image

    def write_then_delete_the_image(conf, image_id, path, volume_bytes):
        info = real_write(conf, image_id, path, volume_bytes)
        images_db.image_update(NEW_IMAGE, {"status": "deleted"})
        return info

    monkeypatch.setattr("volume.images.write_image", write_then_delete_the_image)
    done = _rebuild(bfv)
    assert done["vm_state"] == st.ACTIVE, _faults(b["uuid"])
    assert b["driver"].guests[b["uuid"]].power_state == power_state.RUNNING
    volume = vdb.volume_get(b["boot"])
    assert (volume.status, volume.image_id) == (st.VOLUME_IN_USE, NEW_IMAGE)


def test_an_agent_failure_after_the_reimage_is_error_not_unchanged(bfv, monkeypatch):
    """The root volume holds the new image: the server ends in ERROR with a
    fault saying so, never "unchanged" and active with its guest off."""
    b = bfv.bfv

    def refuse(*args, **kwargs):
        raise RuntimeError("define failed")

    monkeypatch.setattr(b["driver"], "rebuild", refuse)
    _start_rebuild(bfv)
    wait_until(lambda: db.instance_get(b["uuid"]).vm_state == st.ERROR and
               any("now holds image %s" % NEW_IMAGE in m for m in _faults(b["uuid"])),
               timeout=15, what="the server in ERROR with a fault naming the new image")
    assert db.instance_get(b["uuid"]).task_state is None
    assert not any("unchanged" in m for m in _faults(b["uuid"])), _faults(b["uuid"])
    volume = vdb.volume_get(b["boot"])
    assert (volume.status, volume.image_id) == (st.VOLUME_IN_USE, NEW_IMAGE)


def test_a_new_rebuild_repairs_a_root_volume_a_failed_reimage_left_in_error(bfv):
    b = bfv.bfv
    bfv.fail_write = RuntimeError("qemu-img convert died")
    assert _rebuild(bfv)["vm_state"] == st.ERROR
    assert vdb.volume_get(b["boot"]).status == st.VOLUME_ERROR
    bfv.fail_write = None
    done = _rebuild(bfv)
    assert done["vm_state"] == st.ACTIVE, _faults(b["uuid"])
    volume = vdb.volume_get(b["boot"])
    assert (volume.status, volume.status_reason, volume.image_id) == \
        (st.VOLUME_IN_USE, None, NEW_IMAGE)
    assert b["driver"].guests[b["uuid"]].power_state == power_state.RUNNING
    assert bfv.daemon.exported == {b["boot"], b["extra"]}


def test_a_refused_reimage_of_an_errored_root_volume_leaves_it_in_error(bfv):
    b = bfv.bfv
    vdb.volume_update(b["boot"], {"status": st.VOLUME_ERROR,
                                  "status_reason": "re-image interrupted: test"})
    bfv.fail_write = volume_images.ImageTooLarge(image_id=NEW_IMAGE, size=2 * 2 ** 30,
                                                 volume_size=2 ** 30)
    _rebuild(bfv)
    volume = vdb.volume_get(b["boot"])
    assert (volume.status, volume.status_reason) == \
        (st.VOLUME_ERROR, "re-image interrupted: test")
    assert bfv.daemon.exported == {b["boot"], b["extra"]}

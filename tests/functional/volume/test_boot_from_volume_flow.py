"""Boot from volume and volumes at boot through the conductor's build flow
in one process: scheduler, conductor, two agents on the fake driver and a
volume service on in-memory stand-ins (the image write is replaced; the
real one runs on the rig, tests/integration/e2e/test_volumes.py)."""

from __future__ import annotations

import dataclasses
import types
import uuid as uuidlib

import pytest

from compute.virt.fake import FakeDriver
from flotilla import deadlines, objects
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import instances as instances_db
from flotilla.db import volumes as vdb
from tests.fixtures.cloud import FLAVOR
from tests.fixtures.scheduling import SchedulingCloud, events
from tests.fixtures.waiting import wait_until
from tests.functional.volume.test_volume_flows import start_volume_service

IMAGE = "7f0c3a37-5c2f-4f0b-9b3e-1d2a4f6b8c10"


@pytest.fixture
def cloud(conf, monkeypatch):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("max_attempts", 1, group="scheduler")
    c = SchedulingCloud(conf, ["host1", "host2"], lambda host: FakeDriver())
    c.written = []

    def write_image(conf, image_id, path, volume_bytes):
        c.written.append((image_id, path))
        return types.SimpleNamespace(format="qcow2", virtual_size=1024)

    monkeypatch.setattr("volume.images.write_image", write_image)
    svc = start_volume_service(conf, c)
    images_db.image_create({"id": IMAGE, "name": "guest", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "checksum": "0" * 64,
                            "size": 1024, "owner": "p1"})
    yield c
    svc.stop(grace=5)
    c.stop()


def _boot(cloud, disks: list[objects.BlockDeviceMapping]) -> tuple[object, str]:
    """Record one volume-backed server as the API does and build it."""
    ctxt, uuid = cloud.ctxt, str(uuidlib.uuid4())
    flavor = dict(FLAVOR, root_gb=0)
    db.instance_create({"uuid": uuid, "name": "bfv", "project_id": "p1", "user_id": "u1",
                        "flavor": flavor, "vm_state": st.BUILDING,
                        "task_state": st.SCHEDULING, "image_ref": "",
                        "task_deadline": deadlines.task_deadline(cloud.conf,
                                                                 st.SCHEDULING)})
    db.action_start(uuid, "create", ctxt.request_id, user_id="u1", project_id="p1")
    spec = objects.RequestSpec(flavor=objects.Flavor.from_record(flavor),
                               image=objects.ImageMeta(id=IMAGE), project_id="p1",
                               user_id="u1", num_instances=1)
    cloud.conductor.build_instances(ctxt, [uuid], spec, None, block_device_mapping=disks)
    return ctxt, uuid


def _from_image(delete: bool = True) -> objects.BlockDeviceMapping:
    return objects.BlockDeviceMapping(source_type="image", destination_type="volume",
                                      boot_index=0, image_id=IMAGE, volume_size=1,
                                      delete_on_termination=delete)


def _existing(cloud, bootable: bool = False) -> str:
    row = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_AVAILABLE, "host": "vol1",
                             "project_id": "p1", "bootable": bootable},
                            {"volumes": -1, "gigabytes": -1})
    cloud.backend.create(row.id, 1)
    return row.id


def test_boot_from_a_new_volume_with_an_extra_volume_then_delete(cloud):
    extra = _existing(cloud)
    _ctxt, uuid = _boot(cloud, [_from_image(), objects.BlockDeviceMapping(
        source_type="volume", destination_type="volume", volume_id=extra, tag="data")])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE, inst
    attachments = {a.volume_id: a for a in vdb.attachments_of_instance(uuid)}
    [boot] = [v for v in attachments if v != extra]
    assert cloud.written == [(IMAGE, "/memory/" + boot)]
    volume = vdb.volume_get(boot)
    assert (volume.status, volume.bootable, volume.size_gb, volume.project_id) == \
        (st.VOLUME_IN_USE, True, 1, "p1")
    assert (attachments[boot].device, attachments[boot].boot_index,
            attachments[boot].delete_on_termination) == ("vda", 0, True)
    assert (attachments[extra].device, attachments[extra].boot_index,
            attachments[extra].delete_on_termination) == ("vdb", None, False)
    assert (attachments[boot].tag, attachments[extra].tag) == (None, "data")
    assert vdb.volume_get(extra).status == st.VOLUME_IN_USE
    guest = cloud.drivers[inst["host"]].guests[uuid]
    assert guest.devices() == {boot: "vda", extra: "vdb"} and guest.disk == b""
    assert cloud.daemon.exported == {boot, extra}
    # The build_on_host event ends when its cast returned, which a fast
    # (fake) agent can outrun to ACTIVE: wait for it rather than assume.
    steps = {"conductor_create_volumes", "conductor_reserve_volumes",
             "conductor_export_volumes", "conductor_build_on_host",
             "conductor_volumes_in_use"}
    wait_until(lambda: steps <= {e for _a, e, r, _h in events(uuid) if r == "Success"},
               timeout=5, what="the build's conductor steps recorded as done")

    db.instance_update(uuid, {"task_state": st.DELETING})
    cloud.conductor.delete_instance(cloud.ctxt, uuid)
    wait_until(lambda: boot not in cloud.backend.volumes, timeout=15,
               what="the boot volume deleted with its server")
    wait_until(lambda: boot not in {v.id for v in vdb.volume_get_all()}, timeout=5,
               what="the boot volume's row gone")
    # Released one by one in attachment order: the boot volume may go first.
    wait_until(lambda: vdb.volume_get(extra).status == st.VOLUME_AVAILABLE, timeout=5,
               what="the extra volume available again")
    assert vdb.attachments_of_volume(extra) == [] and cloud.daemon.exported == set()


def test_a_blank_volume_is_made_attached_and_deleted_with_its_server(cloud):
    _ctxt, uuid = _boot(cloud, [_from_image(), objects.BlockDeviceMapping(
        source_type="blank", destination_type="volume", volume_size=1,
        delete_on_termination=True)])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE, inst
    attachments = {a.boot_index: a for a in vdb.attachments_of_instance(uuid)}
    blank = attachments[None].volume_id
    # Made empty: only the boot volume had an image written into it.
    assert cloud.written == [(IMAGE, "/memory/" + attachments[0].volume_id)]
    volume = vdb.volume_get(blank)
    assert (volume.status, volume.bootable, volume.image_id, volume.size_gb) == \
        (st.VOLUME_IN_USE, False, None, 1)
    assert cloud.backend.volumes[blank] == 1
    assert cloud.drivers[inst["host"]].guests[uuid].devices()[blank] == "vdb"

    db.instance_update(uuid, {"task_state": st.DELETING})
    cloud.conductor.delete_instance(cloud.ctxt, uuid)
    wait_until(lambda: not {blank, attachments[0].volume_id} & set(cloud.backend.volumes),
               timeout=15, what="both volumes deleted with their server")


def test_boot_from_an_existing_volume_keeps_it_after_delete(cloud):
    vid = _existing(cloud, bootable=True)
    _ctxt, uuid = _boot(cloud, [objects.BlockDeviceMapping(
        source_type="volume", destination_type="volume", boot_index=0, volume_id=vid)])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE
    assert cloud.written == []
    assert cloud.drivers[inst["host"]].guests[uuid].devices() == {vid: "vda"}
    db.instance_update(uuid, {"task_state": st.DELETING})
    cloud.conductor.delete_instance(cloud.ctxt, uuid)
    wait_until(lambda: vdb.volume_get(vid).status == st.VOLUME_AVAILABLE, timeout=15,
               what="the volume released")
    assert vid in cloud.backend.volumes and vdb.attachments_of_volume(vid) == []


@pytest.mark.parametrize("failing_step", ["export_volumes", "build_on_host_report"])
def test_a_failure_undoes_the_volumes_in_reverse(cloud, failing_step):
    """A refused export or a failed spawn: the reservations are undone, the
    exports removed, the volume the flow made deleted, the server in ERROR."""
    extra = _existing(cloud)
    if failing_step == "export_volumes":
        cloud.daemon.fail_export = True
    else:
        for driver in cloud.drivers.values():
            driver.inject_spawn_failure()
    _ctxt, uuid = _boot(cloud, [_from_image(), objects.BlockDeviceMapping(
        source_type="volume", destination_type="volume", volume_id=extra, tag="data")])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ERROR
    wait_until(lambda: set(cloud.backend.volumes) == {extra}, timeout=15,
               what="the made volume deleted")
    assert vdb.volume_get(extra).status == st.VOLUME_AVAILABLE
    assert vdb.attachments_of_instance(uuid) == [] and cloud.daemon.exported == set()
    assert ("conductor_" + failing_step, "Error") in [(e, r) for _a, e, r, _h in events(uuid)]
    assert not any(uuid in d.guests for d in cloud.drivers.values())


def test_a_volume_that_fails_to_be_made_fails_the_build(cloud, monkeypatch):
    def refuse(conf, image_id, path, volume_bytes):
        raise RuntimeError("image unreadable")

    monkeypatch.setattr("volume.images.write_image", refuse)
    _ctxt, uuid = _boot(cloud, [_from_image()])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ERROR
    wait_until(lambda: vdb.volume_get_all(project_id="p1") == [], timeout=15,
               what="the failed volume removed")
    assert any(e == "conductor_create_volumes" and r == "Error"
               for _a, e, r, _h in events(uuid))


def test_a_boot_volume_larger_than_every_free_space_fails_the_build(cloud):
    # The memory backend reports 1 TiB, all free.
    disk = dataclasses.replace(_from_image(), volume_size=1025)
    _ctxt, uuid = _boot(cloud, [disk])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ERROR
    assert vdb.volume_get_all(project_id="p1") == [] and cloud.written == []
    faults = instances_db.instance_fault_get_all(uuid)
    assert any("larger than the free space of every volume host" in (f.details or "")
               + f.message for f in faults), [(f.message, f.details) for f in faults]



def test_agents_capped_below_1_7_refuse_a_volume_boot_before_any_volume(cloud):
    """An upgrade in progress: the agents answer to compute 1.6, which would
    boot the server without its volumes. The build ends in ERROR with the
    reason at its checks, before a volume is made, reserved or exported."""
    extra = _existing(cloud)
    cloud.conductor_manager.flows["build"].compute.client.version_cap = "1.6"
    _ctxt, uuid = _boot(cloud, [_from_image(), objects.BlockDeviceMapping(
        source_type="volume", destination_type="volume", volume_id=extra, tag="data")])
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ERROR
    assert cloud.written == [] and set(cloud.backend.volumes) == {extra}
    assert vdb.volume_get(extra).status == st.VOLUME_AVAILABLE
    assert vdb.attachments_of_instance(uuid) == [] and cloud.daemon.exported == set()
    assert not any(uuid in d.guests for d in cloud.drivers.values())
    messages = [f.details for f in instances_db.instance_fault_get_all(uuid)]
    assert any("older than 1.7" in m and "[upgrade_levels] compute" in m
               for m in messages if m), messages

"""createImage of a server that boots from a volume, and servers booted
from such an image or from a volume snapshot mapping, at the API: what is
checked, recorded and cast (recording endpoints for the volume service and
the conductor)."""

from __future__ import annotations

import json

import pytest

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import IMAGE_ID, C, api_cloud  # noqa: F401
from tests.functional.volume.test_boot_from_volume_api import _cast, _create
from tests.functional.volume.test_volume_api import _available, cloud  # noqa: F401

META = {"image_id": IMAGE_ID, "image_name": "guest", "min_ram": "0", "min_disk": "1",
        "disk_format": "qcow2", "container_format": "bare", "size": "1024",
        "checksum": "", "hw_disk_bus": "virtio", "os_distro": "cirros"}


def _volume_backed(cloud, vm_state=st.ACTIVE, extra: bool = True):  # noqa: F811
    """A server booted from a volume (in use, from an image) with an extra
    volume at vdb; (server, boot volume, extra volume or None)."""
    uuid = cloud.create_server(name="bfv")
    db.instance_update(uuid, {"vm_state": vm_state, "task_state": None, "host": "host1",
                              "image_ref": ""})
    boot = _available(cloud, size=2)
    vdb.volume_update(boot, {"bootable": True, "image_metadata": META,
                             "status": st.VOLUME_IN_USE})
    att = vdb.attachment_create(boot, uuid, "host1", delete_on_termination=True,
                                boot_index=0)
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vda"})
    other = None
    if extra:
        other = _available(cloud)
        vdb.volume_update(other, {"status": st.VOLUME_IN_USE})
        att = vdb.attachment_create(other, uuid, "host1")
        vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb"})
    cloud.conductor.calls.clear()
    cloud.volume.calls.clear()
    return uuid, boot, other


def _create_image(cloud, uuid, who="member", **args):  # noqa: F811
    body = {"createImage": dict({"name": "bfv-snap"}, **args)}
    return cloud.request("POST", C + "/servers/%s/action" % uuid, who, "2.45", json=body)


def _mappings(image_id: str) -> list[dict]:
    return json.loads(images_db.image_get(image_id).properties["block_device_mapping"])


@pytest.mark.parametrize("vm_state", [st.ACTIVE, st.STOPPED])
def test_create_image_snapshots_each_volume_into_an_active_image(
        cloud, vm_state):  # noqa: F811
    uuid, boot, other = _volume_backed(cloud, vm_state)
    r = _create_image(cloud, uuid, metadata={"k": "v"})
    assert r.status_code == 202, r.text
    image_id = r.json["image_id"]
    assert r.headers["Location"].endswith("/image/v2/images/%s" % image_id)
    image = images_db.image_get(image_id)
    assert (image.status, image.size, image.disk_format, image.container_format,
            image.owner, image.min_disk) == ("active", 0, None, None, "p1", 1)
    props = image.properties
    assert (props["bdm_v2"], props["root_device_name"], props["image_type"],
            props["instance_uuid"], props["k"]) == ("True", "/dev/vda", "snapshot", uuid, "v")
    # What the server booted from, as Nova copies the instance's image properties.
    assert (props["hw_disk_bus"], props["os_distro"]) == ("virtio", "cirros")
    assert "image_name" not in props and "checksum" not in props
    first, second = _mappings(image_id)
    snaps = {s.volume_id: s for s in sdb.snapshot_get_all(project_id="p1")}
    assert set(snaps) == {boot, other}
    assert first == dict(first, source_type="snapshot", destination_type="volume",
                         snapshot_id=snaps[boot].id, volume_size=2, boot_index=0,
                         device_name="/dev/vda", delete_on_termination=True)
    assert second == dict(second, source_type="snapshot", snapshot_id=snaps[other].id,
                          volume_size=1, boot_index=None, device_name="/dev/vdb",
                          delete_on_termination=False)
    assert {s.status for s in snaps.values()} == {st.SNAPSHOT_CREATING}
    assert snaps[boot].name == "snapshot for bfv-snap"
    casts = cloud.volume.wait_for("create_snapshot", count=2)
    assert {c["snapshot_id"] for c in casts} == {s.id for s in snaps.values()}
    # The guest keeps running: no task, nothing cast to the conductor.
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (vm_state, None)
    assert cloud.conductor.calls == []
    actions = cloud.request("GET", C + "/servers/%s/os-instance-actions" % uuid).json
    assert actions["instanceActions"][0]["action"] == "createImage"
    shown = cloud.request("GET", "/image/v2/images/" + image_id).json
    assert (shown["status"], shown["size"]) == ("active", 0)


def test_create_image_is_refused_in_a_bad_state_or_volume_status(cloud):  # noqa: F811
    uuid, boot, _other = _volume_backed(cloud, st.BUILDING)
    r = _create_image(cloud, uuid)
    assert r.status_code == 409 and "vm_state" in r.text, r.text
    db.instance_update(uuid, {"vm_state": st.ACTIVE})
    vdb.volume_update(boot, {"status": st.VOLUME_DETACHING})
    r = _create_image(cloud, uuid)
    assert r.status_code == 409 and "Invalid volume" in r.text, r.text
    assert sdb.snapshot_get_all(project_id="p1") == []
    assert [i for i in images_db.image_get_all(images_db.ImageQuery(all_projects=True))
            if i.id != IMAGE_ID] == []


def test_create_image_counts_the_snapshots_in_the_quota(cloud):  # noqa: F811
    uuid, _boot, _other = _volume_backed(cloud)
    vdb.set_volume_limits("p1", {"snapshots": 1})
    r = _create_image(cloud, uuid)
    assert r.status_code == 403 and "snapshots" in r.text, r.text
    assert sdb.snapshot_get_all(project_id="p1") == []
    assert cloud.volume.calls == []
    assert [i for i in images_db.image_get_all(images_db.ImageQuery(all_projects=True))
            if i.id != IMAGE_ID] == []


def _snapshot_image(cloud) -> tuple[str, dict]:  # noqa: F811
    """An image of a volume-backed server whose snapshots are available."""
    uuid, _boot, _other = _volume_backed(cloud)
    image_id = _create_image(cloud, uuid).json["image_id"]
    snaps = {}
    for snap in sdb.snapshot_get_all(project_id="p1"):
        sdb.snapshot_update(snap.id, {"status": st.SNAPSHOT_AVAILABLE})
        snaps[snap.volume_id] = snap.id
    cloud.conductor.calls.clear()
    return image_id, snaps


def test_a_server_from_the_image_gets_its_mappings(cloud):  # noqa: F811
    image_id, _snaps = _snapshot_image(cloud)
    mappings = _mappings(image_id)
    # What `openstack server create --image <it>` sends: imageRef alone.
    r = _create(cloud, [], image_ref=image_id, min_count=2, max_count=2)
    assert r.status_code == 202, r.text
    call = _cast(cloud)
    assert call["image"] is None and call["request_spec"].flavor.root_gb == 0
    assert call["request_spec"].image.id == IMAGE_ID    # the boot volume's image
    assert [(b.source_type, b.destination_type, b.snapshot_id, b.volume_size,
             b.boot_index, b.delete_on_termination, b.makes_volume)
            for b in call["block_device_mapping"]] == [
        ("snapshot", "volume", mappings[0]["snapshot_id"], 2, 0, True, True),
        ("snapshot", "volume", mappings[1]["snapshot_id"], 1, None, False, True)]
    shown = cloud.request("GET", C + "/servers/" + r.json["server"]["id"]).json["server"]
    assert shown["image"] == ""
    # The image boot disk a client may add is dropped, as Nova does.
    r = _create(cloud, [{"uuid": image_id, "boot_index": 0, "source_type": "image",
                         "destination_type": "local"}], image_ref=image_id)
    assert r.status_code == 202, r.text
    assert len(cloud.conductor.wait_for("build_instances", count=2)[1]
               ["block_device_mapping"]) == 2


def test_a_server_from_the_image_fits_the_volume_quota(cloud):  # noqa: F811
    image_id, _snaps = _snapshot_image(cloud)
    vdb.set_volume_limits("p1", {"volumes": 3})   # 2 in use, 2 wanted
    r = _create(cloud, [], image_ref=image_id)
    assert r.status_code == 400 and "volumes" in r.text, r.text
    assert cloud.conductor.calls == []


def test_an_image_whose_snapshot_is_gone_is_400_naming_imageref(cloud):  # noqa: F811
    image_id, snaps = _snapshot_image(cloud)
    for sid in snaps.values():
        sdb.snapshot_update(sid, {"status": st.SNAPSHOT_ERROR})
    r = _create(cloud, [], image_ref=image_id)
    assert r.status_code == 400 and "imageRef" in r.text and "error" in r.text, r.text
    # Another project does not find the snapshots.
    images_db.image_update(image_id, {"visibility": "public"})
    r = _create(cloud, [], who="other", image_ref=image_id)
    assert r.status_code == 400 and "could not be found" in r.text, r.text
    assert cloud.conductor.calls == []


def _snapshot_bdm(sid: str, **changes) -> dict:
    # `--block-device uuid=<snap>,source_type=snapshot,destination_type=volume,boot_index=0`
    bdm = {"uuid": sid, "source_type": "snapshot", "destination_type": "volume",
           "boot_index": "0"}
    bdm.update(changes)
    return bdm


def test_boot_from_a_snapshot_mapping(cloud):  # noqa: F811
    _image, snaps = _snapshot_image(cloud)
    boot_snap = next(s for s in sdb.snapshot_get_all(project_id="p1") if s.size_gb == 2)
    r = _create(cloud, [_snapshot_bdm(boot_snap.id, volume_size="3")])
    assert r.status_code == 202, r.text
    [bdm] = _cast(cloud)["block_device_mapping"]
    assert (bdm.source_type, bdm.snapshot_id, bdm.volume_size, bdm.boot_index,
            bdm.delete_on_termination) == ("snapshot", boot_snap.id, 3, 0, False)
    # The size defaults to the snapshot's.
    extra = next(s for s in snaps.values() if s != boot_snap.id)
    r = _create(cloud, [_snapshot_bdm(extra, boot_index=None)], image_ref=IMAGE_ID)
    assert r.status_code == 202, r.text
    bdm = cloud.conductor.wait_for("build_instances", count=2)[1]["block_device_mapping"][0]
    assert (bdm.snapshot_id, bdm.volume_size, bdm.boot_index) == (extra, 1, None)


def test_snapshot_mapping_refusals_name_the_field(cloud):  # noqa: F811
    _image, snaps = _snapshot_image(cloud)
    boot_snap = next(s for s in sdb.snapshot_get_all(project_id="p1") if s.size_gb == 2)
    extra = next(s for s in snaps.values() if s != boot_snap.id)

    def refused(bdms, field, text, who="member"):
        r = _create(cloud, bdms, who=who)
        assert r.status_code == 400, r.text
        assert "block_device_mapping_v2[0].%s" % field in r.text and text in r.text, r.text

    refused([_snapshot_bdm(boot_snap.id, volume_size=1)], "volume_size", "smaller")
    refused([_snapshot_bdm(boot_snap.id)], "uuid", "could not be found", who="other")
    refused([_snapshot_bdm(boot_snap.id, destination_type="local")], "destination_type",
            "volume")
    refused([_snapshot_bdm(extra)], "uuid", "not of a bootable volume")
    sdb.snapshot_update(boot_snap.id, {"status": st.SNAPSHOT_CREATING})
    refused([_snapshot_bdm(boot_snap.id)], "uuid", "must be available")
    assert cloud.conductor.calls == []


def test_conductors_below_1_13_refuse_snapshot_mappings_first(cloud):  # noqa: F811
    import falcon.testing

    from api.app import create_app
    image_id, _snaps = _snapshot_image(cloud)
    servers = len(db.instance_get_all())
    cloud.conf.set_override("conductor", "1.12", group="upgrade_levels")
    client = falcon.testing.TestClient(create_app(cloud.conf, cloud.transport))
    r = client.simulate_post(C + "/servers", headers=cloud.headers("member"), json={
        "server": {"name": "s", "flavorRef": "1", "imageRef": image_id,
                   "networks": "none"}})
    assert r.status_code == 409 and "upgrade" in r.text, r.text
    assert len(db.instance_get_all()) == servers and cloud.conductor.calls == []
    # A blank volume still goes through at 1.12.
    r = client.simulate_post(C + "/servers", headers=cloud.headers("member"), json={
        "server": {"name": "s", "flavorRef": "1", "imageRef": IMAGE_ID,
                   "networks": "none", "block_device_mapping_v2": [
                       {"source_type": "blank", "destination_type": "volume",
                        "volume_size": 1}]}})
    assert r.status_code == 202, r.text


def test_an_image_whose_snapshots_are_still_being_taken_boots(cloud):  # noqa: F811
    """The image is active before its snapshots (as Nova's): a server from
    it is accepted and its build waits for them (build_volumes)."""
    uuid, _boot, _other = _volume_backed(cloud)
    image_id = _create_image(cloud, uuid).json["image_id"]
    assert {s.status for s in sdb.snapshot_get_all(project_id="p1")} == \
        {st.SNAPSHOT_CREATING}
    cloud.conductor.calls.clear()
    r = _create(cloud, [], image_ref=image_id)
    assert r.status_code == 202, r.text
    assert [b.source_type for b in _cast(cloud)["block_device_mapping"]] == \
        ["snapshot", "snapshot"]

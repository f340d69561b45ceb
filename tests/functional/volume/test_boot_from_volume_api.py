"""``block_device_mapping_v2`` at server create: what the API accepts,
refuses (400 naming the field), records and casts to the conductor
(recording endpoints), and how server show lists the volumes."""

from __future__ import annotations

import pytest

from flotilla import states as st
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import IMAGE_ID, C, api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import _available, cloud  # noqa: F401


def _create(cloud, bdms, who="member", image_ref="", **extra):  # noqa: F811
    server = {"name": "bfv", "flavorRef": "1", "imageRef": image_ref, "networks": "none",
              "block_device_mapping_v2": bdms, **extra}
    return cloud.request("POST", C + "/servers", who, json={"server": server})


def _image_bdm(**changes) -> dict:
    # What `openstack server create --boot-from-volume 1 --image X` sends.
    bdm = {"uuid": IMAGE_ID, "boot_index": 0, "source_type": "image",
           "destination_type": "volume", "volume_size": 1, "delete_on_termination": False}
    bdm.update(changes)
    return bdm


def _cast(cloud) -> dict:  # noqa: F811
    return cloud.conductor.wait_for("build_instances")[0]


def test_boot_from_a_new_volume_as_the_cli_asks(cloud):  # noqa: F811
    r = _create(cloud, [_image_bdm()])
    assert r.status_code == 202, r.text
    uuid = r.json["server"]["id"]
    call = _cast(cloud)
    assert call["image"] is None
    [bdm] = call["block_device_mapping"]
    assert (bdm.source_type, bdm.destination_type, bdm.boot_index, bdm.image_id,
            bdm.volume_size, bdm.delete_on_termination) == \
        ("image", "volume", 0, IMAGE_ID, 1, False)
    assert call["request_spec"].flavor.root_gb == 0
    shown = cloud.request("GET", C + "/servers/" + uuid).json["server"]
    assert shown["image"] == ""


def test_delete_on_termination_defaults_to_false_as_nova(cloud):  # noqa: F811
    """Nova keeps a volume made from an image unless asked to delete it."""
    bdm = _image_bdm(boot_index="0", volume_size="1")   # the SDK sends strings
    del bdm["delete_on_termination"]
    assert _create(cloud, [bdm]).status_code == 202
    assert _cast(cloud)["block_device_mapping"][0].delete_on_termination is False


@pytest.mark.parametrize("change, field", [
    ({"source_type": "nope"}, "source_type"),
    ({"volume_size": None}, "volume_size"),
    ({"volume_size": 0}, "volume_size"),
    ({"volume_size": "x"}, "volume_size"),
    ({"source_type": "snapshot"}, "uuid"),     # no such snapshot
    ({"boot_index": "first"}, "boot_index"),
    ({"destination_type": "local", "boot_index": 1}, "boot_index"),
    ({"tag": "a/b"}, "tag"),
])
def test_bad_mappings_are_400_naming_the_field(cloud, change, field):  # noqa: F811
    r = _create(cloud, [_image_bdm(**change)])
    assert r.status_code == 400, r.text
    assert field in r.text
    assert cloud.conductor.calls == []


def test_volume_size_must_hold_the_image_and_fit_the_quota(cloud):  # noqa: F811
    from flotilla.db import images as images_db
    images_db.image_update(IMAGE_ID, {"min_disk": 2})
    r = _create(cloud, [_image_bdm()])
    assert r.status_code == 400 and "volume_size" in r.text and "2 GiB" in r.text, r.text
    vdb.set_volume_limits("p1", {"gigabytes": 2})
    r = _create(cloud, [_image_bdm(volume_size=3)])
    assert r.status_code == 400 and "volume_size" in r.text and "quota" in r.text, r.text
    r = _create(cloud, [_image_bdm(volume_size=2)], min_count=2, max_count=2)
    assert r.status_code == 400 and "gigabytes" in r.text, r.text
    assert cloud.conductor.calls == []


def _blank(**changes) -> dict:
    # What `--block-device source_type=blank,destination_type=volume,volume_size=2` sends.
    bdm = {"source_type": "blank", "destination_type": "volume", "volume_size": "2"}
    bdm.update(changes)
    return bdm


def test_blank_volumes_at_boot_for_each_server(cloud):  # noqa: F811
    r = _create(cloud, [_blank(delete_on_termination=True, tag="scratch"), _blank()],
                image_ref=IMAGE_ID, min_count=2, max_count=2)
    assert r.status_code == 202, r.text
    call = _cast(cloud)
    assert call["image"] is not None
    assert [(b.source_type, b.destination_type, b.boot_index, b.volume_size,
             b.delete_on_termination, b.tag, b.makes_volume)
            for b in call["block_device_mapping"]] == [
        ("blank", "volume", None, 2, True, "scratch", True),
        ("blank", "volume", None, 2, False, None, True)]


@pytest.mark.parametrize("change, field", [
    ({"destination_type": "local"}, "destination_type"),
    ({"uuid": IMAGE_ID}, "uuid"),
    ({"boot_index": 0}, "boot_index"),
    ({"volume_size": None}, "volume_size"),
    ({"volume_size": "-1"}, "volume_size"),
])
def test_bad_blank_mappings_are_400_naming_the_field(cloud, change, field):  # noqa: F811
    r = _create(cloud, [_blank(**change)], image_ref=IMAGE_ID)
    assert r.status_code == 400 and "[0].%s" % field in r.text, r.text
    assert cloud.conductor.calls == []


def test_blank_volumes_count_in_the_quota(cloud):  # noqa: F811
    vdb.set_volume_limits("p1", {"gigabytes": 3})
    r = _create(cloud, [_blank()], image_ref=IMAGE_ID, min_count=2, max_count=2)
    assert r.status_code == 400 and "gigabytes" in r.text, r.text
    assert cloud.conductor.calls == []


def test_existing_volumes_at_boot(cloud):  # noqa: F811
    boot, extra = _available(cloud), _available(cloud)
    vdb.volume_update(boot, {"bootable": True})
    r = _create(cloud, [
        {"uuid": boot, "boot_index": 0, "source_type": "volume",
         "destination_type": "volume"},
        {"uuid": extra, "boot_index": -1, "source_type": "volume",
         "destination_type": "volume", "delete_on_termination": True}])
    assert r.status_code == 202, r.text
    first, second = _cast(cloud)["block_device_mapping"]
    assert (first.volume_id, first.boot_index, first.delete_on_termination) == \
        (boot, 0, False)
    assert (second.volume_id, second.boot_index, second.delete_on_termination) == \
        (extra, None, True)


def test_existing_volume_refusals(cloud):  # noqa: F811
    vid, theirs = _available(cloud), _available(cloud, who="other")

    def refused(bdm, text, **extra):
        r = _create(cloud, [bdm], **extra)
        assert r.status_code == 400, r.text
        assert "block_device_mapping_v2[0].uuid" in r.text and text in r.text, r.text

    as_boot = {"uuid": vid, "boot_index": 0, "source_type": "volume",
               "destination_type": "volume"}
    refused(as_boot, "not bootable")
    refused(dict(as_boot, uuid=theirs), "could not be found")
    vdb.volume_update(vid, {"bootable": True})
    refused(as_boot, "multiple", min_count=2, max_count=2)
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    refused(as_boot, "must be available")
    vdb.volume_update(vid, {"status": st.VOLUME_AVAILABLE})
    extra = {"uuid": vid, "source_type": "volume", "destination_type": "volume"}
    r = _create(cloud, [extra])   # an image is still needed to boot
    assert r.status_code == 400 and "imageRef" in r.text, r.text
    assert cloud.conductor.calls == []


def test_image_boot_as_before(cloud):  # noqa: F811
    r = _create(cloud, [{"uuid": IMAGE_ID, "boot_index": 0, "source_type": "image",
                         "destination_type": "local", "delete_on_termination": True}],
                image_ref=IMAGE_ID)
    assert r.status_code == 202, r.text
    call = _cast(cloud)
    assert call["image"] is not None and call.get("block_device_mapping") in (None, [])


def test_show_lists_volumes_with_delete_on_termination_from_2_3(cloud):  # noqa: F811
    vid = _available(cloud)
    uuid = cloud.create_server(name="web")
    vdb.attachment_create(vid, uuid, None, delete_on_termination=True, boot_index=0)
    shown = cloud.request("GET", C + "/servers/" + uuid, version="2.3").json["server"]
    assert shown["os-extended-volumes:volumes_attached"] == [
        {"id": vid, "delete_on_termination": True}]
    listed = cloud.request("GET", C + "/servers/%s/os-volume_attachments" % uuid,
                           version="2.89").json["volumeAttachments"]
    assert [(a["volumeId"], a["delete_on_termination"]) for a in listed] == [(vid, True)]


def test_a_volume_backed_server_refuses_what_needs_a_local_root_disk(
        cloud):  # noqa: F811
    from flotilla.db import api as db
    vid = _available(cloud)
    uuid = cloud.create_server(name="web")
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None, "host": "host1",
                              "image_ref": ""})
    att = vdb.attachment_create(vid, uuid, "host1", boot_index=0)
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vda"})
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    r = cloud.request("DELETE", C + "/servers/%s/os-volume_attachments/%s" % (uuid, vid))
    assert r.status_code == 400 and "root device" in r.text, r.text
    # A rebuild re-images the root volume (2.93); below, another image than
    # the volume's is Nova's 400 (tests/functional/volume/test_rebuild_volume_backed_api.py).
    r = cloud.request("POST", C + "/servers/%s/action" % uuid,
                      json={"rebuild": {"imageRef": IMAGE_ID}})
    assert r.status_code == 400 and "different image" in r.text, r.text


def test_an_older_conductor_is_refused_before_anything_is_written(cloud):  # noqa: F811
    import falcon.testing

    from api.app import create_app
    from flotilla.db import api as db
    cloud.conf.set_override("conductor", "1.7", group="upgrade_levels")
    client = falcon.testing.TestClient(create_app(cloud.conf, cloud.transport))
    r = client.simulate_post(C + "/servers", headers=cloud.headers("member"), json={
        "server": {"name": "bfv", "flavorRef": "1", "imageRef": "", "networks": "none",
                   "block_device_mapping_v2": [_image_bdm()]}})
    assert r.status_code == 409 and "upgrade" in r.text, r.text
    assert db.instance_get_all() == [] and cloud.conductor.calls == []
    # A blank volume needs 1.12; at 1.11 an image volume still goes through.
    cloud.conf.set_override("conductor", "1.11", group="upgrade_levels")
    client = falcon.testing.TestClient(create_app(cloud.conf, cloud.transport))
    r = client.simulate_post(C + "/servers", headers=cloud.headers("member"), json={
        "server": {"name": "bfv", "flavorRef": "1", "imageRef": "", "networks": "none",
                   "block_device_mapping_v2": [_image_bdm(), _blank()]}})
    assert r.status_code == 409 and "upgrade" in r.text, r.text
    assert db.instance_get_all() == [] and cloud.conductor.calls == []
    r = client.simulate_post(C + "/servers", headers=cloud.headers("member"), json={
        "server": {"name": "bfv", "flavorRef": "1", "imageRef": "", "networks": "none",
                   "block_device_mapping_v2": [_image_bdm()]}})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("body, code, text", [
    ({"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}, 400,
     "Backup is not supported for volume-backed instances"),
    ({"rebuild": {"imageRef": IMAGE_ID}}, 409, "booted from a volume"),
], ids=lambda value: next(iter(value)) if isinstance(value, dict) else str(value))
def test_actions_that_need_a_local_root_are_refused(cloud, body, code, text):  # noqa: F811
    """A rebuild replaces a local root disk (409, not supported yet); a
    backup of a volume-backed server is Nova's 400."""
    from flotilla.db import api as db
    r = _create(cloud, [_image_bdm()])
    uuid = r.json["server"]["id"]
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None, "host": "host1"})
    r = cloud.request("POST", C + "/servers/%s/action" % uuid, "admin", json=body)
    assert r.status_code == code and text in r.text, r.text


@pytest.mark.parametrize("body", [
    {"os-migrateLive": {"host": None, "block_migration": "auto"}},
    {"evacuate": {}},
    {"resize": {"flavorRef": "2"}},
    {"migrate": None},
], ids=lambda body: next(iter(body)))
def test_live_migration_and_evacuation_are_not_refused_for_the_root_volume(
        cloud, body):  # noqa: F811
    """They keep the volumes (the refusal, if any, is for another reason);
    so do a resize and a cold migration."""
    from flotilla.db import api as db
    r = _create(cloud, [_image_bdm()])
    uuid = r.json["server"]["id"]
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None, "host": "host1"})
    r = cloud.request("POST", C + "/servers/%s/action" % uuid, "admin", json=body)
    assert "booted from a volume" not in r.text, r.text

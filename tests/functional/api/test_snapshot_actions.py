"""createImage, createBackup and rebuild at the API: what is checked, what
is created and what reaches the conductor (a recording endpoint)."""

from __future__ import annotations

import pytest

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from tests.functional.api.fixtures import IMAGE_ID, C


def _server(api_cloud, vm_state=st.ACTIVE, who="member") -> str:
    uuid = api_cloud.create_server(name="web", who=who)
    db.instance_update(uuid, {"vm_state": vm_state, "task_state": None, "host": "host1"})
    return uuid


def _action(cloud, uuid: str, body: dict, who: str = "member", version: str | None = None):
    return cloud.request("POST", C + "/servers/%s/action" % uuid, who, version, json=body)


def _images_of(project: str) -> list:
    return [i for i in images_db.image_get_all(images_db.ImageQuery(all_projects=True,
                                                                    limit=1000))
            if i.owner == project]


@pytest.mark.parametrize("vm_state", [st.ACTIVE, st.STOPPED, st.PAUSED, st.SUSPENDED])
def test_create_image_makes_a_queued_image_and_casts(api_cloud, vm_state):
    uuid = _server(api_cloud, vm_state)
    r = _action(api_cloud, uuid, {"createImage": {"name": "snap", "metadata": {"k": "v"}}},
                version="2.45")
    assert r.status_code == 202, r.text
    image_id = r.json["image_id"]
    assert r.headers["Location"].endswith("/image/v2/images/%s" % image_id)
    image = images_db.image_get(image_id)
    assert (image.status, image.owner, image.visibility) == ("queued", "p1", "private")
    assert (image.disk_format, image.container_format, image.min_disk) == ("qcow2", "bare", 1)
    props = image.properties
    assert props["image_type"] == "snapshot" and props["instance_uuid"] == uuid
    assert props["base_image_ref"] == IMAGE_ID and props["k"] == "v" and props["user_id"]
    assert "backup_type" not in props
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (vm_state, st.IMAGE_SNAPSHOT)
    assert inst.task_deadline is not None
    cast = api_cloud.conductor.wait_for("snapshot_instance")[0]
    assert cast["image_id"] == image_id and cast["rotation"] is None
    actions = api_cloud.request("GET", C + "/servers/%s/os-instance-actions" % uuid).json
    assert actions["instanceActions"][0]["action"] == "createImage"
    # The image is there at once, as the clients' --wait expects.
    shown = api_cloud.request("GET", "/image/v2/images/" + image_id)
    assert shown.status_code == 200 and shown.json["status"] == "queued"


def test_below_2_45_the_image_is_in_location_only(api_cloud):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"createImage": {"name": "snap"}}, version="2.44")
    assert r.status_code == 202 and not r.text
    assert "/image/v2/images/" in r.headers["Location"]


def test_admin_snapshot_belongs_to_the_servers_project(api_cloud):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"createImage": {"name": "snap"}}, who="admin",
                version="2.45")
    assert r.status_code == 202
    assert images_db.image_get(r.json["image_id"]).owner == "p1"


def test_policy_is_the_servers_project(api_cloud):
    uuid = _server(api_cloud)
    body = {"createImage": {"name": "snap"}}
    assert _action(api_cloud, uuid, body, who="reader").status_code == 403
    assert _action(api_cloud, uuid, body, who="other").status_code == 404
    assert [i.id for i in _images_of("p1")] == [IMAGE_ID]


@pytest.mark.parametrize("vm_state, task_state", [
    (st.BUILDING, st.SCHEDULING), (st.ERROR, None), (st.ACTIVE, st.REBOOTING),
    (st.ACTIVE, st.IMAGE_UPLOADING)])
def test_create_image_in_a_state_that_does_not_allow_it_is_409(api_cloud, vm_state,
                                                               task_state):
    uuid = _server(api_cloud)
    db.instance_update(uuid, {"vm_state": vm_state, "task_state": task_state})
    for body in ({"createImage": {"name": "s"}},
                 {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}):
        r = _action(api_cloud, uuid, body)
        assert r.status_code == 409, r.text
    assert len(_images_of("p1")) == 1
    assert not [c for c in api_cloud.conductor.calls if c[0] == "snapshot_instance"]


@pytest.mark.parametrize("body, field", [
    ({"createImage": {"name": "x" * 256}}, "createImage.name"),
    ({"createImage": {}}, "createImage"),
    ({"createImage": {"name": "ok", "metadata": {"k": "v" * 256}}}, "createImage.metadata.k"),
    ({"createImage": {"name": "ok", "metadata": {"_protected": "yes"}}},
     "createImage.metadata"),
    ({"createBackup": {"name": "b", "backup_type": "d", "rotation": 1,
                       "metadata": {"_md5": "0"}}}, "createBackup.metadata"),
    ({"createImage": {"name": "ok", "metadata": {str(i): "v" for i in range(130)}}},
     "createImage.metadata"),
    ({"createBackup": {"name": "b", "backup_type": "daily", "rotation": -1}},
     "createBackup.rotation"),
    ({"createBackup": {"name": "b", "backup_type": "daily", "rotation": "two"}},
     "createBackup.rotation"),
    ({"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1.5}},
     "createBackup.rotation"),
    ({"createBackup": {"name": "b", "backup_type": "daily", "rotation": "-3"}},
     "createBackup.rotation"),
    ({"createBackup": {"name": "b", "backup_type": "daily"}}, "createBackup"),
    ({"createBackup": {"name": "x" * 256, "backup_type": "daily", "rotation": 1}},
     "createBackup.name"),
])
def test_bad_input_is_400_naming_the_field(api_cloud, body, field):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, body)
    assert r.status_code == 400, r.text
    assert "field/attribute %s" % field in r.json["badRequest"]["message"], r.text
    assert db.instance_get(uuid).task_state is None
    assert len(_images_of("p1")) == 1


def test_metadata_over_the_image_property_quota_is_400(api_cloud):
    api_cloud.conf.set_override("image_property_quota", 6, group="image")
    uuid = _server(api_cloud)
    # Flotilla's own four properties leave room for two of the user's.
    ok = _action(api_cloud, uuid, {"createImage": {"name": "s", "metadata": {"a": "1",
                                                                           "b": "2"}}})
    assert ok.status_code == 202
    db.instance_update(uuid, {"task_state": None})
    r = _action(api_cloud, uuid, {"createImage": {"name": "s", "metadata": {
        "a": "1", "b": "2", "c": "3"}}})
    assert r.status_code == 400
    message = r.json["badRequest"]["message"]
    assert "createImage.metadata" in message and "property quota is 6" in message


def test_the_image_quota_counts_snapshots(api_cloud):
    api_cloud.conf.set_override("image_count_total", 2, group="image")
    uuid = _server(api_cloud)
    assert _action(api_cloud, uuid, {"createImage": {"name": "one"}}).status_code == 202
    db.instance_update(uuid, {"task_state": None})
    r = _action(api_cloud, uuid, {"createBackup": {"name": "b", "backup_type": "daily",
                                                   "rotation": 1}})
    assert r.status_code == 403 and "overLimit" in r.json
    assert db.instance_get(uuid).task_state is None
    # The image API counts the snapshot too.
    r = api_cloud.request("POST", "/image/v2/images", json={
        "name": "upload", "disk_format": "qcow2", "container_format": "bare"})
    assert r.status_code == 413


def test_backup_records_its_type_and_rotation(api_cloud):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"createBackup": {"name": "b", "backup_type": "daily",
                                                   "rotation": "2"}}, version="2.45")
    assert r.status_code == 202
    image = images_db.image_get(r.json["image_id"])
    assert image.properties["image_type"] == "backup"
    assert image.properties["backup_type"] == "daily"
    cast = api_cloud.conductor.wait_for("snapshot_instance")[0]
    assert (cast["backup_type"], cast["rotation"]) == ("daily", 2)
    actions = api_cloud.request("GET", C + "/servers/%s/os-instance-actions" % uuid).json
    assert actions["instanceActions"][0]["action"] == "createBackup"


def test_a_refused_cast_removes_the_image_and_restores_the_task(api_cloud):
    uuid = _server(api_cloud)
    for server in api_cloud._servers:
        server.stop()
        server.wait(timeout=5)
    api_cloud._servers.clear()
    r = _action(api_cloud, uuid, {"createImage": {"name": "s"}})
    assert r.status_code == 503
    assert db.instance_get(uuid).task_state is None
    assert len(_images_of("p1")) == 1


# --- rebuild -----------------------------------------------------------------------

def _image(owner="p1", visibility="private", size=1024, status="active", min_disk=0,
           min_ram=0) -> str:
    import uuid as uuidlib
    image_id = str(uuidlib.uuid4())
    images_db.image_create({"id": image_id, "name": "img", "owner": owner,
                            "status": status, "disk_format": "qcow2",
                            "container_format": "bare", "visibility": visibility,
                            "size": size, "checksum": "1" * 64, "min_disk": min_disk,
                            "min_ram": min_ram})
    return image_id


@pytest.mark.parametrize("vm_state", [st.ACTIVE, st.STOPPED, st.ERROR])
def test_rebuild_shows_rebuild_and_casts(api_cloud, vm_state):
    uuid = _server(api_cloud, vm_state)
    image_id = _image()
    r = _action(api_cloud, uuid, {"rebuild": {"imageRef": image_id, "name": "new",
                                              "metadata": {"a": "b"}, "adminPass": "x",
                                              "preserve_ephemeral": False}})
    assert r.status_code == 202, r.text
    server = r.json["server"]
    assert server["status"] == "REBUILD" and server["name"] == "new"
    assert server["metadata"] == {"a": "b"} and server["adminPass"] == "x"
    shown = api_cloud.request("GET", C + "/servers/" + uuid).json["server"]
    assert (shown["status"], shown["OS-EXT-STS:task_state"]) == ("REBUILD", st.REBUILDING)
    listed = api_cloud.request("GET", C + "/servers/detail?status=REBUILD").json["servers"]
    assert [s["id"] for s in listed] == [uuid]
    cast = api_cloud.conductor.wait_for("rebuild_instance")[0]
    assert (cast["instance_uuid"], cast["image_id"]) == (uuid, image_id)


def test_rebuild_answers_in_novas_shapes(api_cloud):
    """Below 2.75 rebuild answers the short form (with the key pair from
    2.54, the user data from 2.57), from 2.75 the full server; list detail
    never names server groups."""
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"rebuild": {"imageRef": _image(), "user_data": "aGk="}},
                version="2.57")
    assert r.status_code == 202, r.text
    server = r.json["server"]
    assert server["user_data"] == "aGk=" and "key_name" in server and server["adminPass"]
    assert "OS-EXT-STS:vm_state" not in server and "config_drive" not in server
    assert db.instance_get(uuid).user_data == "aGk="
    db.instance_update(uuid, {"task_state": None})
    new_image = _image()
    r = _action(api_cloud, uuid, {"rebuild": {"imageRef": new_image}}, "admin", "2.75")
    assert r.status_code == 202, r.text
    assert r.json["server"]["OS-EXT-STS:task_state"] == st.REBUILDING
    assert r.json["server"]["image"]["id"] == new_image
    assert "OS-EXT-SRV-ATTR:user_data" not in r.json["server"]
    assert "OS-EXT-SRV-ATTR:host" in r.json["server"]
    listed = api_cloud.request("GET", C + "/servers/detail", version="2.71").json["servers"]
    assert listed and all("server_groups" not in s for s in listed)
    shown = api_cloud.request("GET", C + "/servers/" + uuid, version="2.71").json["server"]
    assert shown["server_groups"] == []


@pytest.mark.parametrize("image, message", [
    (dict(owner="p2"), "Can not find requested image"),
    (dict(status="queued"), "is not active"),
    (dict(size=2 * 1024 ** 3), "disk is too small"),
    (dict(min_disk=5), "disk is too small"),
    (dict(min_ram=1024), "memory is too small"),
])
def test_rebuild_to_an_image_it_cannot_use_is_400(api_cloud, image, message):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"rebuild": {"imageRef": _image(**image)}})
    assert r.status_code == 400 and message in r.text, r.text
    assert db.instance_get(uuid).task_state is None


def test_rebuild_bad_input_state_and_lock(api_cloud):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"rebuild": {"imageRef": "not-a-uuid"}})
    assert r.status_code == 400 and "rebuild.imageRef" in r.text
    r = _action(api_cloud, uuid, {"rebuild": {"imageRef": IMAGE_ID, "user_data": "x"}})
    assert r.status_code == 400 and "user_data" in r.text
    r = _action(api_cloud, uuid, {"rebuild": {"imageRef": IMAGE_ID, "description": "d"}},
                version="2.18")
    assert r.status_code == 400 and "description" in r.text
    db.instance_update(uuid, {"vm_state": st.PAUSED})
    assert _action(api_cloud, uuid, {"rebuild": {"imageRef": IMAGE_ID}}).status_code == 409
    db.instance_update(uuid, {"vm_state": st.ACTIVE})
    _action(api_cloud, uuid, {"lock": None})
    assert _action(api_cloud, uuid, {"rebuild": {"imageRef": IMAGE_ID}}).status_code == 409
    assert db.instance_get(uuid).task_state is None
    assert not [c for c in api_cloud.conductor.calls if c[0] == "rebuild_instance"]

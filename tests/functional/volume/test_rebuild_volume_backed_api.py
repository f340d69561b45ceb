"""``rebuild`` of a server booted from a volume at the API (recording
conductor): what each microversion accepts, refuses and casts
(api.compute.rebuild_volume)."""

from __future__ import annotations

import pytest

from compute.rpcapi import ComputeAPI
from conductor.rpcapi import ConductorAPI
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import IMAGE_ID, C, api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import V, _available, cloud  # noqa: F401
from volume.rpcapi import VolumeAPI

OTHER = "3c4b0a52-2f1e-4a8e-9d59-0d5f3f1f0a21"
GIB = 1024 ** 3


def _volume_backed(cloud, size_gb: int = 1) -> tuple[str, str]:  # noqa: F811
    """An active server on host1 booted from an in-use volume made from
    IMAGE_ID; (server, volume)."""
    vid = _available(cloud, size=size_gb)
    vdb.volume_update(vid, {"bootable": True, "image_id": IMAGE_ID,
                            "image_metadata": {"image_id": IMAGE_ID, "min_ram": "0"}})
    uuid = cloud.create_server(name="bfv")
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None, "host": "host1",
                              "image_ref": ""})
    att = vdb.attachment_create(vid, uuid, "host1", boot_index=0)
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vda",
                                     "connection_info": {"volume_id": vid}})
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    return uuid, vid


def _image(image_id: str = OTHER, **extra) -> str:
    images_db.image_create({"id": image_id, "name": "other", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "checksum": "0" * 64, "size": 1024,
                            "owner": "p1", **extra})
    return image_id


def _rebuilds(cloud) -> list:  # noqa: F811
    return [c for c in cloud.conductor.calls if c[0] == "rebuild_instance"]


def _rebuild(cloud, uuid, image_id, version="2.93"):  # noqa: F811
    return cloud.request("POST", C + "/servers/%s/action" % uuid, version=version,
                         json={"rebuild": {"imageRef": image_id}})


def test_2_93_reimages_the_root_volume(cloud):  # noqa: F811
    uuid, vid = _volume_backed(cloud)
    r = _rebuild(cloud, uuid, _image())
    assert r.status_code == 202, r.text
    server = r.json["server"]
    assert (server["status"], server["image"]) == ("REBUILD", "")
    [call] = cloud.conductor.wait_for("rebuild_instance")
    assert (call["instance_uuid"], call["image_id"], call["volume_backed"],
            call["reimage_boot_volume"]) == (uuid, OTHER, True, True)
    inst = db.instance_get(uuid)
    assert (inst.task_state, inst.image_ref) == (st.REBUILDING, "")


def test_below_2_93_a_different_image_is_refused_as_nova(cloud):  # noqa: F811
    uuid, _vid = _volume_backed(cloud)
    r = _rebuild(cloud, uuid, _image(), version="2.92")
    assert r.status_code == 400, r.text
    assert "imageRef" in r.text and \
        "Unable to rebuild with a different image for a volume-backed server" in r.text
    assert db.instance_get(uuid).task_state is None
    assert _rebuilds(cloud) == []


def test_below_2_93_the_same_image_restarts_the_guest_without_reimage(cloud):  # noqa: F811
    uuid, _vid = _volume_backed(cloud)
    r = _rebuild(cloud, uuid, IMAGE_ID, version="2.92")
    assert r.status_code == 202, r.text
    [call] = cloud.conductor.wait_for("rebuild_instance")
    assert (call["volume_backed"], call["reimage_boot_volume"]) == (True, False)


@pytest.mark.parametrize("extra, text", [
    ({"size": 2 * GIB}, "larger than the server's root volume"),
    ({"min_disk": 2}, "Volume is smaller than the minimum size"),
])
def test_an_image_that_does_not_fit_the_volume_is_400(cloud, extra, text):  # noqa: F811
    uuid, _vid = _volume_backed(cloud)
    r = _rebuild(cloud, uuid, _image(**extra))
    assert r.status_code == 400 and "imageRef" in r.text and text in r.text, r.text
    assert db.instance_get(uuid).task_state is None
    assert _rebuilds(cloud) == []


def test_an_unknown_or_inactive_image_is_400(cloud):  # noqa: F811
    uuid, _vid = _volume_backed(cloud)
    r = _rebuild(cloud, uuid, "0b8f8a7e-1111-4a8e-9d59-0d5f3f1f0a21")
    assert r.status_code == 400 and "image" in r.text.lower(), r.text
    r = _rebuild(cloud, uuid, _image(status="queued"))
    assert r.status_code == 400 and "not active" in r.text, r.text
    assert _rebuilds(cloud) == []


@pytest.mark.parametrize("service, text", [
    ("volume", "volume services are capped below RPC 1.6"),
    ("compute", "compute agents are capped below RPC 1.14"),
    ("conductor", "conductors are capped below RPC 1.14"),
])
def test_capped_services_are_409_with_the_reason(cloud, monkeypatch, service,  # noqa: F811
                                                 text):
    api = {"volume": VolumeAPI, "compute": ComputeAPI, "conductor": ConductorAPI}[service]
    name = "can_reimage" if service == "volume" else "can_rebuild_volume_backed"
    monkeypatch.setattr(api, name, lambda self: False)
    uuid, vid = _volume_backed(cloud)
    r = _rebuild(cloud, uuid, _image())
    assert r.status_code == 409 and text in r.text, r.text
    assert db.instance_get(uuid).task_state is None
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE
    assert _rebuilds(cloud) == []


def test_the_caps_are_the_rpc_versions(cloud):  # noqa: F811
    assert not VolumeAPI(cloud.transport, version_cap="1.5").can_reimage()
    assert VolumeAPI(cloud.transport, version_cap="1.6").can_reimage()
    assert not ComputeAPI(cloud.transport, version_cap="1.13").can_rebuild_volume_backed()
    assert ComputeAPI(cloud.transport, version_cap="1.14").can_rebuild_volume_backed()
    assert not ConductorAPI(cloud.transport,
                            version_cap="1.13").can_rebuild_volume_backed()


def test_a_root_volume_not_in_use_or_a_locked_server_is_409(cloud):  # noqa: F811
    uuid, vid = _volume_backed(cloud)
    vdb.volume_update(vid, {"status": st.VOLUME_EXTENDING})
    r = _rebuild(cloud, uuid, _image())
    assert r.status_code == 409 and "extending" in r.text, r.text
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    db.instance_update(uuid, {"task_state": st.POWERING_OFF})
    r = _rebuild(cloud, uuid, OTHER)
    assert r.status_code == 409 and "task_state" in r.text, r.text
    db.instance_update(uuid, {"task_state": None, "locked": True, "locked_by": "admin"})
    r = _rebuild(cloud, uuid, OTHER)
    assert r.status_code == 409 and "locked" in r.text.lower(), r.text
    assert _rebuilds(cloud) == []


def test_a_vanished_root_volume_is_409_not_500(cloud, monkeypatch):  # noqa: F811
    uuid, vid = _volume_backed(cloud)
    real = vdb.volume_get

    def gone(volume_id, *a, **k):
        if volume_id == vid:
            raise vdb.VolumeNotFound(volume_id=vid)
        return real(volume_id, *a, **k)

    monkeypatch.setattr(vdb, "volume_get", gone)
    r = _rebuild(cloud, uuid, _image())
    assert r.status_code == 409, r.text
    assert "root volume %s is gone" % vid in r.text
    assert _rebuilds(cloud) == []


def test_2_93_refuses_a_read_only_root_volume(cloud):  # noqa: F811
    uuid, vid = _volume_backed(cloud)
    vdb.volume_update(vid, {"readonly": True})
    r = _rebuild(cloud, uuid, _image())
    assert r.status_code == 409, r.text
    assert "volume is read-only" in r.text
    assert db.instance_get(uuid).task_state is None and _rebuilds(cloud) == []


def test_image_metadata_is_not_changed_during_a_reimage(cloud):  # noqa: F811
    """export_root sets the volume's image metadata at the re-image's end:
    a change meanwhile is refused, not silently overwritten."""
    _uuid, vid = _volume_backed(cloud)
    vdb.volume_update(vid, {"status": st.VOLUME_DOWNLOADING})
    r = cloud.request("POST", V + "/volumes/%s/action" % vid,
                      json={"os-set_image_metadata": {"metadata": {"k": "v"}}},
                      headers={"OpenStack-API-Version": "volume 3.71"})
    assert r.status_code == 400 and "downloading" in r.text, r.text
    assert "k" not in (vdb.volume_get(vid).image_metadata or {})


def test_a_root_volume_a_failed_reimage_left_in_error_may_be_reimaged(cloud):  # noqa: F811
    uuid, vid = _volume_backed(cloud)
    vdb.volume_update(vid, {"status": st.VOLUME_ERROR,
                            "status_reason": "re-image from image x failed: died"})
    db.instance_update(uuid, {"vm_state": st.ERROR})
    r = _rebuild(cloud, uuid, IMAGE_ID, version="2.92")
    assert r.status_code == 409 and "is error" in r.text, r.text
    r = _rebuild(cloud, uuid, _image())
    assert r.status_code == 202, r.text
    [call] = cloud.conductor.wait_for("rebuild_instance")
    assert call["reimage_boot_volume"] is True


def test_a_root_volume_in_error_for_another_reason_is_409(cloud):  # noqa: F811
    uuid, vid = _volume_backed(cloud)
    vdb.volume_update(vid, {"status": st.VOLUME_ERROR, "status_reason": None})
    r = _rebuild(cloud, uuid, _image())
    assert r.status_code == 409 and "is error" in r.text, r.text
    assert _rebuilds(cloud) == []

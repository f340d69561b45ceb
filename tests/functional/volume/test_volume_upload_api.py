"""``os-volume_upload_image`` (``openstack image create --volume``) at the
Block Storage API, with the real volume service behind it: what is checked
(400 naming the field, 404, 400 for a status as Cinder, 409 below RPC 1.5),
what is recorded (a queued image of the volume's project carrying its image
metadata, the volume uploading) and what the volume service makes of it (the
image active holding the volume's bytes, raw or qcow2, the volume back)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import falcon.testing
import pytest

from api.app import create_app
from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import images as images_db
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import IMAGE_ID, api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import (
    V,
    _available,
    _create,
    _server,
    cloud,  # noqa: F401
)
from tests.functional.volume.test_volume_clone_backend import UNIT, SizedFileBackend
from volume.manager import VolumeManager
from volume.rpcapi import VolumeAPI

UPLOAD = "os-volume_upload_image"
CONTENT = b"FLOTILLA-UPLOAD-" * 4096       # 64 KiB at the volume's start


class DownloadBackend(SizedFileBackend):
    """Files in a directory, with the download stream the upload reads."""

    def download(self, volume_id: str, chunk_size: int = 1 << 20):
        path = self.path(volume_id)
        if path is None:
            raise FileNotFoundError(volume_id)
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def volume_ids(self) -> list[str]:
        return sorted(n for n in os.listdir(self.directory) if not n.startswith("snapshot-"))


class CopyDaemon:
    """The storage daemon's point-in-time copy, as a plain file copy (the
    real one: test_volume_upload_backend.py)."""

    def __init__(self) -> None:
        self.backups: list[str] = []

    def backup(self, volume_id: str, source_path: str, target_path: str) -> None:
        self.backups.append(volume_id)
        shutil.copyfile(source_path, target_path)


@pytest.fixture
def stack(cloud, tmp_path):  # noqa: F811
    cloud.conf.set_override("store_path", str(tmp_path / "images"), group="image")
    cloud.conf.set_override("run_path", str(tmp_path / "run"), group="volume")
    (tmp_path / "pool").mkdir()
    cloud.manager = VolumeManager(cloud.conf, host="vol1",
                                  backend=DownloadBackend(str(tmp_path / "pool")),
                                  daemon=CopyDaemon())
    return cloud


def _volume(stack, **spec) -> str:
    """An available volume of p1 on vol1 whose file starts with CONTENT."""
    vid = _available(stack, **spec)
    path = stack.manager.backend.create(vid, vdb.volume_get(vid).size_gb)
    with open(path, "r+b") as f:
        f.write(CONTENT)
    vdb.volume_update(vid, {"path": path})
    return vid


def _upload(stack, vid: str, who: str = "member", version: str | None = None, **args):
    body = {"image_name": "from-volume", **args}
    headers = {"OpenStack-API-Version": "volume " + version} if version else {}
    return stack.request("POST", V + "/volumes/%s/action" % vid, who,
                         json={UPLOAD: body}, headers=headers)


def _run_volume_service(stack, vid: str) -> dict:
    """Deliver the recorded cast to the real volume service; its arguments."""
    stack.uploads_run = getattr(stack, "uploads_run", 0) + 1
    call = stack.volume.wait_for("upload_to_image", count=stack.uploads_run)[-1]
    assert call["volume_id"] == vid
    stack.manager.upload_to_image(None, **call)
    return call


def _image_bytes(image) -> bytes:
    with open(image.location, "rb") as f:
        return f.read()


def test_an_available_volume_becomes_an_active_raw_image_with_its_bytes(stack):
    vid = _volume(stack, size=2)
    r = _upload(stack, vid)
    assert r.status_code == 202, r.text
    answer = r.json[UPLOAD]
    assert (answer["id"], answer["status"], answer["size"], answer["disk_format"],
            answer["container_format"], answer["image_name"]) == \
        (vid, "uploading", 2, "raw", "bare", "from-volume")
    assert answer["volume_type"]["name"] == "__DEFAULT__" and answer["updated_at"]
    image = images_db.image_get(answer["image_id"])
    assert (image.status, image.owner, image.visibility, image.disk_format) == \
        ("queued", "p1", "private", "raw")
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_UPLOADING and row.status_deadline is not None

    _run_volume_service(stack, vid)
    image = images_db.image_get(answer["image_id"])
    data = _image_bytes(image)
    assert image.status == "active" and image.size == len(data) == 2 * UNIT
    assert data[:len(CONTENT)] == CONTENT and data[len(CONTENT):] == \
        b"\0" * (2 * UNIT - len(CONTENT))
    assert image.checksum == hashlib.sha256(data).hexdigest()
    assert (image.properties or {}).get("_volume_upload") is None
    shown = stack.request("GET", "/image/v2/images/" + image.id).json
    assert (shown["status"], shown["os_hash_value"], shown["checksum"]) == \
        ("active", image.checksum, hashlib.md5(data).hexdigest())
    row = vdb.volume_get(vid)
    assert (row.status, row.status_deadline, row.status_reason) == \
        (st.VOLUME_AVAILABLE, None, None)
    assert stack.manager.daemon.backups == []   # nothing writes to it: read as it is


def test_an_in_use_volume_needs_force_and_is_read_through_a_copy(stack):
    vid = _volume(stack)
    vdb.attachment_create(vid, _server(stack), "host1")
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    r = _upload(stack, vid)
    assert r.status_code == 400 and "must be available," in r.text, r.text
    assert "in-use" in r.text and images_db.image_count("p1") == 1   # IMAGE_ID only
    for force in (False, "false"):
        assert _upload(stack, vid, force=force).status_code == 400
    r = _upload(stack, vid, force="True")
    assert r.status_code == 202, r.text
    _run_volume_service(stack, vid)
    image = images_db.image_get(r.json[UPLOAD]["image_id"])
    assert image.status == "active" and _image_bytes(image)[:len(CONTENT)] == CONTENT
    assert stack.manager.daemon.backups == [vid]
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE
    # The temporary copy went.
    assert sorted(os.listdir(stack.manager.backend.directory)) == [vid]


def test_qcow2_is_converted_and_holds_the_same_disk(stack, tmp_path):
    vid = _volume(stack)
    r = _upload(stack, vid, disk_format="qcow2")
    assert r.status_code == 202 and r.json[UPLOAD]["disk_format"] == "qcow2", r.text
    _run_volume_service(stack, vid)
    image = images_db.image_get(r.json[UPLOAD]["image_id"])
    assert (image.status, image.disk_format, image.virtual_size) == \
        ("active", "qcow2", UNIT)
    assert _image_bytes(image)[:4] == b"QFI\xfb"
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", image.location,
                    str(back)], check=True, capture_output=True)
    with open(vdb.volume_get(vid).path, "rb") as f:
        assert back.read_bytes() == f.read()
    assert not os.listdir(tmp_path / "run" / "uploads")


def test_the_image_carries_the_volumes_image_metadata_and_3_1_options(stack):
    vid = _volume(stack)
    vdb.volume_update(vid, {"image_metadata": {
        "image_id": IMAGE_ID, "image_name": "cirros", "checksum": "x", "size": "1",
        "min_disk": "1", "min_ram": "0", "disk_format": "qcow2",
        "container_format": "bare", "hw_disk_bus": "virtio", "os_distro": "tiny"}})
    r = _upload(stack, vid, version="3.1", visibility="shared", protected=True)
    assert r.status_code == 202, r.text
    assert (r.json[UPLOAD]["visibility"], r.json[UPLOAD]["protected"]) == ("shared", True)
    shown = stack.request("GET", "/image/v2/images/" + r.json[UPLOAD]["image_id"]).json
    assert (shown["hw_disk_bus"], shown["os_distro"], shown["visibility"],
            shown["protected"], shown["disk_format"]) == \
        ("virtio", "tiny", "shared", True, "raw")
    assert "image_name" not in shown and "_volume_upload" not in shown
    # Public needs an admin (Cinder's upload_public policy).
    vid2 = _volume(stack)
    r = _upload(stack, vid2, version="3.1", visibility="public")
    assert r.status_code == 403, r.text
    assert vdb.volume_get(vid2).status == st.VOLUME_AVAILABLE


@pytest.mark.parametrize("args, field", [
    ({"disk_format": "vmdk"}, "disk_format"),
    ({"disk_format": 3}, "disk_format"),
    ({"container_format": "ovf"}, "container_format"),
    ({"force": "maybe"}, "force"),
    ({"force": 3}, "force"),
    ({"image_name": ""}, "image_name"),
    ({"image_name": "x" * 256}, "image_name"),
    ({"image_name": None}, "image_name"),
    ({"visibility": "shared"}, "visibility"),      # only from 3.1
    ({"bogus": 1}, "bogus"),
])
def test_bad_arguments_are_400_naming_the_field(stack, args, field):
    vid = _volume(stack)
    r = _upload(stack, vid, **args)
    assert r.status_code == 400 and field in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert images_db.image_count("p1") == 1 and stack.volume.calls[-1][0] != \
        "upload_to_image"


def test_no_image_name_and_a_non_object_are_400(stack):
    vid = _volume(stack)
    r = stack.request("POST", V + "/volumes/%s/action" % vid, json={UPLOAD: {}})
    assert r.status_code == 400 and "image_name" in r.text, r.text
    r = stack.request("POST", V + "/volumes/%s/action" % vid, json={UPLOAD: "x"})
    assert r.status_code == 400 and UPLOAD in r.text, r.text


def test_another_projects_volume_is_404(stack):
    vid = _volume(stack)
    assert _upload(stack, vid, "other").status_code == 404
    assert _upload(stack, "0b5f1e4a-6b6c-4b8e-9a54-0a7a4c1c3c11").status_code == 404
    assert images_db.image_count("p1") == 1


@pytest.mark.parametrize("status", [st.VOLUME_CREATING, st.VOLUME_ERROR,
                                    st.VOLUME_EXTENDING, st.VOLUME_UPLOADING,
                                    st.VOLUME_ATTACHING, st.VOLUME_DELETING])
def test_other_statuses_are_400_as_cinder(stack, status):
    vid = _volume(stack)
    vdb.volume_update(vid, {"status": status})
    r = _upload(stack, vid, force=True)
    assert r.status_code == 400 and "Invalid volume" in r.text and status in r.text, r.text
    assert images_db.image_count("p1") == 1


def test_an_uploading_volume_cannot_be_deleted_or_attached(stack):
    vid = _volume(stack)
    assert _upload(stack, vid).status_code == 202
    assert stack.request("DELETE", V + "/volumes/" + vid).status_code == 400
    assert vdb.volume_get(vid).status == st.VOLUME_UPLOADING


def test_the_image_quota_is_403_and_changes_nothing(stack):
    vid = _volume(stack)
    stack.conf.set_override("image_count_total", 1, group="image")
    r = _upload(stack, vid)
    assert r.status_code == 403 and "overLimit" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert images_db.image_count("p1") == 1


def test_a_failed_copy_discards_the_image_and_puts_the_volume_back(stack, monkeypatch):
    vid = _volume(stack)
    r = _upload(stack, vid)
    image_id = r.json[UPLOAD]["image_id"]

    def broken(volume_id, chunk_size=1 << 20):
        yield b"\0" * 4096
        raise OSError("the pool went away")

    monkeypatch.setattr(stack.manager.backend, "download", broken)
    _run_volume_service(stack, vid)
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_AVAILABLE and "failed" in row.status_reason
    assert not [n for n in os.listdir(stack.conf.image.store_path) if image_id in n]


def test_an_image_deleted_during_the_copy_leaves_no_data(stack):
    vid = _volume(stack)
    image_id = _upload(stack, vid).json[UPLOAD]["image_id"]
    assert stack.request("DELETE", "/image/v2/images/" + image_id).status_code == 204
    _run_volume_service(stack, vid)
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert not os.path.exists(os.path.join(stack.conf.image.store_path, image_id))


def test_the_reaper_puts_a_timed_out_upload_back_and_discards_the_image(stack):
    from conductor.flows.volume import VolumeFlow
    vid = _volume(stack)
    vdb.attachment_create(vid, _server(stack), "host1")
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    image_id = _upload(stack, vid, force=True).json[UPLOAD]["image_id"]
    vdb.volume_update(vid, {"status_deadline": vdb.deadline(-5)})
    flow = VolumeFlow(stack.conf, "conductor", None, None)
    assert flow.reap() == 1
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_IN_USE and "uploading timed out" in row.status_reason
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    # The late cast finds it over: nothing happens.
    _run_volume_service(stack, vid)
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE


def test_a_restarted_volume_service_ends_an_interrupted_upload(stack):
    from volume import recovery
    vid = _volume(stack)
    image_id = _upload(stack, vid).json[UPLOAD]["image_id"]
    # Killed while copying an attached volume: its temporary copy is there.
    stack.manager.backend.create("upload-" + image_id, 1)
    done = recovery.recover_host(stack.manager)
    assert done["uploads_ended"] == [vid]
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_AVAILABLE and "restarted" in row.status_reason
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    assert sorted(os.listdir(stack.manager.backend.directory)) == [vid]
    assert recovery.recover_host(stack.manager)["uploads_ended"] == []


def test_volume_services_below_1_5_refuse_uploads_with_409(stack):
    vid = _volume(stack)
    stack.conf.set_override("volume", "1.4", group="upgrade_levels")
    client = falcon.testing.TestClient(create_app(stack.conf, stack.transport))
    r = client.simulate_post(V + "/volumes/%s/action" % vid,
                             headers=stack.headers("member"),
                             json={UPLOAD: {"image_name": "x"}})
    assert r.status_code == 409 and "1.5" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert images_db.image_count("p1") == 1
    capped = VolumeAPI(stack.transport, version_cap="1.4")
    assert not capped.can_upload_to_image()
    with pytest.raises(exception.UnsupportedVersion):
        capped.upload_to_image(RequestContext(), "vol1", vid, IMAGE_ID)
    assert VolumeAPI(stack.transport, version_cap="1.5").can_upload_to_image()


def test_a_cast_the_bus_refuses_is_503_and_puts_everything_back(stack, monkeypatch):
    vid = _volume(stack)

    def refuse(*args, **kwargs):
        raise exception.MessagingException("bus down")

    monkeypatch.setattr(VolumeAPI, "upload_to_image", refuse)
    r = _upload(stack, vid)
    assert r.status_code == 503, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert images_db.image_count("p1") == 1
    assert _create(stack).status_code == 202      # the API still works


def test_what_the_openstack_cli_sends_is_accepted(stack):
    """``openstack image create --volume V NAME`` through openstacksdk: the
    negotiated microversion (3.71 here) and every field, with the defaults."""
    vid = _volume(stack)
    r = _upload(stack, vid, version="3.71", force=False, disk_format="raw",
                container_format="bare", visibility="private", protected=False)
    assert r.status_code == 202, r.text
    answer = r.json[UPLOAD]
    assert (answer["visibility"], answer["protected"], answer["volume_type"]["name"]) == \
        ("private", False, "__DEFAULT__")


def test_a_server_deleted_during_an_upload_releases_its_volume(stack, monkeypatch):
    """The server's delete releases the forced upload's volume (what is read
    is the point-in-time copy); the upload still ends, the image active and
    the volume left available. Released before the copy began, the upload
    does not start and its image goes."""
    from conductor.flows.volume import VolumeFlow
    from flotilla.db import api as db
    flow = VolumeFlow(stack.conf, "conductor", None, VolumeAPI(stack.transport))
    daemon = stack.manager.daemon
    for during in (True, False):
        vid = _volume(stack)
        server = _server(stack)
        vdb.attachment_create(vid, server, "host1")
        vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
        image_id = _upload(stack, vid, force=True).json[UPLOAD]["image_id"]
        db.instance_destroy(server)

        def release(server=server, vid=vid):
            assert flow.release_if_gone(RequestContext(), server, vid)
            assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
            assert vdb.attachments_of_volume(vid) == []

        if during:
            def backup(volume_id, source, target, release=release):
                CopyDaemon.backup(daemon, volume_id, source, target)
                release()
            monkeypatch.setattr(daemon, "backup", backup)
        else:
            release()
        _run_volume_service(stack, vid)
        assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
        if during:
            assert images_db.image_get(image_id).status == "active"
        else:
            with pytest.raises(exception.ImageNotFound):
                images_db.image_get(image_id)

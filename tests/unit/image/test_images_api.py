"""The image API: create, upload, download, formats, limits, visibility."""

from __future__ import annotations

import hashlib
import json
import os

from tests.fixtures.image_app import headers, qcow2_bytes

OCTET = {"Content-Type": "application/octet-stream"}


def _upload(client, image_id, data, project="p1", roles="member", **extra):
    return client.simulate_put("/image/v2/images/%s/file" % image_id, body=data,
                               headers=headers(project, roles, **OCTET, **extra))


def test_version_document_needs_no_token_and_carries_prefix(client):
    result = client.simulate_get("/image")
    assert result.status_code == 300       # Multiple Choices, as Glance
    current = result.json["versions"][0]
    assert current["status"] == "CURRENT"
    assert current["links"][0]["href"] == "http://falconframework.org/image/v2/"
    prefixed = client.simulate_get("/image/", root_path="/cloud")
    assert prefixed.json["versions"][0]["links"][0]["href"].endswith("/cloud/image/v2/")


def test_create_upload_download_roundtrip(client, image_conf):
    data = qcow2_bytes(3 * 1024 * 1024 + 17)  # several chunks
    created = client.simulate_post(
        "/image/v2/images", headers=headers(),
        json={"name": "cirros", "disk_format": "qcow2", "container_format": "bare",
              "owner_specified.openstack.sha256": "abc", "min_ram": 64})
    assert created.status_code == 201
    image = created.json
    assert image["status"] == "queued" and image["owner"] == "p1"
    assert image["visibility"] == "shared"     # Glance's default
    assert image["owner_specified.openstack.sha256"] == "abc"
    assert image["self"] == "/v2/images/%s" % image["id"]
    assert _upload(client, image["id"], data).status_code == 204
    shown = client.simulate_get("/image/v2/images/%s" % image["id"], headers=headers()).json
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["os_hash_algo"] == "sha256"
    assert shown["os_hash_value"] == hashlib.sha256(data).hexdigest()
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    got = client.simulate_get("/image/v2/images/%s/file" % image["id"], headers=headers())
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert got.headers["x-image-hash-sha256"] == hashlib.sha256(data).hexdigest()
    store = image_conf.image.store_path
    assert os.listdir(store) == [image["id"]]


def test_raw_roundtrip_and_second_upload_conflicts(client, make_image):
    image = make_image(disk_format="raw", data=b"plain bytes of a raw disk" * 10)
    assert image["status"] == "active"
    assert _upload(client, image["id"], b"again" * 10).status_code == 409


def test_download_of_queued_image_is_204(client, make_image):
    image = make_image()
    got = client.simulate_get("/image/v2/images/%s/file" % image["id"], headers=headers())
    assert got.status_code == 204


def test_format_mismatch_rejected_and_leaves_nothing(client, make_image, image_conf):
    qcow2 = make_image(disk_format="qcow2")
    result = _upload(client, qcow2["id"], b"\x00" * 100)
    assert result.status_code == 400
    assert "raw" in result.json["description"]
    raw = make_image(disk_format="raw")
    assert _upload(client, raw["id"], qcow2_bytes()).status_code == 400
    assert _upload(client, raw["id"], b"QF").status_code == 204  # short raw is fine
    for image in (qcow2,):
        shown = client.simulate_get("/image/v2/images/%s" % image["id"], headers=headers()).json
        assert shown["status"] == "queued"
    assert os.listdir(image_conf.image.store_path) == [raw["id"]]


def test_qcow2_with_backing_file_refused(client, make_image):
    image = make_image()
    data = bytearray(qcow2_bytes())
    data[8:20] = (512).to_bytes(8, "big") + (10).to_bytes(4, "big")
    result = _upload(client, image["id"], bytes(data))
    assert result.status_code == 400
    assert "backing file" in result.json["description"]


def test_oversized_upload_rejected(client, make_image, image_conf):
    image_conf.set_override("max_image_size", 1000, group="image")
    image = make_image()
    # Declared too large: refused before reading.
    assert _upload(client, image["id"], qcow2_bytes(2000)).status_code == 413
    # Chunked (no Content-Length): refused while streaming.
    from io import BytesIO
    result = client.simulate_request(
        "PUT", "/image/v2/images/%s/file" % image["id"],
        headers=headers(**OCTET), extras={"wsgi.input": BytesIO(qcow2_bytes(2000))})
    assert result.status_code == 413
    shown = client.simulate_get("/image/v2/images/%s" % image["id"], headers=headers()).json
    assert shown["status"] == "queued"
    assert os.listdir(image_conf.image.store_path) == []


def test_aborted_upload_leaves_no_file_and_status_queued(client, make_image, image_conf):
    image = make_image()

    class Dropped:
        def __init__(self):
            self.sent = False

        def read(self, size=-1):
            if not self.sent:
                self.sent = True
                return qcow2_bytes(1024)
            raise ConnectionResetError(104, "Connection reset by peer")

        readline = readlines = __iter__ = read

    result = client.simulate_request(
        "PUT", "/image/v2/images/%s/file" % image["id"],
        headers=headers(**OCTET, **{"Content-Length": "100000"}), extras={"wsgi.input": Dropped()})
    assert result.status_code == 400
    # A body shorter than its Content-Length is an aborted upload too.
    short = client.simulate_request(
        "PUT", "/image/v2/images/%s/file" % image["id"],
        headers=headers(**OCTET, **{"Content-Length": "100000"}), body=qcow2_bytes(1024))
    assert short.status_code == 400
    assert "%d of 100000" % len(qcow2_bytes(1024)) in short.json["description"]
    shown = client.simulate_get("/image/v2/images/%s" % image["id"], headers=headers()).json
    assert shown["status"] == "queued"
    assert os.listdir(image_conf.image.store_path) == []
    assert _upload(client, image["id"], qcow2_bytes()).status_code == 204


def test_upload_needs_octet_stream(client, make_image):
    image = make_image()
    result = client.simulate_put("/image/v2/images/%s/file" % image["id"], body=b"x",
                                 headers=headers(**{"Content-Type": "text/plain"}))
    assert result.status_code == 415


def test_delete_removes_file(client, make_image, image_conf):
    image = make_image(data=qcow2_bytes())
    assert os.listdir(image_conf.image.store_path) == [image["id"]]
    result = client.simulate_delete("/image/v2/images/%s" % image["id"], headers=headers())
    assert result.status_code == 204
    assert os.listdir(image_conf.image.store_path) == []
    assert client.simulate_get("/image/v2/images/%s" % image["id"],
                               headers=headers()).status_code == 404
    assert client.simulate_delete("/image/v2/images/%s" % image["id"],
                                  headers=headers()).status_code == 404


def test_protected_image_cannot_be_deleted(client, make_image):
    image = make_image(protected=True)
    assert image["protected"] is True
    result = client.simulate_delete("/image/v2/images/%s" % image["id"], headers=headers())
    assert result.status_code == 403


def test_validation(client):
    def post(body):
        return client.simulate_post("/image/v2/images", json=body, headers=headers())
    assert post({"name": "x" * 256}).status_code == 400
    assert "name" in post({"name": "x" * 256}).json["description"]
    assert post({"disk_format": "vmdk"}).status_code == 400
    assert post({"container_format": "ovf"}).status_code == 400
    assert post({"min_ram": -1}).status_code == 400
    assert post({"status": "active"}).status_code == 403
    assert post({"_md5": "x"}).status_code == 400
    assert post({"custom": 5}).status_code == 400
    assert post({"id": "not-a-uuid"}).status_code == 400
    assert post(["a"]).status_code == 400
    bad_json = client.simulate_post("/image/v2/images", body=b"{nope",
                                    headers=headers(**{"Content-Type": "application/json"}))
    assert bad_json.status_code == 400
    ok = post({"name": "n", "disk_format": None})
    assert ok.status_code == 201
    # Upload needs the formats set first.
    assert _upload(client, ok.json["id"], b"x").status_code == 400


def test_create_with_id_and_duplicate(client):
    image_id = "11111111-2222-3333-4444-555555555555"
    body = {"id": image_id, "name": "a"}
    first = client.simulate_post("/image/v2/images", json=body, headers=headers())
    assert first.status_code == 201 and first.json["id"] == image_id
    again = client.simulate_post("/image/v2/images", json=body, headers=headers())
    assert again.status_code == 409


def test_patch(client, make_image):
    image = make_image(prop="1")
    patch = [{"op": "replace", "path": "/name", "value": "renamed"},
             {"op": "add", "path": "/os_distro", "value": "cirros"},
             {"op": "remove", "path": "/prop"},
             {"op": "add", "path": "/tags", "value": ["a", "b"]}]
    ctype = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
    result = client.simulate_patch("/image/v2/images/%s" % image["id"],
                                   body=json.dumps(patch), headers=headers(**ctype))
    assert result.status_code == 200, result.text
    body = result.json
    assert body["name"] == "renamed" and body["os_distro"] == "cirros"
    assert "prop" not in body and body["tags"] == ["a", "b"]
    for bad, code in (([{"op": "replace", "path": "/status", "value": "active"}], 403),
                      ([{"op": "replace", "path": "/visibility", "value": "public"}], 403),
                      ([{"op": "remove", "path": "/nope"}], 409),
                      ([{"op": "move", "path": "/name"}], 400)):
        result = client.simulate_patch("/image/v2/images/%s" % image["id"],
                                       body=json.dumps(bad), headers=headers(**ctype))
        assert result.status_code == code, (bad, result.text)
    assert client.simulate_patch("/image/v2/images/%s" % image["id"], json=patch,
                                 headers=headers()).status_code == 415
    active = make_image("active", data=qcow2_bytes())
    change = [{"op": "replace", "path": "/disk_format", "value": "raw"}]
    result = client.simulate_patch("/image/v2/images/%s" % active["id"],
                                   body=json.dumps(change), headers=headers(**ctype))
    assert result.status_code == 403


def _qemu_img(*args):
    import subprocess
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_qcow2_reaching_outside_itself_refused(client, make_image, image_conf, tmp_path):
    """Issue 13 defect 1: a qcow2 with an external data file (CVE-2024-32498)
    was accepted; so must be no backing file and no json: name."""
    data_file = tmp_path / "data.raw"
    with_data = tmp_path / "data.qcow2"
    _qemu_img("create", "-f", "qcow2", "-o", "data_file=%s" % data_file,
              str(with_data), "1M")
    with_json = tmp_path / "json.qcow2"
    _qemu_img("create", "-f", "qcow2", "-u", "-F", "raw", "-b",
              'json:{"driver": "file", "filename": "/etc/passwd"}', str(with_json), "1M")
    with_backing = tmp_path / "backing.qcow2"
    _qemu_img("create", "-f", "qcow2", "-u", "-F", "raw", "-b", "/etc/passwd",
              str(with_backing), "1M")
    for path, reason in ((with_data, "external"), (with_json, "backing"),
                         (with_backing, "backing")):
        image = make_image(disk_format="qcow2")
        result = _upload(client, image["id"], path.read_bytes())
        assert result.status_code == 400, (path, result.text)
        assert reason in result.json["description"], result.text
        shown = client.simulate_get("/image/v2/images/%s" % image["id"],
                                    headers=headers()).json
        assert shown["status"] == "queued"
    assert os.listdir(image_conf.image.store_path) == []
    # A self-contained image is taken, with its virtual size.
    good = make_image(disk_format="qcow2", data=qcow2_bytes())
    assert good["status"] == "active" and good["virtual_size"] == 1024 * 1024


def test_shared_check_refuses_every_external_name(tmp_path):
    from flotilla import diskimage
    target = tmp_path / "data.raw"
    img = tmp_path / "x.qcow2"
    _qemu_img("create", "-f", "qcow2", "-o", "data_file=%s,data_file_raw=on" % target,
              str(img), "1M")
    import pytest
    with pytest.raises(diskimage.UnsafeImage, match="external"):
        diskimage.check_self_contained(str(img), "qcow2")
    # Even with the feature bit cleared, the header extension naming the
    # file is found.
    raw = bytearray(img.read_bytes())
    raw[72:80] = b"\x00" * 8
    img.write_bytes(bytes(raw))
    with pytest.raises(diskimage.UnsafeImage):
        diskimage.check_self_contained(str(img), "qcow2")


def test_upload_cut_by_a_crash_is_recovered_at_start(client, make_image, image_conf):
    """Issue 13 defect 10: an upload cut by an API crash stayed saving
    forever with its partial file left behind."""
    import socket
    import subprocess

    from flotilla import image_store
    from flotilla.db import images as db_images
    from tests.fixtures import image_app

    dead = subprocess.Popen(["true"])
    dead.wait()
    crashed = make_image(disk_format="raw")
    live = make_image(disk_format="raw")
    foreign = make_image(disk_format="raw")
    owners = {crashed["id"]: {"host": socket.gethostname(), "pid": dead.pid,
                              "started": "1"},
              live["id"]: image_store.upload_owner(),
              foreign["id"]: {"host": "another-api-host", "pid": 1, "started": "1"}}
    store = image_conf.image.store_path
    os.makedirs(store, exist_ok=True)
    for image_id, owner in owners.items():
        db_images.image_update(image_id, {"status": "saving", "properties": {
            db_images.UPLOAD_KEY: owner}}, expected_status="queued")
        with open(os.path.join(store, "%s.part-abc" % image_id), "wb") as f:
            f.write(b"partial")
    image_app.make_app(image_conf)  # an API starting
    status = {i: db_images.image_get(i).status for i in owners}
    assert status == {crashed["id"]: "queued", live["id"]: "saving",
                      foreign["id"]: "saving"}
    assert db_images.UPLOAD_KEY not in db_images.image_get(crashed["id"]).properties
    assert sorted(os.listdir(store)) == sorted("%s.part-abc" % i["id"]
                                               for i in (live, foreign))
    # The recovered image takes an upload again.
    assert _upload(client, crashed["id"], b"raw disk bytes").status_code == 204


def test_stored_image_files_are_private(make_image, image_conf):
    """Issue 13 defect 8: state files are owner-only."""
    import stat
    image = make_image(disk_format="raw", data=b"secret disk" * 100)
    store = image_conf.image.store_path
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(store, image["id"])).st_mode) == 0o600

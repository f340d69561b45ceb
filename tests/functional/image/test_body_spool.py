"""Image data received straight into the store (api.body_spool) on the
API's real server: the digests computed while the body arrives are those of
the data, the file is renamed into place (written once), and nothing is
left behind by a refused upload or a process that died."""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import sys
import threading
import urllib.parse

import pytest
import requests

from api import body_spool
from api.wsgi_server import WSGIService
from flotilla import image_store
from tests.fixtures.image_app import qcow2_bytes
from tests.fixtures.waiting import wait_until

HEADERS = {"X-Auth-Token": "t"}
OCTETS = dict(HEADERS, **{"Content-Type": "application/octet-stream"})


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def _new_image(url: str, disk_format: str = "qcow2") -> str:
    answer = requests.post(url + "/image/v2/images", json={
        "name": "spooled", "disk_format": disk_format, "container_format": "bare"},
        headers=HEADERS, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_is_received_into_the_store_with_its_digests(image_server, chunked,
                                                           monkeypatch):
    url, conf = image_server

    def no_copy(*args, **kwargs):
        raise AssertionError("the upload was copied, not received into the store")
    monkeypatch.setattr(image_store, "_copy_into_store", no_copy)
    image_id = _new_image(url)
    data = qcow2_bytes(5 * 1024 * 1024 + 123)
    body = (data[i:i + 65536] for i in range(0, len(data), 65536)) if chunked else data
    answer = requests.put(url + "/image/v2/images/%s/file" % image_id, data=body,
                          headers=OCTETS, timeout=30)
    assert answer.status_code == 204, answer.text
    image = requests.get(url + "/image/v2/images/" + image_id, headers=HEADERS,
                         timeout=10).json()
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha256"
    assert image["os_hash_value"] == hashlib.sha256(data).hexdigest()
    # The stored file is the received one, renamed: same bytes, nothing else left.
    assert _files(conf.image.store_path) == [image_id]
    with open(os.path.join(conf.image.store_path, image_id), "rb") as f:
        assert f.read() == data


def test_refused_upload_leaves_no_file(image_server):
    url, conf = image_server
    image_id = _new_image(url, disk_format="raw")
    answer = requests.put(url + "/image/v2/images/%s/file" % image_id,
                          data=qcow2_bytes(1024 * 1024), headers=OCTETS, timeout=30)
    assert answer.status_code == 400, answer.text
    assert "qcow2" in answer.text
    # waitress closes the request (and the body's file) after answering.
    wait_until(lambda: _files(conf.image.store_path) == [], 10,
               "the refused upload's file removed")
    image = requests.get(url + "/image/v2/images/" + image_id, headers=HEADERS,
                         timeout=10).json()
    assert image["status"] == "queued"


def test_a_connection_dropped_mid_body_leaves_no_file_or_thread(image_server):
    """An upload cut off half way (before any authentication: the body is
    received first) costs nothing once its connection is gone."""
    url, conf = image_server
    port = int(url.rsplit(":", 1)[1])
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("PUT", "/image/v2/images/%s/file" % ("1" * 36))
        conn.putheader("Content-Length", str(100 * 1024 * 1024))
        conn.endheaders()
        conn.send(os.urandom(200 * 1024))
        incoming = body_spool.incoming_dir(conf.image.store_path)
        wait_until(lambda: _files(incoming), 10, "the body's file")
        conn.close()
    wait_until(lambda: _files(conf.image.store_path) == [], 10,
               "the dropped bodies' files removed")
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "image-hash"],
               10, "the dropped bodies' hashing threads ended")


def test_only_image_data_uploads_are_received_into_the_store(tmp_path):
    """Other bodies stay waitress's own (received() is None for them)."""
    seen = {}

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "PUT":
            got = body_spool.received(environ["wsgi.input"])
            seen[environ["PATH_INFO"]] = got and (got.size, got.md5)
        start_response("204 No Content", [])
        return [b""]

    store = str(tmp_path / "store")
    server = WSGIService(app, "127.0.0.1", 0, threads=2, image_store_path=store)
    server.start()
    try:
        data = os.urandom(700 * 1024)    # beyond waitress's 512 KiB in memory
        for path in ("/image/v2/images/abc/file", "/image/v2/images/abc",
                     "/compute/v2.1/servers"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("PUT", path + "?" + urllib.parse.urlencode({"x": "1"}), body=data)
            assert conn.getresponse().status == 204
            conn.close()
    finally:
        server.stop()
    assert seen == {"/image/v2/images/abc/file": (len(data),
                                                  hashlib.md5(data).hexdigest()),
                    "/image/v2/images/abc": None, "/compute/v2.1/servers": None}
    wait_until(lambda: _files(store) == [], 10, "the unused body removed after its request")


def test_files_of_dead_processes_are_removed_at_start(tmp_path):
    store = str(tmp_path)
    incoming = body_spool.incoming_dir(store)
    os.makedirs(incoming)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    me = image_store.upload_owner()
    mine = "%d-%s-aaaa" % (me["pid"], me["started"])
    reused_pid = "%d-1-bbbb" % me["pid"]          # same pid, another process start
    for name in (mine, reused_pid, "%s-1-cccc" % dead, "junk"):
        open(os.path.join(incoming, name), "wb").close()
    removed = body_spool.remove_orphans(store)
    assert sorted(removed) == sorted([reused_pid, "%s-1-cccc" % dead, "junk"])
    assert os.listdir(incoming) == [mine]
    assert body_spool.remove_orphans(str(tmp_path / "nothing")) == []

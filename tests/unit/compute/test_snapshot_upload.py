"""The agent's snapshot upload: what it sends, what each answer means for
the server's owner, and that the signed URL never shows in an error."""

from __future__ import annotations

import http.server
import threading

import pytest

from compute.ops import snapshot as snapshot_ops

IMAGE = "0c5f7b0e-3b5f-4a55-9d4e-3f0a6c0f3c11"


class _Store(http.server.BaseHTTPRequestHandler):
    status = 204
    received: list[tuple[str, str, int, bytes]] = []

    def do_PUT(self):  # noqa: N802 - the http.server name
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        type(self).received.append((self.path, self.headers["Content-Type"], length, body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def store():
    _Store.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server) -> str:
    return ("http://127.0.0.1:%d/image/v2/images/%s/file?expires=1&nonce=n0nce"
            "&signature=s3cret" % (server.server_address[1], IMAGE))


def test_the_file_is_put_with_its_length(store, tmp_path):
    path = tmp_path / "snap.qcow2"
    path.write_bytes(b"QFI\xfb" + b"x" * (3 * 1024 * 1024 + 5))
    snapshot_ops.upload_file(_url(store), str(path))
    [(request_path, content_type, length, body)] = _Store.received
    assert request_path.startswith("/image/v2/images/%s/file?" % IMAGE)
    assert "signature=s3cret" in request_path
    assert content_type == "application/octet-stream"
    assert length == len(body) == path.stat().st_size
    assert body == path.read_bytes()       # sent by sendfile, byte for byte


@pytest.mark.parametrize("status, public", [
    (404, "The image was deleted before the snapshot was uploaded."),
    (409, "The image changed before the snapshot was uploaded."),
    (403, "The upload permission of the snapshot expired before it was used."),
    (413, "The snapshot is larger than the image service accepts."),
    (500, "The image service refused the snapshot."),
])
def test_each_refusal_says_why_without_the_url(store, tmp_path, status, public):
    _Store.status = status
    path = tmp_path / "snap.qcow2"
    path.write_bytes(b"QFI\xfb" + b"x" * 100)
    try:
        with pytest.raises(snapshot_ops.UploadFailed) as info:
            snapshot_ops.upload_file(_url(store), str(path))
    finally:
        _Store.status = 204
    assert info.value.public_message() == public
    assert "HTTP %d" % status in str(info.value) and IMAGE in str(info.value)
    assert "s3cret" not in str(info.value) and "n0nce" not in str(info.value)


def test_a_service_that_is_not_there(tmp_path, store):
    url = _url(store)
    store.shutdown()
    store.server_close()
    path = tmp_path / "snap.qcow2"
    path.write_bytes(b"QFI\xfb")
    with pytest.raises(snapshot_ops.UploadFailed) as info:
        snapshot_ops.upload_file(url, str(path), timeout=5)
    assert info.value.public_message() == \
        "The snapshot could not be uploaded to the image service."
    assert "s3cret" not in str(info.value)

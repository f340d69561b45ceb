"""The flotilla CLI (real openstacksdk) against the image API on the API's server."""

from __future__ import annotations

import hashlib
import json
import os

import requests

from flotilla.cli import main as cli_main
from tests.fixtures.image_app import qcow2_bytes


def _run(capsys, *argv):
    code = cli_main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_image_lifecycle_through_the_cli(cli_env, image_server, tmp_path, capsys):
    _, conf = image_server
    data = qcow2_bytes(2 * 1024 * 1024 + 5)
    path = tmp_path / "disk.qcow2"
    path.write_bytes(data)

    code, out, err = _run(capsys, "-f", "json", "image", "create", "cirros", "--file",
                          str(path))
    assert code == 0, err
    image = json.loads(out)
    assert image["status"] == "active" and image["size"] == len(data)
    assert image["os_hash_value"] == hashlib.sha256(data).hexdigest()
    assert image["checksum"] == hashlib.md5(data).hexdigest()

    code, out, err = _run(capsys, "image", "create", "empty", "--disk-format", "raw")
    assert code == 0, err
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\x00" * 4096)
    code, out, err = _run(capsys, "-f", "json", "image", "upload", "empty", str(raw))
    assert code == 0, err
    assert json.loads(out)["status"] == "active"

    code, out, err = _run(capsys, "image", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "Name", "Status"]
    assert sorted(line.split()[1] for line in lines[2:]) == ["cirros", "empty"]

    code, out, err = _run(capsys, "-f", "json", "image", "show", "cirros")
    assert code == 0 and json.loads(out)["id"] == image["id"]

    # The SDK's own download verifies the checksums.
    import openstack
    conn = openstack.connect()
    assert conn.image.download_image(image["id"]).content == data

    # Uploading the wrong format: one line, exit 1.
    code, out, err = _run(capsys, "image", "upload", "cirros", str(raw))
    assert code == 1 and len(err.strip().splitlines()) == 1

    code, out, err = _run(capsys, "image", "delete", "cirros", "empty")
    assert code == 0, err
    assert [files for _, _, files in os.walk(conf.image.store_path) if files] == []
    code, out, err = _run(capsys, "image", "show", "cirros")
    assert code == 1 and "cirros" in err


def test_version_document_and_chunked_upload(image_server):
    url, conf = image_server
    doc = requests.get(url + "/image", timeout=10).json()
    assert doc["versions"][0]["links"][0]["href"] == url + "/image/v2/"
    headers = {"X-Auth-Token": "t"}
    image = requests.post(url + "/image/v2/images", json={
        "name": "c", "disk_format": "qcow2", "container_format": "bare"},
        headers=headers, timeout=10).json()
    data = qcow2_bytes(3 * 1024 * 1024)

    def chunks():
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]
    result = requests.put(url + "/image/v2/images/%s/file" % image["id"], data=chunks(),
                          headers=dict(headers, **{"Content-Type": "application/octet-stream"}),
                          timeout=30)
    assert result.status_code == 204, result.text
    got = requests.get(url + "/image/v2/images/%s/file" % image["id"], headers=headers,
                       stream=True, timeout=30)
    assert got.headers["Content-Length"] == str(len(data))
    assert b"".join(got.iter_content(65536)) == data

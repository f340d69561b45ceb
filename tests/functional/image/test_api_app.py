"""The image routes inside the real API app (its auth and policy)."""

from __future__ import annotations

import urllib.parse

import falcon.testing
import pytest

from flotilla import images
from tests.fixtures.image_app import qcow2_bytes


@pytest.fixture
def api_conf(db, db_conf, tmp_path):  # noqa: F811
    db_conf.set_override("store_path", str(tmp_path / "images"), group="image")
    db_conf.set_override("download_signing_key", "k", group="image")
    db_conf.set_override("public_endpoint", "http://api.test/image", group="image")
    return db_conf


def _app(conf, strategy):
    from api import app as api_app
    from flotilla import rpc
    conf.set_override("auth_strategy", strategy, group="api")
    return falcon.testing.TestClient(api_app.create_app(conf, transport=rpc.get_transport(conf)))


def test_anonymous_discovery_and_signed_download(api_conf):
    noauth = _app(api_conf, "noauth")
    created = noauth.simulate_post("/image/v2/images", json={
        "name": "c", "disk_format": "qcow2", "container_format": "bare"})
    assert created.status_code == 201, created.text
    image_id = created.json["id"]
    data = qcow2_bytes()
    up = noauth.simulate_put("/image/v2/images/%s/file" % image_id, body=data,
                             headers={"Content-Type": "application/octet-stream"})
    assert up.status_code == 204, up.text

    keystone = _app(api_conf, "keystone")
    for path in ("/image", "/image/", "/image/v2", "/image/v2/"):
        result = keystone.simulate_get(path)
        assert result.status_code == (300 if path.rstrip("/") == "/image" else 200), path
        assert result.json["versions"][0]["status"] == "CURRENT"
    assert keystone.simulate_get("/image/v2/images").status_code == 401
    path = "/image/v2/images/%s/file" % image_id
    assert keystone.simulate_get(path).status_code == 401
    source = images.compute_image_ref(api_conf, image_id)["source"]
    query = urllib.parse.urlsplit(source).query
    got = keystone.simulate_get(path, query_string=query)
    assert got.status_code == 200 and got.content == data
    forged = query.replace("signature=", "signature=0")
    assert keystone.simulate_get(path, query_string=forged).status_code == 403

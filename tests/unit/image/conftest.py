from __future__ import annotations

import falcon.testing
import pytest

from tests.fixtures import image_app
from tests.unit.db.fixtures import db, db_conf, empty_db  # noqa: F401


@pytest.fixture
def db_url(tmp_path):
    return "sqlite:///%s" % (tmp_path / "flotilla-test.sqlite")


@pytest.fixture
def image_conf(db, db_conf, tmp_path):  # noqa: F811
    db_conf.set_override("store_path", str(tmp_path / "images"), group="image")
    db_conf.set_override("download_signing_key", "test-signing-key", group="image")
    db_conf.set_override("public_endpoint", "http://api.test/image", group="image")
    return db_conf


@pytest.fixture
def client(image_conf):
    return falcon.testing.TestClient(image_app.make_app(image_conf))


@pytest.fixture
def make_image(client):
    """Create (and with ``data`` upload) an image; returns its body."""
    def make(name="img", project="p1", roles="member", data=None, **fields):
        body = {"name": name, "disk_format": "qcow2", "container_format": "bare", **fields}
        result = client.simulate_post("/image/v2/images", json=body,
                                      headers=image_app.headers(project, roles))
        assert result.status_code == 201, result.text
        image = result.json
        if data is not None:
            up = client.simulate_put(
                "/image/v2/images/%s/file" % image["id"], body=data,
                headers=image_app.headers(project, roles,
                                          **{"Content-Type": "application/octet-stream"}))
            assert up.status_code == 204, up.text
            image = client.simulate_get("/image/v2/images/%s" % image["id"],
                                        headers=image_app.headers(project, roles)).json
        return image
    return make

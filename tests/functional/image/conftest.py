from __future__ import annotations

import os

import pytest

from api.wsgi_server import WSGIService
from flotilla.context import RequestContext
from tests.fixtures import image_app
from tests.unit.db.fixtures import db, db_conf, empty_db  # noqa: F401


@pytest.fixture
def db_url(tmp_path):
    return "sqlite:///%s" % (tmp_path / "flotilla-test.sqlite")


@pytest.fixture
def image_server(db, db_conf, tmp_path):  # noqa: F811
    """The image API on the API's real server on 127.0.0.1 (ephemeral
    port), receiving uploads into the store as flotilla-api does; requests
    with just a token act as a member of project p1."""
    store = str(tmp_path / "images")
    db_conf.set_override("store_path", store, group="image")
    app = image_app.make_app(
        db_conf, token_context=RequestContext(user_id="u1", project_id="p1",
                                              roles=["member", "reader"]))
    server = WSGIService(app, "127.0.0.1", 0, threads=4, image_store_path=store)
    server.start()
    yield "http://127.0.0.1:%d" % server.port, db_conf
    server.stop()


@pytest.fixture
def cli_env(image_server, monkeypatch, tmp_path):
    """OS_* variables for openstacksdk in noauth mode against the server."""
    url, _ = image_server
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("OS_AUTH_TYPE", "none")
    monkeypatch.setenv("OS_IMAGE_ENDPOINT_OVERRIDE", url + "/image")
    return url

"""Glance's sharing, tags, deactivation and patch forms through the API app:
members of a shared image (pending, accepted, rejected, member_status
listing), who may do what, tags, deactivate/reactivate, the v2.0 JSON-patch
form, reserved properties and an empty image id."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.image_app import qcow2_bytes
from tests.functional.api.fixtures import APICloud

IMG = "/image/v2"


@pytest.fixture
def cloud(conf, tmp_path):
    conf.set_override("store_path", str(tmp_path / "images"), group="image")
    conf.set_override("download_signing_key", "k", group="image")
    c = APICloud(conf)
    yield c
    c.stop()


def _image(cloud, **values) -> dict:
    r = cloud.request("POST", IMG + "/images", json=dict(
        {"name": "shared", "disk_format": "qcow2", "container_format": "bare"}, **values))
    assert r.status_code == 201, r.text
    return r.json


def _names(cloud, who: str, query: str = "") -> list[str]:
    r = cloud.request("GET", IMG + "/images" + query, who=who)
    assert r.status_code == 200, r.text
    return sorted(i["name"] for i in r.json["images"])


def test_members_share_an_image(cloud):
    image = _image(cloud)
    assert image["visibility"] == "shared"           # Glance's default
    members = IMG + "/images/%s/members" % image["id"]
    assert cloud.request("GET", IMG + "/images/" + image["id"], who="other").status_code == 404
    r = cloud.request("POST", members, json={"member": "p2"})
    assert r.status_code == 200 and r.json["status"] == "pending", r.text
    assert cloud.request("POST", members, json={"member": "p2"}).status_code == 409
    assert cloud.request("POST", members, who="other",
                         json={"member": "p2"}).status_code == 403
    # p2 sees it, lists it only when asked for pending ones.
    assert cloud.request("GET", IMG + "/images/" + image["id"], who="other").status_code == 200
    assert "shared" not in _names(cloud, "other")
    assert _names(cloud, "other", "?visibility=shared&member_status=pending") == ["shared"]
    # Only the member sets its status.
    assert cloud.request("PUT", members + "/p2", json={"status": "accepted"}).status_code == 403
    r = cloud.request("PUT", members + "/p2", who="other", json={"status": "accepted"})
    assert r.status_code == 200 and r.json["status"] == "accepted"
    assert "shared" in _names(cloud, "other")
    assert [m["member_id"] for m in cloud.request("GET", members, who="other")
            .json["members"]] == ["p2"]
    assert cloud.request("GET", IMG + "/schemas/members", who="other").status_code == 200
    assert cloud.request("DELETE", members + "/p2").status_code == 204
    assert cloud.request("GET", IMG + "/images/" + image["id"], who="other").status_code == 404
    private = _image(cloud, name="private", visibility="private")
    r = cloud.request("POST", IMG + "/images/%s/members" % private["id"], json={"member": "p2"})
    assert r.status_code == 403                      # only shared images have members
    # Glance 2.12's image tasks: none (data is uploaded, never imported);
    # another project's private image is not found.
    tasks = IMG + "/images/%s/tasks" % private["id"]
    assert cloud.request("GET", tasks).json == {"tasks": []}
    assert cloud.request("GET", tasks, who="other").status_code == 404


def test_tags_deactivation_and_patch_forms(cloud):
    image = _image(cloud)
    path = IMG + "/images/" + image["id"]
    assert cloud.request("PUT", path + "/tags/t1").status_code == 204
    assert cloud.request("PUT", path + "/tags/t1").status_code == 204
    assert cloud.request("GET", path).json["tags"] == ["t1"]
    assert cloud.request("DELETE", path + "/tags/t2").status_code == 404
    assert cloud.request("DELETE", path + "/tags/t1").status_code == 204
    # deactivate needs data; a deactivated image's data is for admins only.
    assert cloud.request("POST", path + "/actions/deactivate").status_code == 400
    r = cloud.request("PUT", path + "/file", body=qcow2_bytes(),
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    assert cloud.request("POST", path + "/actions/deactivate").status_code == 204
    assert cloud.request("GET", path).json["status"] == "deactivated"
    assert cloud.request("GET", path + "/file").status_code == 403
    assert cloud.request("GET", path + "/file", who="admin").status_code == 200
    assert cloud.request("POST", path + "/actions/reactivate").status_code == 204
    assert cloud.request("GET", path + "/file").status_code == 200
    # Glance's v2.0 patch form, then the RFC 6902 one.
    r = cloud.request("PATCH", path,
                      body=json.dumps([{"replace": "/name", "value": "renamed"}]),
                      headers={"Content-Type":
                               "application/openstack-images-v2.0-json-patch"})
    assert r.status_code == 200 and r.json["name"] == "renamed", r.text
    r = cloud.request("PATCH", path, body=json.dumps([{"op": "add", "path": "/os_glance_x",
                                                       "value": "y"}]),
                      headers={"Content-Type":
                               "application/openstack-images-v2.1-json-patch"})
    assert r.status_code == 403                      # reserved prefix
    assert cloud.request("POST", IMG + "/images", json={
        "name": "x", "os_glance_foo": "bar"}).status_code == 403
    assert cloud.request("GET", IMG + "/images/").status_code == 404
    assert cloud.request("DELETE", IMG + "/images/").status_code == 404
    assert cloud.request("GET", "/image", who="none").status_code == 300
    assert cloud.request("GET", IMG + "/info/import").json["import-methods"]["value"] == []


"""Listing (filters, pagination) and who may see or change which image."""

from __future__ import annotations

import pytest

from tests.fixtures.image_app import headers, qcow2_bytes


def _list(client, query="", project="p1", roles="member"):
    result = client.simulate_get("/image/v2/images", query_string=query,
                                 headers=headers(project, roles))
    assert result.status_code == 200, result.text
    return result.json


def _names(body):
    return sorted(i["name"] for i in body["images"])


def test_list_filters(client, make_image):
    a = make_image("alpha")
    b = make_image("beta", disk_format="raw")
    make_image("gamma", os_distro="cirros")
    make_image("public-one", project="other", roles="admin", visibility="public")
    make_image("foreign", project="other")
    assert _names(_list(client)) == ["alpha", "beta", "gamma", "public-one"]
    assert _names(_list(client, "name=beta")) == ["beta"]
    assert _names(_list(client, "name=in:alpha,gamma")) == ["alpha", "gamma"]
    assert _names(_list(client, "id=in:%s,%s" % (a["id"], b["id"]))) == ["alpha", "beta"]
    assert _names(_list(client, "id=%s" % a["id"])) == ["alpha"]
    assert _names(_list(client, "disk_format=raw")) == ["beta"]
    assert _names(_list(client, "visibility=public")) == ["public-one"]
    assert _names(_list(client, "visibility=shared")) == ["alpha", "beta", "gamma"]
    assert _names(_list(client, "status=active")) == []
    assert _names(_list(client, "os_distro=cirros")) == ["gamma"]
    # Literal strings as the clients send them.
    assert _names(_list(client, "os_hidden=False&member_status=all")) == [
        "alpha", "beta", "gamma", "public-one"]
    assert _names(_list(client, "os_hidden=True")) == []
    # An admin sees every project's images.
    assert len(_list(client, roles="admin", project="p9")["images"]) == 5


@pytest.mark.parametrize("query", ["limit=x", "limit=-1", "visibility=weird",
                                   "sort_key=owner_secret", "sort_dir=up",
                                   "marker=11111111-2222-3333-4444-555555555555",
                                   "tag=x", "os_hidden=maybe"])
def test_list_bad_queries(client, query):
    result = client.simulate_get("/image/v2/images", query_string=query, headers=headers())
    assert result.status_code == 400


def test_pagination_with_next(client, make_image):
    for i in range(7):
        make_image("img-%d" % i)
    seen = []
    query = "limit=3&sort_key=name&sort_dir=asc"
    pages = 0
    while True:
        body = _list(client, query)
        pages += 1
        seen += [i["name"] for i in body["images"]]
        if "next" not in body:
            break
        assert body["next"].startswith("/v2/images?")
        query = body["next"].split("?", 1)[1]
    assert seen == ["img-%d" % i for i in range(7)]
    assert pages == 3
    # Default order (newest first) pages without repeats too.
    body = _list(client, "limit=4")
    rest = _list(client, body["next"].split("?", 1)[1])
    names = [i["name"] for i in body["images"] + rest["images"]]
    assert sorted(names) == sorted(set(names)) and len(names) == 7
    assert _list(client, "sort=name:desc&limit=1")["images"][0]["name"] == "img-6"


def test_limit_capped(client, make_image, image_conf):
    image_conf.set_override("api_limit_max", 2, group="image")
    for i in range(3):
        make_image("i%d" % i)
    body = _list(client, "limit=100")
    assert len(body["images"]) == 2 and "limit=2" in body["next"]


def test_other_projects_private_image_is_404(client, make_image):
    image = make_image("secret", project="p2", data=qcow2_bytes())
    path = "/image/v2/images/%s" % image["id"]
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/file"), ("PUT", "/file")):
        result = client.simulate_request(
            method, path + suffix, body=b"x",
            headers=headers("p1", "member", **{"Content-Type": "application/octet-stream"}))
        assert result.status_code == 404, (method, suffix)
    assert client.simulate_get(path, headers=headers("p9", "admin")).status_code == 200


def test_public_image_readable_but_not_deletable_by_others(client, make_image):
    image = make_image("pub", project="p2", roles="admin", visibility="public",
                       data=qcow2_bytes())
    path = "/image/v2/images/%s" % image["id"]
    assert client.simulate_get(path, headers=headers("p1", "reader")).status_code == 200
    assert client.simulate_get(path + "/file",
                               headers=headers("p1", "reader")).status_code == 200
    assert client.simulate_delete(path, headers=headers("p1", "member")).status_code == 403


def test_roles(client, make_image):
    image = make_image("mine")
    path = "/image/v2/images/%s" % image["id"]
    assert client.simulate_get(path, headers=headers("p1", "reader")).status_code == 200
    assert client.simulate_get(path, headers=headers("p1", "")).status_code == 403
    assert client.simulate_delete(path, headers=headers("p1", "reader")).status_code == 403
    assert client.simulate_post("/image/v2/images", json={"name": "x"},
                                headers=headers("p1", "reader")).status_code == 403
    # Members cannot publish or give images away; admins can.
    assert client.simulate_post("/image/v2/images", json={"visibility": "public"},
                                headers=headers()).status_code == 403
    assert client.simulate_post("/image/v2/images", json={"owner": "p2"},
                                headers=headers()).status_code == 403
    given = client.simulate_post("/image/v2/images", json={"owner": "p2"},
                                 headers=headers("p1", "admin"))
    assert given.status_code == 201 and given.json["owner"] == "p2"


def test_no_credentials_is_401(client, make_image):
    image = make_image()
    for path in ("/image/v2/images", "/image/v2/images/%s" % image["id"],
                 "/image/v2/images/%s/file" % image["id"]):
        assert client.simulate_get(path).status_code == 401

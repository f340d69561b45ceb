"""Signed download URLs for compute agents and compute_image_ref."""

from __future__ import annotations

import hashlib
import time
import urllib.parse

import pytest

from flotilla import exception, images
from flotilla.context import RequestContext
from tests.fixtures.image_app import qcow2_bytes


def _path_and_query(url):
    parsed = urllib.parse.urlsplit(url)
    assert parsed.scheme == "http" and parsed.netloc == "api.test"
    return parsed.path, parsed.query


def test_compute_image_ref_signed_url_downloads_without_token(client, make_image, image_conf):
    data = qcow2_bytes(10000)
    image = make_image(data=data)
    ref = images.compute_image_ref(image_conf, image["id"])
    assert ref["id"] == image["id"]
    assert ref["sha256"] == hashlib.sha256(data).hexdigest()
    assert ref["disk_format"] == "qcow2"
    path, query = _path_and_query(ref["source"])
    assert path == "/image/v2/images/%s/file" % image["id"]
    got = client.simulate_get(path, query_string=query)
    assert got.status_code == 200 and got.content == data


def test_expired_and_forged_signatures_are_403(client, make_image, image_conf):
    image = make_image(data=qcow2_bytes())
    old = images.compute_image_ref(image_conf, image["id"], now=time.time() - 7200)
    path, query = _path_and_query(old["source"])
    assert client.simulate_get(path, query_string=query).status_code == 403
    fresh = images.compute_image_ref(image_conf, image["id"])
    path, query = _path_and_query(fresh["source"])
    params = dict(urllib.parse.parse_qsl(query))
    forged = dict(params, signature="0" * 64)
    assert client.simulate_get(
        path, query_string=urllib.parse.urlencode(forged)).status_code == 403
    # A later expiry with the old signature is forged too.
    stretched = dict(params, expires=str(int(params["expires"]) + 86400))
    assert client.simulate_get(
        path, query_string=urllib.parse.urlencode(stretched)).status_code == 403
    # A valid signature of another image does not open this one.
    other = make_image("other", data=qcow2_bytes())
    other_path = "/image/v2/images/%s/file" % other["id"]
    assert client.simulate_get(other_path, query_string=query).status_code == 403
    assert client.simulate_get(path, query_string="signature=abc&expires=x").status_code == 403
    # Signatures only open downloads.
    assert client.simulate_get("/image/v2/images/%s" % image["id"],
                               query_string=query).status_code == 401


def test_signing_key_falls_back_to_rpc_key(image_conf):
    image_conf.set_override("download_signing_key", None, group="image")
    image_conf.set_override("signing_key", "rpc-key", group="rpc")
    sig = images.download_signature(image_conf, "i", 5)
    image_conf.set_override("signing_key", "other", group="rpc")
    assert images.download_signature(image_conf, "i", 5) != sig
    image_conf.set_override("signing_key", None, group="rpc")
    with pytest.raises(exception.FlotillaException, match="download_signing_key"):
        images.download_signature(image_conf, "i", 5)


def test_compute_image_ref_unknown_or_not_active(make_image, image_conf):
    with pytest.raises(exception.ImageNotFound):
        images.compute_image_ref(image_conf, "11111111-2222-3333-4444-555555555555")
    with pytest.raises(exception.ImageNotFound):
        images.compute_image_ref(image_conf, "../../etc/passwd")
    queued = make_image()
    with pytest.raises(exception.ImageNotFound) as info:
        images.compute_image_ref(image_conf, queued["id"])
    assert isinstance(info.value, exception.ImageNotActive) and info.value.code == 400


def test_compute_image_ref_file_source_without_endpoint(make_image, image_conf):
    image_conf.set_override("public_endpoint", None, group="image")
    data = qcow2_bytes()
    image = make_image(data=data)
    ref = images.compute_image_ref(image_conf, image["id"])
    assert ref["source"].startswith("file://")
    path = urllib.parse.unquote(urllib.parse.urlsplit(ref["source"]).path)
    with open(path, "rb") as f:
        assert f.read() == data


def test_check_image_usable_by_project(make_image, image_conf):
    mine = make_image("mine", project="p1", data=qcow2_bytes())
    theirs = make_image("theirs", project="p2", data=qcow2_bytes())
    p1 = RequestContext(project_id="p1", roles=["member"])
    assert images.check_image_usable(p1, mine["id"]).id == mine["id"]
    with pytest.raises(exception.ImageNotFound):
        images.check_image_usable(p1, theirs["id"])
    with pytest.raises(exception.ImageNotFound):
        images.compute_image_ref(image_conf, theirs["id"], ctxt=p1)
    admin = RequestContext(project_id="p9", roles=["admin"])
    assert images.compute_image_ref(image_conf, theirs["id"], ctxt=admin)["id"] == theirs["id"]


def test_endpoint_falls_back_to_api_public_endpoint(make_image, image_conf):
    image_conf.set_override("public_endpoint", None, group="image")
    image_conf.set_override("public_endpoint", "https://cloud.example:8774/", group="api")
    image = make_image(data=qcow2_bytes())
    ref = images.compute_image_ref(image_conf, image["id"])
    assert ref["source"].startswith(
        "https://cloud.example:8774/image/v2/images/%s/file?expires=" % image["id"])

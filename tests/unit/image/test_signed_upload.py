"""Signed snapshot upload URLs: for one image, once, until they expire."""

from __future__ import annotations

import hashlib
import time
import urllib.parse

import pytest

from flotilla import exception, images
from flotilla.db import images as images_db
from tests.fixtures.image_app import headers, qcow2_bytes

OCTET = {"Content-Type": "application/octet-stream"}


def _split(url):
    parsed = urllib.parse.urlsplit(url)
    assert parsed.scheme == "http" and parsed.netloc == "api.test"
    return parsed.path, parsed.query


def _put(client, url, data, extra=None):
    path, query = _split(url)
    return client.simulate_put(path, query_string=query, body=data,
                               headers=dict(OCTET, **(extra or {})))


def test_an_agent_uploads_once_without_a_token(client, make_image, image_conf):
    image = make_image()
    url = images.arm_upload_url(image_conf, image["id"])
    data = qcow2_bytes(20000)
    assert _put(client, url, data).status_code == 204
    stored = images_db.image_get(image["id"])
    assert stored.status == "active" and stored.size == len(data)
    assert stored.checksum == hashlib.sha256(data).hexdigest()
    assert stored.upload_token is None
    # The same URL again: used already.
    again = _put(client, url, data)
    assert again.status_code == 409 and "used already" in again.text


def test_the_nonce_is_kept_hashed_never_in_clear(make_image, image_conf):
    image = make_image()
    url = images.arm_upload_url(image_conf, image["id"])
    nonce = dict(urllib.parse.parse_qsl(_split(url)[1]))["nonce"]
    row = images_db.image_get(image["id"])
    assert row.upload_token == hashlib.sha256(nonce.encode()).hexdigest()
    assert nonce not in str(row.to_dict()) and "upload_token" not in row.to_dict()


def test_a_new_url_disarms_the_old_one(client, make_image, image_conf):
    image = make_image()
    first = images.arm_upload_url(image_conf, image["id"])
    second = images.arm_upload_url(image_conf, image["id"])
    assert _put(client, first, qcow2_bytes()).status_code == 409
    assert images_db.image_get(image["id"]).status == "queued"
    assert _put(client, second, qcow2_bytes()).status_code == 204


def test_expired_forged_and_other_images_urls_are_403(client, make_image, image_conf):
    image = make_image()
    other = make_image("other")
    old = images.arm_upload_url(image_conf, image["id"], now=time.time() - 30 * 3600)
    assert _put(client, old, qcow2_bytes()).status_code == 403
    url = images.arm_upload_url(image_conf, image["id"])
    path, query = _split(url)
    params = dict(urllib.parse.parse_qsl(query))
    for forged in (dict(params, signature="0" * 64),
                   dict(params, nonce="another-nonce"),
                   dict(params, expires=str(int(params["expires"]) + 86400)),
                   {k: v for k, v in params.items() if k != "nonce"}):
        got = client.simulate_put(path, query_string=urllib.parse.urlencode(forged),
                                  body=qcow2_bytes(), headers=OCTET)
        assert got.status_code == 403, forged
    # A valid URL of this image opens no other image.
    other_path = "/image/v2/images/%s/file" % other["id"]
    assert client.simulate_put(other_path, query_string=query, body=qcow2_bytes(),
                               headers=OCTET).status_code == 403
    # A download signature is no upload signature, and the other way round.
    download = dict(urllib.parse.parse_qsl(_split(
        images.signed_download_url(image_conf, image["id"]))[1]))
    assert client.simulate_put(path, query_string=urllib.parse.urlencode(
        dict(download, nonce=params["nonce"])), body=qcow2_bytes(),
        headers=OCTET).status_code == 403
    assert client.simulate_get(path, query_string=query).status_code == 403
    # After all that the good URL still works, once.
    assert _put(client, url, qcow2_bytes()).status_code == 204


def test_a_token_does_not_replace_the_signature_check(client, make_image, image_conf):
    image = make_image()
    url = images.arm_upload_url(image_conf, image["id"])
    path, query = _split(url)
    params = dict(urllib.parse.parse_qsl(query), signature="f" * 64)
    got = client.simulate_put(path, query_string=urllib.parse.urlencode(params),
                              body=qcow2_bytes(), headers=dict(OCTET, **headers("p1")))
    assert got.status_code == 403


def test_an_image_deleted_before_the_upload_is_404(client, make_image, image_conf):
    image = make_image()
    url = images.arm_upload_url(image_conf, image["id"])
    assert client.simulate_delete("/image/v2/images/%s" % image["id"],
                                  headers=headers("p1")).status_code == 204
    assert _put(client, url, qcow2_bytes()).status_code == 404


def test_a_failed_upload_stores_nothing_and_the_url_is_spent(client, make_image,
                                                             image_conf, tmp_path):
    image = make_image()
    url = images.arm_upload_url(image_conf, image["id"])
    assert _put(client, url, b"raw bytes, not qcow2" * 10).status_code == 400
    assert images_db.image_get(image["id"]).status == "queued"
    assert list((tmp_path / "images").iterdir()) == []
    assert _put(client, url, qcow2_bytes()).status_code == 409


def test_arming_needs_a_queued_image_and_an_endpoint(make_image, image_conf):
    image = make_image(data=qcow2_bytes())
    with pytest.raises(exception.ImageStatusConflict):
        images.arm_upload_url(image_conf, image["id"])
    queued = make_image("q")
    image_conf.clear_override("public_endpoint", group="image")
    with pytest.raises(exception.FlotillaException, match="public_endpoint"):
        images.arm_upload_url(image_conf, queued["id"])


def test_the_signature_is_never_logged(client, make_image, image_conf, caplog):
    image = make_image()
    url = images.arm_upload_url(image_conf, image["id"])
    params = dict(urllib.parse.parse_qsl(_split(url)[1]))
    with caplog.at_level("DEBUG"):
        assert _put(client, url, qcow2_bytes()).status_code == 204
    assert params["signature"] not in caplog.text and params["nonce"] not in caplog.text


def test_discard_deletes_or_kills_with_a_reason(make_image, image_conf, monkeypatch):
    first = make_image("one")
    assert images.discard_image(image_conf, first["id"], "failed") == "deleted"
    assert images.discard_image(image_conf, first["id"], "failed") == "gone"
    second = make_image("two")

    def refuse(image_id):
        raise exception.DBError(reason="database says no")
    monkeypatch.setattr(images_db, "image_destroy", refuse)
    assert images.discard_image(image_conf, second["id"], "the copy failed") == "killed"
    row = images_db.image_get(second["id"])
    assert row.status == "killed"
    assert row.properties[images_db.KILLED_REASON_KEY] == "the copy failed"

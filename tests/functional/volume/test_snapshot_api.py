"""Volume snapshots and volumes from a snapshot or an image at the Block
Storage API: what is checked (400 naming the field, 404, 409), what is
recorded, the quotas, and what reaches the volume service (a recording
endpoint)."""

from __future__ import annotations

import datetime

import pytest

from conductor.flows import snapshot_reaper
from flotilla import states as st
from flotilla.db import images as images_db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import IMAGE_ID, api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import (
    V,
    _available,
    _create,
    _server,
    cloud,  # noqa: F401
)

VERSION = {"OpenStack-API-Version": "volume 3.65"}


def _snap(cloud, volume_id, who="member", headers=VERSION, **spec):  # noqa: F811
    body = {"volume_id": volume_id, "name": "s", "description": None, "metadata": None}
    body.update(spec)
    return cloud.request("POST", V + "/snapshots", who, json={"snapshot": body},
                         headers=headers)


def _available_snapshot(cloud, volume_id, **spec) -> str:  # noqa: F811
    r = _snap(cloud, volume_id, **spec)
    assert r.status_code == 202, r.text
    sid = r.json["snapshot"]["id"]
    sdb.snapshot_update(sid, {"status": st.SNAPSHOT_AVAILABLE, "path": "/pool/s-" + sid},
                        expected_status=st.SNAPSHOT_CREATING)
    return sid


def test_create_records_creating_and_casts_list_show_update(cloud):  # noqa: F811
    vid = _available(cloud, size=2)
    r = _snap(cloud, vid, name="before", description="d", metadata={"k": "v"})
    assert r.status_code == 202, r.text
    snap = r.json["snapshot"]
    assert (snap["status"], snap["size"], snap["volume_id"], snap["name"],
            snap["metadata"]) == ("creating", 2, vid, "before", {"k": "v"})
    row = sdb.snapshot_get(snap["id"])
    assert (row.host, row.project_id, row.status_deadline is not None) == \
        ("vol1", "p1", True)
    assert cloud.volume.wait_for("create_snapshot")[0]["snapshot_id"] == snap["id"]

    listed = cloud.request("GET", V + "/snapshots/detail").json["snapshots"]
    assert [(s["id"], s["os-extended-snapshot-attributes:project_id"]) for s in listed] \
        == [(snap["id"], "p1")]
    assert [s["id"] for s in cloud.request("GET", V + "/snapshots").json["snapshots"]] \
        == [snap["id"]]
    assert cloud.request("GET", V + "/snapshots/detail?name=nope").json["snapshots"] == []
    # Another project sees nothing of it.
    assert cloud.request("GET", V + "/snapshots/detail", "other").json["snapshots"] == []
    assert cloud.request("GET", V + "/snapshots/" + snap["id"], "other").status_code == 404

    r = cloud.request("PUT", V + "/snapshots/" + snap["id"],
                      json={"snapshot": {"name": "after", "metadata": {"a": "b"}}})
    assert r.status_code == 200, r.text
    shown = cloud.request("GET", V + "/snapshots/" + snap["id"]).json["snapshot"]
    assert (shown["name"], shown["metadata"]) == ("after", {"a": "b"})
    r = cloud.request("PUT", V + "/snapshots/" + snap["id"],
                      json={"snapshot": {"size": 3}})
    assert r.status_code == 400 and "size" in r.text


def test_bad_input_names_the_field(cloud):  # noqa: F811
    vid = _available(cloud)
    r = cloud.request("POST", V + "/snapshots", json={"snapshot": {"name": "x"}})
    assert r.status_code == 400 and "volume_id" in r.text, r.text
    r = _snap(cloud, 5)
    assert r.status_code == 400 and "volume_id" in r.text, r.text
    r = _snap(cloud, vid, name="n" * 256)
    assert r.status_code == 400 and "name" in r.text, r.text
    r = _snap(cloud, vid, metadata={"k": 1})
    assert r.status_code == 400 and "metadata" in r.text, r.text
    r = _snap(cloud, vid, force="maybe")
    assert r.status_code == 400 and "force" in r.text, r.text
    r = _snap(cloud, vid, force=False, headers={"OpenStack-API-Version": "volume 3.66"})
    assert r.status_code == 400 and "force" in r.text, r.text
    assert _snap(cloud, "0b5f1e4a-6b6c-4b8e-9a54-0a7a4c1c3c11").status_code == 404
    assert cloud.request("GET", V + "/snapshots/nope").status_code == 404
    assert cloud.request("DELETE", V + "/snapshots/nope").status_code == 404
    # Another project's volume does not exist for this one.
    assert _snap(cloud, vid, who="other").status_code == 404


def test_in_use_needs_force_when_force_is_sent_and_other_states_conflict(cloud):  # noqa: F811
    vid = _available(cloud)
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    r = _snap(cloud, vid, force=False)
    assert r.status_code == 400 and "force" in r.text, r.text
    # The CLI at 3.65 omits force; the SDK may send it true.
    assert _snap(cloud, vid).status_code == 202
    assert _snap(cloud, vid, force=True).status_code == 202
    assert _snap(cloud, vid, headers={"OpenStack-API-Version": "volume 3.66"}
                 ).status_code == 202
    vdb.volume_update(vid, {"status": st.VOLUME_ATTACHING})
    r = _snap(cloud, vid)
    assert r.status_code == 409 and "attaching" in r.text, r.text


def test_snapshots_count_in_the_quotas(cloud):  # noqa: F811
    vid = _available(cloud, size=2)
    r = cloud.request("PUT", V + "/os-quota-sets/p1", "admin",
                      json={"quota_set": {"gigabytes": 5, "snapshots": 1}})
    assert r.status_code == 200, r.text
    assert _snap(cloud, vid).status_code == 202
    r = _snap(cloud, vid)
    assert r.status_code == 413 and "snapshots" in r.text, r.text
    cloud.request("PUT", V + "/os-quota-sets/p1", "admin",
                  json={"quota_set": {"snapshots": 5}})
    assert _snap(cloud, vid).status_code == 413      # 2 + 2 + 2 > 5 gigabytes
    # A volume's gigabytes count the snapshots' too.
    r = _create(cloud, size=2)
    assert r.status_code == 413 and "gigabytes" in r.text, r.text
    usage = cloud.request("GET", V + "/os-quota-sets/p1?usage=True").json["quota_set"]
    assert usage["snapshots"]["in_use"] == 1 and usage["gigabytes"]["in_use"] == 4
    limits = cloud.request("GET", V + "/limits").json["limits"]["absolute"]
    assert (limits["maxTotalSnapshots"], limits["totalSnapshotsUsed"]) == (5, 1)


def test_a_volume_with_snapshots_cannot_be_deleted(cloud):  # noqa: F811
    vid = _available(cloud)
    sid = _available_snapshot(cloud, vid)
    r = cloud.request("DELETE", V + "/volumes/" + vid)
    assert r.status_code == 400 and "snapshot" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    r = cloud.request("DELETE", V + "/snapshots/" + sid)
    assert r.status_code == 202, r.text
    assert sdb.snapshot_get(sid).status == st.SNAPSHOT_DELETING
    assert cloud.volume.wait_for("delete_snapshot")[0]["snapshot_id"] == sid
    # Deleting again while deleting: a state conflict.
    assert cloud.request("DELETE", V + "/snapshots/" + sid).status_code == 409
    sdb.snapshot_destroy(sid, expected_status=st.SNAPSHOT_DELETING)
    assert cloud.request("GET", V + "/snapshots/" + sid).status_code == 404
    assert cloud.request("DELETE", V + "/volumes/" + vid).status_code == 202


def test_a_creating_snapshot_cannot_be_deleted_and_the_reaper_ends_it(cloud):  # noqa: F811
    vid = _available(cloud)
    sid = _snap(cloud, vid).json["snapshot"]["id"]
    r = cloud.request("DELETE", V + "/snapshots/" + sid)
    assert r.status_code == 409 and "creating" in r.text, r.text
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    sdb.snapshot_update(sid, {"status_deadline": past})
    assert snapshot_reaper.reap() == 1
    row = sdb.snapshot_get(sid)
    assert row.status == st.SNAPSHOT_ERROR and "timed out" in row.status_reason
    assert cloud.request("DELETE", V + "/snapshots/" + sid).status_code == 202


def test_volume_from_a_snapshot(cloud):  # noqa: F811
    vid = _available(cloud, size=2)
    sid = _available_snapshot(cloud, vid)
    r = _create(cloud, size=1, snapshot_id=sid)
    assert r.status_code == 400 and "size" in r.text, r.text
    r = _create(cloud, size=None, snapshot_id=sid)
    assert r.status_code == 202, r.text
    new = r.json["volume"]
    assert (new["size"], new["snapshot_id"], new["bootable"]) == (2, sid, "false")
    assert vdb.volume_get(new["id"]).host == "vol1"
    calls = cloud.volume.wait_for("create_volume", count=2)   # the source, this one
    assert calls[-1]["volume_id"] == new["id"]
    assert _create(cloud, size=3, snapshot_id=sid).status_code == 202
    # A snapshot a volume is being made from stays.
    r = cloud.request("DELETE", V + "/snapshots/" + sid)
    assert r.status_code == 400 and "being created" in r.text, r.text
    assert _create(cloud, snapshot_id="0b5f1e4a-6b6c-4b8e-9a54-0a7a4c1c3c11"
                   ).status_code == 404
    assert _create(cloud, snapshot_id=sid, who="other").status_code == 404
    sdb.snapshot_update(sid, {"status": st.SNAPSHOT_ERROR})
    r = _create(cloud, snapshot_id=sid)
    assert r.status_code == 400 and "snapshot_id" in r.text, r.text
    r = _create(cloud, snapshot_id=sid, imageRef=IMAGE_ID)
    assert r.status_code == 400 and "imageRef" in r.text, r.text


def test_a_volume_from_a_boot_volumes_snapshot_boots_too(cloud):  # noqa: F811
    """As Cinder: bootable and the image's metadata come along, so a
    snapshot of a boot volume gives a volume a server can boot from."""
    r = _create(cloud, size=1, imageRef=IMAGE_ID)
    assert r.status_code == 202, r.text
    vid = r.json["volume"]["id"]
    vdb.volume_update(vid, {"status": st.VOLUME_AVAILABLE, "bootable": True,
                            "path": "/pool/" + vid})
    sid = _available_snapshot(cloud, vid)
    r = _create(cloud, size=None, snapshot_id=sid)
    assert r.status_code == 202, r.text
    new = r.json["volume"]
    assert (new["bootable"], new["volume_image_metadata"]["image_id"]) == \
        ("true", IMAGE_ID)
    row = vdb.volume_get(new["id"])
    assert (row.bootable, row.image_id, row.snapshot_id) == (True, None, sid)


def test_volume_from_an_image_is_bootable_and_shows_its_metadata(cloud):  # noqa: F811
    r = _create(cloud, size=None, imageRef=IMAGE_ID)
    assert r.status_code == 400 and "size" in r.text, r.text
    # The image's own properties come along; Flotilla's bookkeeping does not.
    images_db.image_update(IMAGE_ID, {"properties": {"hw_disk_bus": "virtio",
                                                     images_db.MD5_KEY: "0" * 32,
                                                     images_db.TAGS_KEY: "[]"}})
    r = _create(cloud, size=1, imageRef=IMAGE_ID)
    assert r.status_code == 202, r.text
    vol = r.json["volume"]
    row = vdb.volume_get(vol["id"])
    assert (row.image_id, row.snapshot_id) == (IMAGE_ID, None)
    meta = vol["volume_image_metadata"]
    assert (meta["image_id"], meta["image_name"], meta["disk_format"]) == \
        (IMAGE_ID, "cirros", "qcow2")
    assert meta["hw_disk_bus"] == "virtio"
    assert not [key for key in meta if key.startswith("_")], meta
    assert cloud.volume.wait_for("create_volume")[0]["volume_id"] == vol["id"]
    # The volume service sets bootable when the image is written.
    vdb.volume_update(vol["id"], {"status": st.VOLUME_AVAILABLE, "bootable": True})
    shown = cloud.request("GET", V + "/volumes/" + vol["id"]).json["volume"]
    assert shown["bootable"] == "true" and shown["volume_image_metadata"]["size"] == "1024"


def test_volume_from_an_image_larger_than_the_size_is_refused(cloud):  # noqa: F811
    from flotilla.db import images as images_db
    images_db.image_update(IMAGE_ID, {"min_disk": 3})
    r = _create(cloud, size=2, imageRef=IMAGE_ID)
    assert r.status_code == 400 and "size" in r.text, r.text
    assert _create(cloud, size=3, imageRef=IMAGE_ID).status_code == 202


@pytest.mark.parametrize("status", [st.VOLUME_CREATING, st.VOLUME_DELETING])
def test_snapshot_of_a_volume_in_a_transitional_status_conflicts(cloud, status):  # noqa: F811
    vid = _available(cloud)
    vdb.volume_update(vid, {"status": status})
    assert _snap(cloud, vid).status_code == 409


def test_attached_volume_snapshot_is_allowed(cloud):  # noqa: F811
    # An in-use volume with an attachment row: snapshot allowed (crash-consistent).
    vid = _available(cloud)
    uuid = _server(cloud)
    vdb.attachment_create(vid, uuid, "host1")
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    assert _snap(cloud, vid).status_code == 202

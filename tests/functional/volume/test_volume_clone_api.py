"""Volume clones (``source_volid`` of a volume create) at the Block Storage
API: what is checked (404, 400 naming the field, 409 below RPC 1.4), what
is recorded (on the source's volume host, bootable and image metadata
inherited, quotas) and what reaches the volume service (a recording
endpoint)."""

from __future__ import annotations

import falcon.testing
import pytest

from api.app import create_app
from api.volume import sources
from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import IMAGE_ID, api_cloud  # noqa: F401
from tests.functional.volume.test_snapshot_api import _available_snapshot
from tests.functional.volume.test_volume_api import (
    V,
    _available,
    _create,
    _server,
    cloud,  # noqa: F401
)
from volume.rpcapi import VolumeAPI

UNKNOWN = "0b5f1e4a-6b6c-4b8e-9a54-0a7a4c1c3c11"


def test_a_clone_is_made_on_the_sources_host_and_shows_its_source(cloud):  # noqa: F811
    vid = _available(cloud, size=2)
    r = _create(cloud, size=None, source_volid=vid, name="copy")
    assert r.status_code == 202, r.text
    clone = r.json["volume"]
    assert (clone["status"], clone["size"], clone["source_volid"], clone["snapshot_id"],
            clone["bootable"]) == ("creating", 2, vid, None, "false")
    row = vdb.volume_get(clone["id"])
    assert (row.host, row.source_volid, row.status_deadline is not None) == \
        ("vol1", vid, True)
    calls = cloud.volume.wait_for("create_volume", count=2)   # the source, the clone
    assert calls[-1]["volume_id"] == clone["id"]
    shown = cloud.request("GET", V + "/volumes/" + clone["id"]).json["volume"]
    assert shown["source_volid"] == vid
    listed = cloud.request("GET", V + "/volumes/detail").json["volumes"]
    assert {v["id"]: v["source_volid"] for v in listed} == {vid: None, clone["id"]: vid}
    # Larger than the source: fine (the volume service grows the copy).
    r = _create(cloud, size=3, source_volid=vid)
    assert r.status_code == 202 and r.json["volume"]["size"] == 3, r.text


def test_a_clone_may_not_be_smaller_than_its_source(cloud):  # noqa: F811
    vid = _available(cloud, size=2)
    r = _create(cloud, size=1, source_volid=vid)
    assert r.status_code == 400 and "size" in r.text and "source volume" in r.text, r.text
    assert [v.id for v in vdb.volume_get_all()] == [vid]


def test_an_in_use_volume_may_be_cloned(cloud):  # noqa: F811
    vid = _available(cloud)
    vdb.attachment_create(vid, _server(cloud), "host1")
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    r = _create(cloud, source_volid=vid)
    assert r.status_code == 202, r.text
    assert r.json["volume"]["source_volid"] == vid


@pytest.mark.parametrize("status", [st.VOLUME_CREATING, st.VOLUME_ERROR,
                                    st.VOLUME_DELETING, st.VOLUME_EXTENDING,
                                    st.VOLUME_ATTACHING])
def test_a_source_in_another_status_is_400_naming_source_volid(cloud, status):  # noqa: F811
    vid = _available(cloud)
    vdb.volume_update(vid, {"status": status})
    r = _create(cloud, source_volid=vid)
    assert r.status_code == 400, r.text
    assert "source_volid" in r.text and status in r.text, r.text
    assert [v.id for v in vdb.volume_get_all()] == [vid]


def test_unknown_and_other_projects_sources_are_404(cloud):  # noqa: F811
    vid = _available(cloud)
    assert _create(cloud, source_volid=UNKNOWN).status_code == 404
    assert _create(cloud, source_volid=vid, who="other").status_code == 404
    r = _create(cloud, source_volid=5)
    assert r.status_code == 400 and "source_volid" in r.text, r.text
    assert [v.id for v in vdb.volume_get_all()] == [vid]


@pytest.mark.parametrize("other, named", [("snapshot_id", "source_volid"),
                                          ("imageRef", "imageRef")])
def test_one_source_only(cloud, other, named):  # noqa: F811
    vid = _available(cloud)
    value = _available_snapshot(cloud, vid) if other == "snapshot_id" else IMAGE_ID
    r = _create(cloud, source_volid=vid, **{other: value})
    assert r.status_code == 400 and "one source" in r.text, r.text
    assert "field/attribute %s" % named in r.text, r.text


def test_bootable_and_image_metadata_come_along(cloud):  # noqa: F811
    r = _create(cloud, size=1, imageRef=IMAGE_ID)
    assert r.status_code == 202, r.text
    vid = r.json["volume"]["id"]
    vdb.volume_update(vid, {"status": st.VOLUME_AVAILABLE, "bootable": True,
                            "path": "/pool/" + vid})
    r = _create(cloud, size=None, source_volid=vid)
    assert r.status_code == 202, r.text
    clone = r.json["volume"]
    assert (clone["bootable"], clone["volume_image_metadata"]["image_id"]) == \
        ("true", IMAGE_ID)
    row = vdb.volume_get(clone["id"])
    assert (row.bootable, row.image_id, row.snapshot_id, row.source_volid) == \
        (True, None, None, vid)


def test_clones_count_in_the_volume_quotas(cloud):  # noqa: F811
    vid = _available(cloud, size=2)
    r = cloud.request("PUT", V + "/os-quota-sets/p1", "admin",
                      json={"quota_set": {"gigabytes": 5, "volumes": 3}})
    assert r.status_code == 200, r.text
    assert _create(cloud, size=None, source_volid=vid).status_code == 202
    r = _create(cloud, size=None, source_volid=vid)
    assert r.status_code == 413 and "gigabytes" in r.text, r.text
    cloud.request("PUT", V + "/os-quota-sets/p1", "admin",
                  json={"quota_set": {"gigabytes": 50, "volumes": 2}})
    r = _create(cloud, size=None, source_volid=vid)
    assert r.status_code == 413 and "volumes" in r.text, r.text


def test_a_source_that_moves_on_before_the_insert_is_400(cloud, monkeypatch):  # noqa: F811
    """The status read at resolve is checked again in the insert's
    transaction (sources.source_guard): a delete that began between wins."""
    vid = _available(cloud)
    resolve = sources.resolve

    def resolve_then_delete(ctx, conf, args):
        source = resolve(ctx, conf, args)
        vdb.volume_update(vid, {"status": st.VOLUME_DELETING})
        return source

    monkeypatch.setattr(sources, "resolve", resolve_then_delete)
    r = _create(cloud, source_volid=vid)
    assert r.status_code == 400 and "source_volid" in r.text, r.text
    assert [v.id for v in vdb.volume_get_all()] == [vid]


def test_a_source_being_cloned_cannot_be_deleted(cloud):  # noqa: F811
    vid = _available(cloud)
    clone = _create(cloud, source_volid=vid).json["volume"]["id"]
    r = cloud.request("DELETE", V + "/volumes/" + vid)
    assert r.status_code == 400 and "being created" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    vdb.volume_update(clone, {"status": st.VOLUME_AVAILABLE, "path": "/pool/" + clone},
                      expected_status=st.VOLUME_CREATING)
    # Once made the clone is a volume of its own: the source goes.
    assert cloud.request("DELETE", V + "/volumes/" + vid).status_code == 202
    shown = cloud.request("GET", V + "/volumes/" + clone).json["volume"]
    assert shown["source_volid"] == vid


def test_a_source_on_a_host_that_is_down_leaves_the_clone_in_error(cloud):  # noqa: F811
    vid = _available(cloud)
    db.service_set_disabled("vol1", "flotilla-volume", True, "test")
    r = _create(cloud, source_volid=vid)
    assert r.status_code == 202 and r.json["volume"]["status"] == "error", r.text
    assert len(cloud.volume.wait_for("create_volume")) == 1    # the source's only
    assert vdb.volume_get(r.json["volume"]["id"]).host is None


def test_volume_services_below_1_4_refuse_clones_with_409(cloud):  # noqa: F811
    vid = _available(cloud)
    cloud.conf.set_override("volume", "1.3", group="upgrade_levels")
    client = falcon.testing.TestClient(create_app(cloud.conf, cloud.transport))

    def create(**spec):
        body = {"size": 1, "name": "v", "source_volid": None, "snapshot_id": None,
                "imageRef": None, **spec}
        return client.simulate_post(V + "/volumes", headers=cloud.headers("member"),
                                    json={"volume": body})

    r = create(source_volid=vid)
    assert r.status_code == 409 and "1.4" in r.text and "blank" in r.text, r.text
    assert [v.id for v in vdb.volume_get_all()] == [vid]
    # Other creates still go at 1.3.
    assert create().status_code == 202
    assert create(snapshot_id=_available_snapshot(cloud, vid)).status_code == 202


def test_the_clone_cast_needs_1_4(cloud):  # noqa: F811
    capped = VolumeAPI(cloud.transport, version_cap="1.3")
    assert not capped.can_clone_volumes()
    with pytest.raises(exception.UnsupportedVersion):
        capped.create_volume(RequestContext(), "vol1", UNKNOWN, from_source=True,
                             from_volume=True)
    assert VolumeAPI(cloud.transport, version_cap="1.4").can_clone_volumes()

"""Volume and snapshot metadata (``volume set --property`` and friends),
the volume summary and the attachments as Cinder lists them, at the API."""

from __future__ import annotations

import pytest

from flotilla import states as st
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from tests.functional.api.fixtures import api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import V, _available, cloud  # noqa: F401


def _snapshot(cloud, vid: str) -> str:  # noqa: F811
    r = cloud.request("POST", V + "/snapshots", json={"snapshot": {"volume_id": vid,
                                                                   "name": "s"}})
    assert r.status_code == 202, r.text
    sid = r.json["snapshot"]["id"]
    sdb.snapshot_update(sid, {"status": st.SNAPSHOT_AVAILABLE})
    return sid


@pytest.fixture(params=["volume", "snapshot"])
def base(request, cloud):  # noqa: F811
    vid = _available(cloud, metadata={"a": "1"})
    if request.param == "volume":
        return V + "/volumes/%s" % vid, {"a": "1"}
    return V + "/snapshots/%s" % _snapshot(cloud, vid), {}


def test_merge_replace_and_each_key(cloud, base):  # noqa: F811
    url, start = base
    assert cloud.request("GET", url + "/metadata").json == {"metadata": start}
    r = cloud.request("POST", url + "/metadata", json={"metadata": {"b": "2", "c": "3"}})
    assert r.status_code == 200, r.text
    assert r.json == {"metadata": dict(start, b="2", c="3")}
    r = cloud.request("PUT", url + "/metadata/b", json={"meta": {"b": "two"}})
    assert (r.status_code, r.json) == (200, {"meta": {"b": "two"}})
    assert cloud.request("GET", url + "/metadata/b").json == {"meta": {"b": "two"}}
    assert cloud.request("DELETE", url + "/metadata/c").status_code == 200
    assert cloud.request("GET", url + "/metadata/c").status_code == 404
    assert cloud.request("DELETE", url + "/metadata/c").status_code == 404
    # The resource itself shows it too.
    kind = "volume" if "/volumes/" in url else "snapshot"
    assert cloud.request("GET", url).json[kind]["metadata"] == dict(start, b="two")
    r = cloud.request("PUT", url + "/metadata", json={"metadata": {"only": "this"}})
    assert r.json == {"metadata": {"only": "this"}}
    assert cloud.request("GET", url + "/metadata").json == {"metadata": {"only": "this"}}


def test_bad_metadata_is_400_naming_it_and_changes_nothing(cloud, base):  # noqa: F811
    url, start = base
    for body in ({"metadata": {"": "x"}}, {"metadata": {"k" * 256: "x"}},
                 {"metadata": {"k": "v" * 256}}, {"metadata": {"k": 1}},
                 {"metadata": ["k"]}, {"meta": {"k": "v"}}):
        r = cloud.request("POST", url + "/metadata", json=body)
        assert r.status_code == 400 and "meta" in r.text, (body, r.text)
    full = {"k%d" % i: "v" for i in range(128 - len(start))}
    assert cloud.request("POST", url + "/metadata", json={"metadata": full}).status_code \
        == 200
    r = cloud.request("POST", url + "/metadata", json={"metadata": {"one": "more"}})
    assert r.status_code == 400 and "metadata" in r.text and "128" in r.text
    assert len(cloud.request("GET", url + "/metadata").json["metadata"]) == 128
    for body in ({"meta": {"other": "v"}}, {"meta": {"k1": "v", "k2": "v"}}, {"meta": {}}):
        r = cloud.request("PUT", url + "/metadata/k1", json=body)
        assert r.status_code == 400 and "meta" in r.text, (body, r.text)
    assert cloud.request("GET", url + "/metadata/k1").json == {"meta": {"k1": "v"}}


def test_another_projects_metadata_is_404(cloud, base):  # noqa: F811
    url, _start = base
    assert cloud.request("GET", url + "/metadata", "other").status_code == 404
    r = cloud.request("POST", url + "/metadata", "other", json={"metadata": {"x": "y"}})
    assert r.status_code == 404
    assert cloud.request("DELETE", url + "/metadata/a", "other").status_code == 404
    assert "x" not in cloud.request("GET", url + "/metadata").json["metadata"]


def test_summary_counts_the_projects_volumes(cloud):  # noqa: F811
    r = cloud.request("GET", V + "/volumes/summary")
    assert r.json == {"volume-summary": {"total_count": 0, "total_size": 0,
                                         "metadata": {}}}
    _available(cloud, size=2, metadata={"tier": "gold"})
    _available(cloud, size=3, metadata={"tier": "silver"})
    _available(cloud, "other", size=5)
    r = cloud.request("GET", V + "/volumes/summary")
    assert r.status_code == 200, r.text
    assert r.json == {"volume-summary": {"total_count": 2, "total_size": 5,
                                         "metadata": {"tier": ["gold", "silver"]}}}
    everyone = cloud.request("GET", V + "/volumes/summary?all_tenants=1", "admin")
    assert everyone.json["volume-summary"]["total_count"] == 3


def test_attachments_are_read_from_3_27(cloud):  # noqa: F811
    from tests.functional.volume.test_volume_api import _server
    vid, uuid = _available(cloud), _server(cloud)
    other_vid = _available(cloud, "other")
    att = vdb.attachment_create(vid, uuid, "host1")
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb",
                                     "connection_info": {"host": "127.0.0.1"}})
    new = {"OpenStack-API-Version": "volume 3.27"}
    assert cloud.request("GET", V + "/attachments").status_code == 404   # 3.0
    r = cloud.request("GET", V + "/attachments", headers=new)
    assert r.status_code == 200, r.text
    assert r.json == {"attachments": [{"id": att.uuid, "status": "attached",
                                       "instance": uuid, "volume_id": vid}]}
    shown = cloud.request("GET", V + "/attachments/" + att.uuid, headers=new).json
    assert (shown["attachment"]["attach_mode"], shown["attachment"]["connection_info"]) \
        == ("rw", None)
    admin = cloud.request("GET", V + "/attachments/detail?all_tenants=1", "admin",
                          headers=new).json["attachments"]
    assert [a["connection_info"] for a in admin] == [{"host": "127.0.0.1"}]
    # Filters; another project's is not there.
    for status, count in (("attached", 1), ("detached", 0)):
        listed = cloud.request("GET", V + "/attachments?status=" + status, headers=new)
        assert len(listed.json["attachments"]) == count, status
    assert cloud.request("GET", V + "/attachments?volume_id=" + other_vid,
                         headers=new).json == {"attachments": []}
    assert cloud.request("GET", V + "/attachments/" + att.uuid, "other",
                         headers=new).status_code == 404
    assert cloud.request("GET", V + "/attachments?instance_id=" + uuid, "other",
                         headers=new).json == {"attachments": []}
    # Made and removed through the compute API only.
    assert cloud.request("DELETE", V + "/attachments/" + att.uuid,
                         headers=new).status_code == 404

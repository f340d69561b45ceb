"""The Block Storage v3 subset and os-volume_attachments at the API: what
is checked, what is recorded and what reaches the volume service and the
conductor (recording endpoints)."""

from __future__ import annotations

import pytest

from flotilla import exception, rpc
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from tests.fixtures.recording_endpoint import recording_endpoint
from tests.functional.api.fixtures import C, api_cloud  # noqa: F401
from volume.manager import VolumeManager

V = "/volume/v3"


@pytest.fixture
def cloud(api_cloud):  # noqa: F811
    api_cloud.volume = recording_endpoint(VolumeManager)
    server = rpc.RPCServer(api_cloud.transport, "volume", "vol1", [api_cloud.volume])
    server.start()
    api_cloud._servers.append(server)
    db.service_heartbeat("vol1", "flotilla-volume", "volume")
    return api_cloud


def _create(cloud, who="member", **spec):
    body = {"size": 1, "name": "v", "description": None, "volume_type": None,
            "availability_zone": None, "metadata": None, "imageRef": None,
            "snapshot_id": None, "source_volid": None, "backup_id": None,
            "consistencygroup_id": None}
    body.update(spec)
    return cloud.request("POST", V + "/volumes", who, json={"volume": body})


def _available(cloud, who="member", **spec) -> str:
    r = _create(cloud, who, **spec)
    assert r.status_code == 202, r.text
    vid = r.json["volume"]["id"]
    vdb.volume_update(vid, {"status": st.VOLUME_AVAILABLE, "path": "/pool/" + vid},
                      expected_status=st.VOLUME_CREATING)
    return vid


def _server(cloud) -> str:
    uuid = cloud.create_server(name="web")
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None, "host": "host1"})
    return uuid


def test_discovery_is_public_and_the_catalog_names_block_storage(cloud):
    r = cloud.request("GET", V, "none")
    assert r.status_code == 200, r.text
    version = r.json["version"]
    assert (version["id"], version["min_version"], version["version"]) == \
        ("v3.0", "3.0", "3.71")
    assert cloud.request("GET", "/volume", "none").json["versions"][0]["id"] == "v3.0"
    r = cloud.request("GET", "/identity/v3/auth/catalog")
    assert r.status_code == 200, r.text
    types = {e["type"]: e["endpoints"][0]["url"] for e in r.json["catalog"]}
    assert types["block-storage"].endswith("/volume/v3")


def test_create_records_creating_on_the_volume_host_and_casts(cloud):
    r = _create(cloud, name="data", description="d", metadata={"k": "v"}, size="2")
    assert r.status_code == 202, r.text
    vol = r.json["volume"]
    assert (vol["status"], vol["size"], vol["name"], vol["metadata"]) == \
        ("creating", 2, "data", {"k": "v"})
    assert vol["volume_type"] == "__DEFAULT__" and vol["attachments"] == []
    row = vdb.volume_get(vol["id"])
    assert (row.host, row.project_id, row.status_deadline is not None) == \
        ("vol1", "p1", True)
    assert cloud.volume.wait_for("create_volume")[0]["volume_id"] == vol["id"]
    listed = cloud.request("GET", V + "/volumes/detail").json["volumes"]
    assert [v["id"] for v in listed] == [vol["id"]]
    assert cloud.request("GET", V + "/volumes/detail?name=nope").json["volumes"] == []
    assert cloud.request("GET", V + "/volumes/%s" % vol["id"]).json["volume"]["name"] == "data"


@pytest.mark.parametrize("size, why", [(0, "at least 1"), (-3, "at least 1"),
                                       ("x", "integer"), (1.5, "integer"),
                                       (True, "integer"), (5000, "at most")])
def test_bad_sizes_are_400_naming_size(cloud, size, why):
    r = _create(cloud, size=size)
    assert r.status_code == 400, r.text
    assert "size" in r.text and why in r.text
    assert vdb.volume_get_all() == [] and cloud.volume.calls == []


def test_quota_is_413_naming_the_quota(cloud):
    r = cloud.request("PUT", V + "/os-quota-sets/p1", "admin",
                      json={"quota_set": {"gigabytes": 3, "volumes": 2}})
    assert r.status_code == 200, r.text
    assert _create(cloud, size=2).status_code == 202
    r = _create(cloud, size=2)
    assert r.status_code == 413 and "gigabytes" in r.text, r.text
    assert _create(cloud, size=1).status_code == 202
    r = _create(cloud, size=1)
    assert r.status_code == 413 and "volumes" in r.text, r.text
    usage = cloud.request("GET", V + "/os-quota-sets/p1?usage=True").json["quota_set"]
    assert usage["gigabytes"] == {"limit": 3, "in_use": 3, "reserved": 0, "allocated": 0}
    limits = cloud.request("GET", V + "/limits").json["limits"]["absolute"]
    assert (limits["maxTotalVolumes"], limits["totalVolumesUsed"]) == (2, 2)
    assert cloud.request("PUT", V + "/os-quota-sets/p1", "member",
                         json={"quota_set": {"volumes": 9}}).status_code == 403


def test_unknown_type_and_other_sources_are_refused(cloud):
    assert _create(cloud, volume_type="gold").status_code == 404
    assert _create(cloud, volume_type="__DEFAULT__").status_code == 202
    r = _create(cloud, imageRef="0b5f1e4a-6b6c-4b8e-9a54-0a7a4c1c3c11")
    assert r.status_code == 400 and "imageRef" in r.text
    types = cloud.request("GET", V + "/types?is_public=none").json["volume_types"]
    assert [t["name"] for t in types] == ["__DEFAULT__"]


def test_no_volume_service_leaves_the_volume_in_error_and_it_can_be_deleted(cloud):
    db.service_set_disabled("vol1", "flotilla-volume", True, "test")
    r = _create(cloud)
    assert r.status_code == 202 and r.json["volume"]["status"] == "error", r.text
    assert vdb.volume_get(r.json["volume"]["id"]).status_reason == "no enabled volume service is up"
    assert cloud.volume.calls == []
    r = cloud.request("DELETE", V + "/volumes/%s" % r.json["volume"]["id"])
    assert r.status_code == 202
    assert vdb.volume_get_all() == [] and cloud.volume.calls == []


def test_update_and_delete(cloud):
    vid = _available(cloud)
    r = cloud.request("PUT", V + "/volumes/%s" % vid,
                      json={"volume": {"name": "new", "description": "x"}})
    assert r.status_code == 200 and r.json["volume"]["name"] == "new"
    r = cloud.request("DELETE", V + "/volumes/%s?cascade=False&force=False" % vid)
    assert r.status_code == 202, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_DELETING
    assert cloud.volume.wait_for("delete_volume")[0]["volume_id"] == vid
    # A second delete while deleting: 400, nothing cast.
    r = cloud.request("DELETE", V + "/volumes/%s" % vid)
    assert r.status_code == 400


def test_another_projects_volume_is_404(cloud):
    vid = _available(cloud)
    assert cloud.request("GET", V + "/volumes/%s" % vid, "other").status_code == 404
    assert cloud.request("GET", V + "/volumes/%s" % vid, "admin").status_code == 200


def test_attach_reserves_and_casts_and_attached_volume_cannot_be_deleted(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    r = cloud.request("POST", C + "/servers/%s/os-volume_attachments" % uuid,
                      version="2.89", json={"volumeAttachment": {"volumeId": vid,
                                                                 "device": None}})
    assert r.status_code == 200, r.text
    att = r.json["volumeAttachment"]
    # The device is the one the server's agent reserved, asked before the cast.
    assert (att["volumeId"], att["serverId"], att["device"]) == (vid, uuid, "/dev/vdb")
    asked = cloud.compute.wait_for("reserve_volume_device")[0]
    assert (asked["instance_uuid"], asked["volume_id"]) == (uuid, vid)
    assert vdb.volume_get(vid).status == st.VOLUME_RESERVED
    cast = cloud.conductor.wait_for("attach_volume")[0]
    assert (cast["instance_uuid"], cast["volume_id"], cast["attachment_id"]) == \
        (uuid, vid, att["attachment_id"])
    # In use (reserved): a second attach is 409, a delete 400.
    again = cloud.request("POST", C + "/servers/%s/os-volume_attachments" % uuid,
                          json={"volumeAttachment": {"volumeId": vid}})
    assert again.status_code == 409
    r = cloud.request("DELETE", V + "/volumes/%s" % vid)
    assert r.status_code == 400 and "attached" in r.text
    listed = cloud.request("GET", C + "/servers/%s/os-volume_attachments" % uuid)
    assert [a["volumeId"] for a in listed.json["volumeAttachments"]] == [vid]


def test_attach_refusals(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    url = C + "/servers/%s/os-volume_attachments" % uuid
    r = cloud.request("POST", url, json={"volumeAttachment": {"volumeId": "nope"}})
    assert r.status_code == 400 and "volumeId" in r.text
    r = cloud.request("POST", url, json={"volumeAttachment": {
        "volumeId": "0b5f1e4a-6b6c-4b8e-9a54-0a7a4c1c3c11"}})
    assert r.status_code == 404
    db.instance_update(uuid, {"vm_state": st.PAUSED})
    r = cloud.request("POST", url, json={"volumeAttachment": {"volumeId": vid}})
    assert r.status_code == 409
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    other = _available(cloud, "other")
    db.instance_update(uuid, {"vm_state": st.ACTIVE})
    r = cloud.request("POST", url, json={"volumeAttachment": {"volumeId": other}})
    assert r.status_code == 404


def test_an_attach_the_agent_cannot_reserve_for_leaves_nothing_reserved(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    url = C + "/servers/%s/os-volume_attachments" % uuid

    def full(kwargs):
        raise exception.DeviceNameUnavailable(device="vd*", reason="all 26 in use")

    cloud.compute._results["reserve_volume_device"] = full
    r = cloud.request("POST", url, json={"volumeAttachment": {"volumeId": vid}})
    assert r.status_code == 409 and "all 26 in use" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert vdb.attachments_of_instance(uuid) == []
    # A host whose agent is gone: 503 naming it, at once (no queue).
    db.instance_update(uuid, {"host": "host9"})
    r = cloud.request("POST", url, json={"volumeAttachment": {"volumeId": vid}})
    assert r.status_code == 503 and "host9" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert vdb.attachments_of_instance(uuid) == []
    assert [n for n, _kw in cloud.conductor.calls if n == "attach_volume"] == []


def test_detach(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    url = C + "/servers/%s/os-volume_attachments/%s" % (uuid, vid)
    assert cloud.request("DELETE", url).status_code == 404       # not attached
    att = vdb.attachment_create(vid, uuid, "host1")
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb"})
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    shown = cloud.request("GET", url).json["volumeAttachment"]
    assert shown["device"] == "/dev/vdb"
    # delete_on_termination is shown from 2.3 (as Nova).
    server = cloud.request("GET", C + "/servers/%s" % uuid, version="2.3").json["server"]
    assert server["os-extended-volumes:volumes_attached"] == [
        {"id": vid, "delete_on_termination": False}]
    server = cloud.request("GET", C + "/servers/%s" % uuid).json["server"]
    assert server["os-extended-volumes:volumes_attached"] == [{"id": vid}]
    vol = cloud.request("GET", V + "/volumes/%s" % vid).json["volume"]
    assert [(a["server_id"], a["device"], a["host_name"]) for a in vol["attachments"]] == [
        (uuid, "/dev/vdb", "host1")]
    r = cloud.request("DELETE", url)
    assert r.status_code == 202, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_DETACHING
    cast = cloud.conductor.wait_for("detach_volume")[0]
    assert (cast["volume_id"], cast["attachment_id"]) == (vid, att.uuid)
    assert cloud.request("DELETE", url).status_code == 409     # detaching already


def test_the_compute_service_list_leaves_the_volume_service_out(cloud):
    services = cloud.request("GET", C + "/os-services", "admin").json["services"]
    assert services and all(s["binary"] != "nova-volume" for s in services)
    assert any(s.binary == "flotilla-volume" for s in db.service_get_all())


def test_a_server_with_a_volume_attached_is_rebuilt(cloud):
    """Its volumes stay attached: the conductor's flow hands them to the
    agent (tests/functional/volume/test_volume_flows.py)."""
    from tests.functional.api.fixtures import IMAGE_ID
    vid, uuid = _available(cloud), _server(cloud)
    vdb.attachment_create(vid, uuid, "host1")
    r = cloud.request("POST", C + "/servers/%s/action" % uuid,
                      json={"rebuild": {"imageRef": IMAGE_ID}})
    assert r.status_code == 202, r.text
    assert db.instance_get(uuid).task_state == st.REBUILDING
    [cast] = cloud.conductor.wait_for("rebuild_instance")
    assert (cast["instance_uuid"], cast["image_id"]) == (uuid, IMAGE_ID)


def _extend(cloud, vid, new_size, who="member", version="3.42"):
    return cloud.request("POST", V + "/volumes/%s/action" % vid, who,
                         headers={"OpenStack-API-Version": "volume " + version},
                         json={"os-extend": {"new_size": new_size}})


def test_extend_marks_extending_with_the_new_size_and_casts(cloud):
    vid = _available(cloud)
    r = _extend(cloud, vid, 3)
    assert r.status_code == 202, r.text
    row = vdb.volume_get(vid)
    assert (row.status, row.size_gb) == (st.VOLUME_EXTENDING, 3)
    cast = cloud.volume.wait_for("extend_volume")[0]
    assert (cast["volume_id"], cast["new_size_gb"], cast["old_size_gb"]) == (vid, 3, 1)
    shown = cloud.request("GET", V + "/volumes/%s" % vid).json["volume"]
    assert (shown["status"], shown["size"]) == ("extending", 3)
    # Extending already: 400, nothing cast again.
    r = _extend(cloud, vid, 4)
    assert r.status_code == 400 and "extending" in r.text, r.text
    assert len([c for c in cloud.volume.calls if c[0] == "extend_volume"]) == 1


@pytest.mark.parametrize("new_size, why", [(1, "greater than current size"),
                                           (0, "greater than current size"),
                                           ("x", "integer"), (1.5, "integer"),
                                           (True, "integer"), (100000, "max_size_gb")])
def test_bad_new_sizes_are_400_naming_new_size(cloud, new_size, why):
    vid = _available(cloud)
    r = _extend(cloud, vid, new_size)
    assert r.status_code == 400 and "new_size" in r.text and why in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert [c for c in cloud.volume.calls if c[0] == "extend_volume"] == []


def test_extend_refusals(cloud):
    vid = _available(cloud)
    # Missing new_size, unknown keys and unknown actions name the field.
    r = cloud.request("POST", V + "/volumes/%s/action" % vid, json={"os-extend": {}})
    assert r.status_code == 400 and "new_size" in r.text, r.text
    r = cloud.request("POST", V + "/volumes/%s/action" % vid, json={"os-migrate_volume": {}})
    assert r.status_code == 400 and "os-migrate_volume" in r.text, r.text
    assert _extend(cloud, vid, 2, who="reader").status_code == 403
    assert cloud.request("POST", V + "/volumes/%s/action" % ("0" * 32),
                         json={"os-extend": {"new_size": 2}}).status_code == 404
    # Over the gigabytes quota: 413 naming it, the volume untouched.
    cloud.request("PUT", V + "/os-quota-sets/p1", "admin",
                  json={"quota_set": {"gigabytes": 2}})
    r = _extend(cloud, vid, 3)
    assert r.status_code == 413 and "gigabytes" in r.text and "new_size" in r.text, r.text
    assert (vdb.volume_get(vid).status, vdb.volume_get(vid).size_gb) == \
        (st.VOLUME_AVAILABLE, 1)
    # In use with no attachment a host could extend it on: refused (400).
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    r = _extend(cloud, vid, 2)
    assert r.status_code == 400 and "in-use" in r.text and "detach" in r.text, r.text
    vdb.volume_update(vid, {"status": st.VOLUME_ERROR})
    r = _extend(cloud, vid, 2, version="3.0")
    assert r.status_code == 400 and "must be available" in r.text, r.text
    assert [c for c in cloud.volume.calls if c[0] == "extend_volume"] == []


def test_attach_keeps_the_tag_and_delete_on_termination_from_their_versions(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    url = C + "/servers/%s/os-volume_attachments" % uuid
    request = {"volumeAttachment": {"volumeId": vid, "tag": "data",
                                    "delete_on_termination": True}}
    # Before 2.79 delete_on_termination is not part of the request, before
    # 2.49 the tag neither: 400 naming it, nothing reserved.
    for ver, field in (("2.78", "delete_on_termination"), ("2.48", "tag")):
        body = {"volumeAttachment": {k: v for k, v in request["volumeAttachment"].items()
                                     if k != "delete_on_termination" or field != "tag"}}
        r = cloud.request("POST", url, version=ver, json=body)
        assert r.status_code == 400 and field in r.text, (ver, r.text)
    r = cloud.request("POST", url, version="2.79", json={"volumeAttachment": {
        "volumeId": vid, "tag": "a,b"}})
    assert r.status_code == 400 and "volumeAttachment.tag" in r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    r = cloud.request("POST", url, version="2.79", json=request)
    assert r.status_code == 200, r.text
    att = r.json["volumeAttachment"]
    assert (att["tag"], att["delete_on_termination"]) == ("data", True)
    row = vdb.attachments_of_instance(uuid)[0]
    assert (row.tag, row.delete_on_termination) == ("data", True)
    # Each key from the microversion that shows it, as Nova.
    shown = {ver: cloud.request("GET", url + "/" + vid, version=ver).json["volumeAttachment"]
             for ver in ("2.1", "2.70", "2.79", "2.89")}
    base = {"volumeId", "serverId", "device"}
    assert set(shown["2.1"]) == base | {"id"}
    assert set(shown["2.70"]) == base | {"id", "tag"}
    assert set(shown["2.79"]) == base | {"id", "tag", "delete_on_termination"}
    assert set(shown["2.89"]) == base | {"tag", "delete_on_termination", "attachment_id",
                                         "bdm_uuid"}
    listed = cloud.request("GET", url, version="2.1").json["volumeAttachments"]
    assert listed == [shown["2.1"]]


def test_update_changes_delete_on_termination_only(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    url = C + "/servers/%s/os-volume_attachments/%s" % (uuid, vid)
    body = {"volumeAttachment": {"volumeId": vid, "delete_on_termination": True}}
    assert cloud.request("PUT", url, version="2.85", json=body).status_code == 404
    att = vdb.attachment_create(vid, uuid, "host1")
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb"})
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    # Before 2.85 an update is a volume swap, which Flotilla does not do;
    # so is another volume's id at any version.
    r = cloud.request("PUT", url, version="2.84", json={"volumeAttachment": {"volumeId": vid}})
    assert r.status_code == 400 and "volumeAttachment.volumeId" in r.text, r.text
    other = _available(cloud)
    r = cloud.request("PUT", url, version="2.85", json={"volumeAttachment": {
        "volumeId": other, "delete_on_termination": True}})
    assert r.status_code == 400 and "swap" in r.text
    r = cloud.request("PUT", url, version="2.85", json={"volumeAttachment": {
        "volumeId": vid, "delete_on_termination": "yes"}})
    assert r.status_code == 400 and "delete_on_termination" in r.text
    assert vdb.attachment_get(att.uuid).delete_on_termination is False
    r = cloud.request("PUT", url, version="2.85", json={"volumeAttachment": {
        "volumeId": vid, "tag": "changed", "delete_on_termination": True}})
    assert r.status_code == 400 and "volumeAttachment.tag" in r.text
    assert vdb.attachment_get(att.uuid).delete_on_termination is False
    # Sent back as shown (the CLI sends only volumeId and the flag):
    r = cloud.request("PUT", url, version="2.85", json={"volumeAttachment": dict(
        body["volumeAttachment"], serverId=uuid, device="/dev/vdb", tag=None)})
    assert r.status_code == 202, r.text
    assert vdb.attachment_get(att.uuid).delete_on_termination is True
    shown = cloud.request("GET", url, version="2.89").json["volumeAttachment"]
    assert (shown["delete_on_termination"], shown["device"]) == (True, "/dev/vdb")
    # At 2.89 ``id`` is no longer shown; sent back, it is still the volume's.
    r = cloud.request("PUT", url, version="2.89", json={"volumeAttachment": dict(
        body["volumeAttachment"], id=vid)})
    assert r.status_code == 202, r.text
    r = cloud.request("PUT", url, version="2.89", json={"volumeAttachment": dict(
        body["volumeAttachment"], id=other)})
    assert r.status_code == 400 and "volumeAttachment.id" in r.text, r.text
    server = cloud.request("GET", C + "/servers/%s" % uuid, version="2.3").json["server"]
    assert server["os-extended-volumes:volumes_attached"] == [
        {"id": vid, "delete_on_termination": True}]

"""The volume actions of api/volume/volume_flags.py at the API:
os-set_bootable, the image metadata actions, os-update_readonly_flag (and
the attach of a read-only volume), os-reset_status and os-retype, with
their refusals (bad input naming the field, wrong status, another
project's volume, policy)."""

from __future__ import annotations

import falcon.testing
import pytest

from api.app import create_app
from flotilla import rpc
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from tests.fixtures.recording_endpoint import recording_endpoint
from tests.functional.api.fixtures import IMAGE_ID, C, api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import V, _available, _server
from volume.manager import VolumeManager


@pytest.fixture
def cloud(api_cloud):  # noqa: F811
    """The API with a recording volume service vol1 (test_volume_api's)."""
    api_cloud.volume = recording_endpoint(VolumeManager)
    server = rpc.RPCServer(api_cloud.transport, "volume", "vol1", [api_cloud.volume])
    server.start()
    api_cloud._servers.append(server)
    db.service_heartbeat("vol1", "flotilla-volume", "volume")
    return api_cloud


def _act(cloud, vid, name, args, who="member"):
    return cloud.request("POST", V + "/volumes/%s/action" % vid, who, json={name: args},
                         headers={"OpenStack-API-Version": "volume 3.71"})


def _show(cloud, vid, who="member") -> dict:
    r = cloud.request("GET", V + "/volumes/%s" % vid, who)
    assert r.status_code == 200, r.text
    return r.json["volume"]


# --- os-set_bootable -------------------------------------------------------------------

def test_set_bootable_true_and_false_in_cinder_spellings(cloud):
    vid = _available(cloud)
    assert _show(cloud, vid)["bootable"] == "false"
    r = _act(cloud, vid, "os-set_bootable", {"bootable": True})
    assert r.status_code == 200, r.text
    assert _show(cloud, vid)["bootable"] == "true" and vdb.volume_get(vid).bootable
    assert _act(cloud, vid, "os-set_bootable", {"bootable": "False"}).status_code == 200
    assert _show(cloud, vid)["bootable"] == "false"
    assert _act(cloud, vid, "os-set_bootable", {"bootable": "yes"}).status_code == 200
    assert _show(cloud, vid)["bootable"] == "true"
    # Any status (Cinder refuses maintenance only).
    vdb.volume_update(vid, {"status": st.VOLUME_ERROR})
    assert _act(cloud, vid, "os-set_bootable", {"bootable": "0"}).status_code == 200
    assert vdb.volume_get(vid).bootable is False


@pytest.mark.parametrize("args", [{"bootable": "maybe"}, {"bootable": 1}, {},
                                  {"bootable": None}, None, {"bootable": True, "x": 1}])
def test_set_bootable_bad_values_are_400_naming_bootable(cloud, args):
    vid = _available(cloud)
    r = _act(cloud, vid, "os-set_bootable", args)
    assert r.status_code == 400 and "bootable" in r.text, r.text
    assert vdb.volume_get(vid).bootable is False


def test_set_bootable_of_another_project_is_404_and_reader_403(cloud):
    vid = _available(cloud, "other")
    assert _act(cloud, vid, "os-set_bootable", {"bootable": True}).status_code == 404
    mine = _available(cloud)
    assert _act(cloud, mine, "os-set_bootable", {"bootable": True},
                who="reader").status_code == 403
    assert vdb.volume_get(vid).bootable is False and vdb.volume_get(mine).bootable is False


# --- image metadata ---------------------------------------------------------------------

def test_image_metadata_set_show_unset(cloud):
    vid = _available(cloud)
    r = _act(cloud, vid, "os-show_image_metadata", None)
    assert (r.status_code, r.json) == (200, {"metadata": {}}), r.text
    assert "volume_image_metadata" not in _show(cloud, vid)
    r = _act(cloud, vid, "os-set_image_metadata", {"metadata": {"hw_disk_bus": "scsi",
                                                                "os_distro": "cirros"}})
    assert (r.status_code, r.json) == (
        200, {"metadata": {"hw_disk_bus": "scsi", "os_distro": "cirros"}}), r.text
    r = _act(cloud, vid, "os-set_image_metadata", {"metadata": {"hw_disk_bus": "virtio"}})
    assert r.json["metadata"] == {"hw_disk_bus": "virtio", "os_distro": "cirros"}
    assert _show(cloud, vid)["volume_image_metadata"] == r.json["metadata"]
    r = _act(cloud, vid, "os-unset_image_metadata", {"key": "os_distro"})
    assert r.status_code == 200, r.text
    r = _act(cloud, vid, "os-show_image_metadata", {})
    assert r.json == {"metadata": {"hw_disk_bus": "virtio"}}
    r = _act(cloud, vid, "os-unset_image_metadata", {"key": "os_distro"})
    assert r.status_code == 404, r.text


def test_image_metadata_keeps_internal_keys_hidden_and_refuses_them(cloud):
    vid = _available(cloud)
    vdb.volume_update(vid, {"image_metadata": {"image_id": "i1", "_protected": True}})
    r = _act(cloud, vid, "os-set_image_metadata", {"metadata": {"_protected": "False"}})
    assert r.status_code == 400 and "metadata" in r.text and "_protected" in r.text, r.text
    r = _act(cloud, vid, "os-set_image_metadata", {"metadata": {"_anything": "x"}})
    assert r.status_code == 400, r.text
    assert _act(cloud, vid, "os-unset_image_metadata",
                {"key": "_protected"}).status_code == 404
    r = _act(cloud, vid, "os-set_image_metadata", {"metadata": {"k": "v"}})
    assert r.json["metadata"] == {"image_id": "i1", "k": "v"}
    assert vdb.volume_get(vid).image_metadata == {"image_id": "i1", "_protected": True,
                                                  "k": "v"}


@pytest.mark.parametrize("args", [{"metadata": {"k": "v" * 256}}, {"metadata": {"": "v"}},
                                  {"metadata": {"k": 1}}, {"metadata": "k=v"}, {},
                                  {"metadata": {}, "x": 1}])
def test_image_metadata_bad_input_is_400_naming_metadata(cloud, args):
    vid = _available(cloud)
    r = _act(cloud, vid, "os-set_image_metadata", args)
    assert r.status_code == 400 and "metadata" in r.text, r.text
    assert not vdb.volume_get(vid).image_metadata


def test_image_metadata_refusals(cloud):
    vid = _available(cloud)
    r = _act(cloud, vid, "os-unset_image_metadata", {})
    assert r.status_code == 400 and "key" in r.text, r.text
    vdb.volume_update(vid, {"status": "uploading"})
    r = _act(cloud, vid, "os-set_image_metadata", {"metadata": {"k": "v"}})
    assert r.status_code == 400 and "uploading" in r.text, r.text
    other = _available(cloud, "other")
    for name, args in (("os-set_image_metadata", {"metadata": {"k": "v"}}),
                       ("os-unset_image_metadata", {"key": "k"}),
                       ("os-show_image_metadata", None)):
        assert _act(cloud, other, name, args).status_code == 404, name
    assert _act(cloud, vid, "os-set_image_metadata", {"metadata": {"k": "v"}},
                who="reader").status_code == 403


# --- os-update_readonly_flag -----------------------------------------------------------

def test_readonly_flag_is_shown_in_metadata_as_cinder(cloud):
    vid = _available(cloud, metadata={"a": "b"})
    assert _show(cloud, vid)["metadata"] == {"a": "b"}
    r = _act(cloud, vid, "os-update_readonly_flag", {"readonly": True})
    assert r.status_code == 202, r.text
    assert _show(cloud, vid)["metadata"] == {"a": "b", "readonly": "True"}
    assert vdb.volume_get(vid).readonly is True
    # The user's metadata routes still show the user's only.
    r = cloud.request("GET", V + "/volumes/%s/metadata" % vid)
    assert r.json == {"metadata": {"a": "b"}}
    assert _act(cloud, vid, "os-update_readonly_flag", {"readonly": "false"}).status_code \
        == 202
    assert _show(cloud, vid)["metadata"] == {"a": "b", "readonly": "False"}


def test_readonly_flag_refusals(cloud):
    vid = _available(cloud)
    for args in ({"readonly": "sometimes"}, {}, {"readonly": 0}):
        r = _act(cloud, vid, "os-update_readonly_flag", args)
        assert r.status_code == 400 and "readonly" in r.text, r.text
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    r = _act(cloud, vid, "os-update_readonly_flag", {"readonly": True})
    assert r.status_code == 400 and "must be available" in r.text, r.text
    assert vdb.volume_get(vid).readonly is None
    other = _available(cloud, "other")
    assert _act(cloud, other, "os-update_readonly_flag",
                {"readonly": True}).status_code == 404
    assert vdb.volume_get(other).readonly is None


def _attach(client_or_cloud, uuid, vid, headers=None):
    body = {"volumeAttachment": {"volumeId": vid}}
    if headers is not None:
        return client_or_cloud.simulate_post(C + "/servers/%s/os-volume_attachments" % uuid,
                                             headers=headers, json=body)
    return client_or_cloud.request("POST", C + "/servers/%s/os-volume_attachments" % uuid,
                                   json=body)


def test_a_read_only_volume_attaches_only_where_agents_serve_1_13(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    assert _act(cloud, vid, "os-update_readonly_flag", {"readonly": True}).status_code == 202
    db.service_heartbeat("host1", "flotilla-compute", "compute", rpc_version="1.12")
    r = _attach(cloud, uuid, vid)
    assert r.status_code == 409 and "read-only" in r.text and "1.12" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert vdb.attachments_of_volume(vid) == []
    # Capped below 1.13: refused whatever the agent serves.
    db.service_heartbeat("host1", "flotilla-compute", "compute", rpc_version="1.13")
    cloud.conf.set_override("compute", "1.12", group="upgrade_levels")
    client = falcon.testing.TestClient(create_app(cloud.conf, cloud.transport))
    r = _attach(client, uuid, vid, headers=cloud.headers("member"))
    assert r.status_code == 409 and "capped" in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    cloud.conf.clear_override("compute", group="upgrade_levels")
    r = _attach(cloud, uuid, vid)
    assert r.status_code == 200, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_RESERVED
    # A writable volume attaches whatever the agents serve.
    plain = _available(cloud)
    db.service_heartbeat("host1", "flotilla-compute", "compute", rpc_version="1.12")
    assert _attach(cloud, uuid, plain).status_code == 200


def test_the_attachment_of_a_read_only_connection_is_ro(cloud):
    vid, uuid = _available(cloud), _server(cloud)
    att = vdb.attachment_create(vid, uuid, "host1")
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb",
                                     "connection_info": {"volume_id": vid, "read_only": True}})
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE, "readonly": True})
    r = cloud.request("GET", V + "/attachments/%s" % att.uuid,
                      headers={"OpenStack-API-Version": "volume 3.27"})
    assert r.json["attachment"]["attach_mode"] == "ro", r.text
    assert _show(cloud, vid)["metadata"] == {"readonly": "True", "attached_mode": "ro"}


# --- os-reset_status --------------------------------------------------------------------

def test_reset_status_as_admin_and_back(cloud):
    vid = _available(cloud)
    r = _act(cloud, vid, "os-reset_status", {"status": "error"}, who="admin")
    assert r.status_code == 202, r.text
    assert _show(cloud, vid)["status"] == "error"
    r = _act(cloud, vid, "os-reset_status", {"status": "AVAILABLE", "attach_status":
                                             "detached", "migration_status": "none"},
             who="admin")
    assert r.status_code == 202, r.text
    row = vdb.volume_get(vid)
    assert (row.status, row.status_deadline) == (st.VOLUME_AVAILABLE, None)
    # A transitional status gets a deadline: the reaper ends it.
    assert _act(cloud, vid, "os-reset_status", {"status": "deleting"},
                who="admin").status_code == 202
    row = vdb.volume_get(vid)
    assert (row.status, row.status_deadline is not None) == (st.VOLUME_DELETING, True)
    # Another project's volume too (an admin sees every volume).
    other = _available(cloud, "other")
    assert _act(cloud, other, "os-reset_status", {"status": "error"},
                who="admin").status_code == 202
    assert vdb.volume_get(other).status == st.VOLUME_ERROR


@pytest.mark.parametrize("args, field", [
    ({"status": "bogus"}, "status"), ({}, "status"), ({"status": 3}, "status"),
    ({"status": "in-use"}, "status"), ({"attach_status": "attached"}, "attach_status"),
    ({"attach_status": "half"}, "attach_status"),
    ({"migration_status": "migrating"}, "migration_status"),
    ({"status": "error", "extra": 1}, "extra"),
])
def test_reset_status_bad_input_is_400_naming_the_field(cloud, args, field):
    vid = _available(cloud)
    r = _act(cloud, vid, "os-reset_status", args, who="admin")
    assert r.status_code == 400 and field in r.text, r.text
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE


def test_reset_status_is_admin_only(cloud):
    vid = _available(cloud)
    r = _act(cloud, vid, "os-reset_status", {"status": "error"})
    assert r.status_code == 403, r.text
    assert _act(cloud, vid, "os-reset_status", {"status": "error"},
                who="other").status_code == 404
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE


# --- os-retype --------------------------------------------------------------------------

def test_retype(cloud):
    vid = _available(cloud)
    for new_type in ("__DEFAULT__", _show(cloud, vid)["volume_type_id"]):
        r = _act(cloud, vid, "os-retype", {"new_type": new_type,
                                           "migration_policy": "never"})
        assert r.status_code == 400 and "new_type" in r.text and "same" in r.text, r.text
    r = _act(cloud, vid, "os-retype", {"new_type": "gold", "migration_policy": "on-demand"})
    assert r.status_code == 404 and "could not be found" in r.text, r.text
    for args, field in (({}, "new_type"), ({"new_type": 5}, "new_type"),
                        ({"new_type": "gold", "migration_policy": "always"},
                         "migration_policy")):
        r = _act(cloud, vid, "os-retype", args)
        assert r.status_code == 400 and field in r.text, r.text
    other = _available(cloud, "other")
    assert _act(cloud, other, "os-retype", {"new_type": "__DEFAULT__"}).status_code == 404
    assert _show(cloud, vid)["volume_type"] == "__DEFAULT__"


def test_a_server_create_with_a_read_only_volume_is_409_while_capped(cloud):
    vid = _available(cloud)
    vdb.volume_update(vid, {"readonly": True})
    cloud.conf.set_override("compute", "1.12", group="upgrade_levels")
    client = falcon.testing.TestClient(create_app(cloud.conf, cloud.transport))

    def create(volume_id):
        return client.simulate_post(C + "/servers", headers=cloud.headers("member"), json={
            "server": {"name": "ro", "flavorRef": "1", "imageRef": IMAGE_ID,
                       "networks": "none", "block_device_mapping_v2": [
                           {"uuid": IMAGE_ID, "boot_index": 0, "source_type": "image",
                            "destination_type": "local"},
                           {"uuid": volume_id, "boot_index": None, "source_type": "volume",
                            "destination_type": "volume"}]}})

    r = create(vid)
    assert r.status_code == 409 and "read-only" in r.text and "capped" in r.text, r.text
    assert db.instance_get_all() == []
    # A writable volume goes through at the same cap.
    assert create(_available(cloud)).status_code == 202

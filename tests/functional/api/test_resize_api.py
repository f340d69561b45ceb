"""migrate, resize, confirmResize and revertResize at the API: what is
refused (400 naming the field, 409 for the state, 403 for non-admins),
what is recorded and what reaches the conductor (a recording endpoint)."""

from __future__ import annotations

import pytest

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from tests.functional.api.fixtures import C
from tests.functional.api.test_live_migration_api import BAD_DESTINATIONS, _compute


def _server(api_cloud, vm_state=st.ACTIVE, task_state=None) -> str:
    uuid = api_cloud.create_server(name="web")
    db.instance_update(uuid, {"vm_state": vm_state, "task_state": task_state,
                              "host": "host1"})
    return uuid


def _action(cloud, uuid: str, body: dict, who: str = "member", version: str = "2.100"):
    return cloud.request("POST", C + "/servers/%s/action" % uuid, who, version, json=body)


@pytest.fixture
def flavors():
    db.flavor_create({"flavorid": "2", "name": "bigger", "memory_mb": 128,
                      "vcpus": 1, "root_gb": 2})
    db.flavor_create({"flavorid": "0", "name": "nodisk", "memory_mb": 128,
                      "vcpus": 1, "root_gb": 0})
    db.flavor_create({"flavorid": "9", "name": "private", "memory_mb": 128,
                      "vcpus": 1, "root_gb": 2, "is_public": False})


def test_resize_records_and_starts_the_flow(api_cloud, flavors):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"resize": {"flavorRef": "2"}})
    assert r.status_code == 202, r.text
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.ACTIVE, st.RESIZE_PREP)
    assert inst.task_deadline is not None
    [migration] = mig_db.migration_list(uuid)
    assert (migration.status, migration.source_host, migration.migration_type) == (
        "accepted", "host1", "resize")
    cast = api_cloud.conductor.wait_for("resize_instance")[0]
    assert cast["migration_uuid"] == migration.uuid
    assert cast["flavor"]["flavorid"] == "2" and cast["flavor"]["root_gb"] == 2
    assert cast["action"] == "resize"
    shown = api_cloud.request("GET", C + "/servers/" + uuid, "member").json["server"]
    assert shown["status"] == "RESIZE"
    # A second resize of the resizing server: 409, nothing new.
    again = _action(api_cloud, uuid, {"resize": {"flavorRef": "2"}})
    assert again.status_code == 409, again.text
    assert len(mig_db.migration_list(uuid)) == 1


@pytest.mark.parametrize("ref, words", [
    ("1", "must change flavor"), ("0", "zero disk"), ("9", "could not be found"),
    ("nope", "could not be found")])
def test_a_bad_flavor_is_400(api_cloud, flavors, ref, words):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"resize": {"flavorRef": ref}})
    assert r.status_code == 400, r.text
    assert words in r.json["badRequest"]["message"]
    assert mig_db.migration_list(uuid) == []
    assert db.instance_get(uuid).task_state is None


def test_a_smaller_disk_is_400(api_cloud, flavors):
    uuid = _server(api_cloud)
    db.instance_update(uuid, {"root_gb": 5})
    r = _action(api_cloud, uuid, {"resize": {"flavorRef": "2"}})
    assert r.status_code == 400, r.text
    message = r.json["badRequest"]["message"]
    assert "flavorRef" in message and "smaller" in message
    assert mig_db.migration_list(uuid) == []


@pytest.mark.parametrize("body", [{"resize": {}}, {"resize": {"flavorRef": ""}},
                                  {"resize": {"flavorRef": "2", "bogus": 1}},
                                  {"migrate": {"bogus": 1}}])
def test_malformed_bodies_are_400(api_cloud, flavors, body):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, body, who="admin")
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("vm_state, task_state", [
    (st.PAUSED, None), (st.SUSPENDED, None), (st.ERROR, None),
    (st.ACTIVE, st.REBOOTING)])
def test_only_an_idle_active_or_stopped_server_resizes(api_cloud, flavors, vm_state,
                                                        task_state):
    uuid = _server(api_cloud, vm_state, task_state)
    r = _action(api_cloud, uuid, {"resize": {"flavorRef": "2"}})
    assert r.status_code == 409, r.text
    assert mig_db.migration_list(uuid) == []


def test_a_stopped_server_resizes(api_cloud, flavors):
    uuid = _server(api_cloud, st.STOPPED)
    assert _action(api_cloud, uuid, {"resize": {"flavorRef": "2"}}).status_code == 202
    shown = api_cloud.request("GET", C + "/servers/" + uuid, "member").json["server"]
    assert shown["status"] == "RESIZE"


def test_cold_migrate_is_a_resize_to_the_same_flavor(api_cloud):
    _compute("host1")
    _compute("host2")
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"migrate": {"host": "host2"}}, who="admin")
    assert r.status_code == 202, r.text
    [migration] = mig_db.migration_list(uuid)
    assert migration.migration_type == "migration"
    cast = api_cloud.conductor.wait_for("resize_instance")[0]
    assert cast["host"] == "host2" and cast["action"] == "migrate"
    assert cast["flavor"]["flavorid"] == "1"
    actions = api_cloud.request("GET", C + "/servers/%s/os-instance-actions" % uuid,
                                "admin").json
    assert actions["instanceActions"][0]["action"] == "migrate"


def test_migrate_without_host_lets_the_scheduler_choose(api_cloud):
    uuid = _server(api_cloud)
    assert _action(api_cloud, uuid, {"migrate": None}, who="admin").status_code == 202
    assert api_cloud.conductor.wait_for("resize_instance")[0]["host"] is None


def test_migrate_host_needs_2_56(api_cloud):
    _compute("host2")
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"migrate": {"host": "host2"}}, who="admin",
                version="2.55")
    assert r.status_code == 400 and "host" in r.json["badRequest"]["message"]
    assert mig_db.migration_list(uuid) == []


@pytest.mark.parametrize("host, setup, code, words", BAD_DESTINATIONS)
def test_migrate_to_a_bad_host_is_400(api_cloud, host, setup, code, words):
    """400 for a host that is no destination, 409 naming the short
    resource for one without room; nothing written either way."""
    _compute("host1")
    if setup is not None:
        _compute(host, **setup)
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {"migrate": {"host": host}}, who="admin")
    assert r.status_code == code, r.text
    assert words in r.json["badRequest" if code == 400 else "conflictingRequest"]["message"]
    assert db.instance_get(uuid).task_state is None
    assert mig_db.migration_list(uuid) == []
    assert [a.action for a in db.action_get_all(uuid)] == ["create"]


def test_only_admins_migrate(api_cloud):
    uuid = _server(api_cloud)
    assert _action(api_cloud, uuid, {"migrate": None}).status_code == 403


@pytest.mark.parametrize("name", ["confirmResize", "revertResize"])
def test_confirm_or_revert_without_a_pending_resize_is_409(api_cloud, name):
    uuid = _server(api_cloud)
    r = _action(api_cloud, uuid, {name: None})
    assert r.status_code == 409, r.text


@pytest.mark.parametrize("name, task, status, code, method", [
    ("confirmResize", st.RESIZE_CONFIRMING, "confirming", 204, "confirm_resize"),
    ("revertResize", st.RESIZE_REVERTING, "reverting", 202, "revert_resize")])
def test_confirm_and_revert_of_a_resized_server(api_cloud, name, task, status, code,
                                                method):
    uuid = _server(api_cloud, st.RESIZED)
    migration = mig_db.migration_create(uuid, "host1", "host2", "resize",
                                        status="finished")
    shown = api_cloud.request("GET", C + "/servers/" + uuid, "member").json["server"]
    assert shown["status"] == "VERIFY_RESIZE"
    r = _action(api_cloud, uuid, {name: None})
    assert r.status_code == code, r.text
    assert db.instance_get(uuid).task_state == task
    assert mig_db.migration_get(migration.uuid).status == status
    assert api_cloud.conductor.wait_for(method)[0]["migration_uuid"] == migration.uuid
    # Twice: the server is busy now.
    assert _action(api_cloud, uuid, {name: None}).status_code == 409


def test_a_resize_over_the_ram_quota_is_403(api_cloud, flavors):
    from flotilla.db import quotas as quotas_db
    uuid = _server(api_cloud)
    quotas_db.set_limit(db.instance_get(uuid).project_id, "ram", 100)
    r = _action(api_cloud, uuid, {"resize": {"flavorRef": "2"}})
    assert r.status_code == 403, r.text
    assert "ram" in r.text
    assert mig_db.migration_list(uuid) == []
    assert db.instance_get(uuid).task_state is None


CONNECTION = {"volume_id": "", "export": "e", "host": "vol1", "port": 10809}


def _volume(uuid: str, status: str = st.VOLUME_IN_USE, attached: bool = True,
            boot_index: int | None = None) -> str:
    from flotilla.db import volumes as vdb
    volume = vdb.volume_create({"size_gb": 1, "status": status, "project_id": "p1",
                                "host": "vol1"}, {"volumes": -1, "gigabytes": -1})
    attachment = vdb.attachment_create(volume.id, uuid, "host1", boot_index=boot_index)
    if attached:
        vdb.attachment_update(attachment.uuid, {
            "status": "attached", "device": "vda" if boot_index == 0 else "vdb",
            "connection_info": dict(CONNECTION, volume_id=volume.id)})
    return volume.id


@pytest.mark.parametrize("body, who, action", [
    ({"resize": {"flavorRef": "2"}}, "member", "resize"),
    ({"migrate": None}, "admin", "migrate")])
def test_a_server_with_volumes_attached_moves(api_cloud, flavors, body, who, action):
    uuid = _server(api_cloud)
    _volume(uuid)
    r = _action(api_cloud, uuid, body, who=who)
    assert r.status_code == 202, r.text
    assert db.instance_get(uuid).task_state == st.RESIZE_PREP
    cast = api_cloud.conductor.wait_for("resize_instance")[0]
    assert cast["action"] == action


@pytest.mark.parametrize("status, attached", [(st.VOLUME_ATTACHING, False),
                                              (st.VOLUME_RESERVED, False),
                                              (st.VOLUME_DETACHING, True)])
def test_a_volume_being_attached_or_detached_is_409_naming_it(api_cloud, flavors,
                                                              status, attached):
    uuid = _server(api_cloud)
    vid = _volume(uuid, status=status, attached=attached)
    r = _action(api_cloud, uuid, {"resize": {"flavorRef": "2"}})
    assert r.status_code == 409, r.text
    assert vid in r.text and status in r.text
    assert mig_db.migration_list(uuid) == []
    assert db.instance_get(uuid).task_state is None


def test_a_volume_backed_server_resizes_to_any_disk_size(api_cloud, flavors):
    uuid = _server(api_cloud)
    db.instance_update(uuid, {"root_gb": 5, "image_ref": ""})    # as a boot from volume
    _volume(uuid, boot_index=0)
    # Its root is the volume: neither a zero disk nor a smaller one is refused.
    r = _action(api_cloud, uuid, {"resize": {"flavorRef": "0"}})
    assert r.status_code == 202, r.text
    assert api_cloud.conductor.wait_for("resize_instance")[0]["flavor"]["flavorid"] == "0"




def _evacuable(api_cloud) -> str:
    _compute("host1", down=True)
    return _server(api_cloud)


@pytest.mark.parametrize("status, attached", [(st.VOLUME_ATTACHING, False),
                                              (st.VOLUME_RESERVED, False),
                                              (st.VOLUME_DETACHING, True)])
@pytest.mark.parametrize("body, version", [
    ({"os-migrateLive": {"host": None, "block_migration": "auto"}}, "2.30"),
    ({"os-migrateLive": {"host": "host2", "block_migration": "auto", "force": True}},
     "2.30"),
    ({"evacuate": {}}, "2.14"),
    ({"evacuate": {"host": "host2"}}, "2.14")])
def test_live_migration_or_evacuation_beside_a_volume_attach_is_409(
        api_cloud, status, attached, body, version):
    """As resize: a server whose volume is being attached or detached is not
    moved (its volumes go with it, with the connection they record): 409
    naming the volume and its status, nothing written."""
    _compute("host2")
    uuid = _evacuable(api_cloud) if "evacuate" in body else _server(api_cloud)
    vid = _volume(uuid, status=status, attached=attached)
    r = _action(api_cloud, uuid, body, who="admin", version=version)
    assert r.status_code == 409, r.text
    assert vid in r.text and status in r.text
    assert mig_db.migration_list(uuid) == []
    assert db.instance_get(uuid).task_state is None
    assert [a.action for a in db.action_get_all(uuid)] == ["create"]


@pytest.mark.parametrize("body, version, method", [
    ({"os-migrateLive": {"host": "host2", "block_migration": "auto"}}, "2.30",
     "live_migrate_instance"),
    ({"evacuate": {"host": "host2"}}, "2.14", "evacuate_instance")])
def test_live_migration_or_evacuation_with_settled_volumes_starts(api_cloud, body,
                                                                  version, method):
    _compute("host2")
    uuid = _evacuable(api_cloud) if "evacuate" in body else _server(api_cloud)
    _volume(uuid)
    r = _action(api_cloud, uuid, body, who="admin", version=version)
    assert r.status_code in (200, 202), r.text
    assert api_cloud.conductor.wait_for(method)[0]["instance_uuid"] == uuid

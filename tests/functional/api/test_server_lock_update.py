"""Server lock/unlock (with reasons at 2.73), what a lock refuses, the
``locked`` list filter, and PUT /servers/{id} (name, description)."""

from __future__ import annotations

import pytest

from flotilla import states as st
from flotilla.db import api as db
from tests.functional.api.fixtures import C


def _active(api_cloud) -> str:
    uuid = api_cloud.create_server(name="web")
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None, "host": "host1"})
    return uuid


def _action(cloud, uuid: str, body: dict, who: str = "member", version: str | None = None):
    return cloud.request("POST", C + "/servers/%s/action" % uuid, who, version, json=body)


def _show(cloud, uuid: str, version: str = "2.73", who: str = "member") -> dict:
    return cloud.request("GET", C + "/servers/" + uuid, who, version).json["server"]


@pytest.mark.parametrize("body", [{"lock": None}, {"lock": {}}])
def test_lock_refuses_the_owner_actions_and_delete(api_cloud, body):
    uuid = _active(api_cloud)
    assert _action(api_cloud, uuid, body).status_code == 202
    server = _show(api_cloud, uuid)
    assert server["locked"] is True and server["locked_reason"] is None
    assert server["status"] == "ACTIVE"
    assert "locked" not in _show(api_cloud, uuid, "2.8")
    for refused in ({"os-stop": None}, {"reboot": {"type": "HARD"}}, {"pause": None}):
        r = _action(api_cloud, uuid, refused)
        assert r.status_code == 409, r.text
        assert r.json["conflictingRequest"]["message"] == "Instance %s is locked" % uuid
    r = api_cloud.request("DELETE", C + "/servers/" + uuid)
    assert r.status_code == 409
    assert db.instance_get(uuid).task_state is None
    assert not [c for c in api_cloud.compute.calls if c[0] == "stop_instance"]
    # Reading and the console stay allowed.
    assert _action(api_cloud, uuid, {"os-getConsoleOutput": {}}).status_code == 200
    assert _action(api_cloud, uuid, {"unlock": None}).status_code == 202
    assert _show(api_cloud, uuid)["locked"] is False
    assert _action(api_cloud, uuid, {"os-stop": None}).status_code == 202
    assert api_cloud.compute.wait_for("stop_instance")[0]["instance_uuid"] == uuid


def test_admins_act_on_a_locked_server(api_cloud):
    uuid = _active(api_cloud)
    _action(api_cloud, uuid, {"lock": None})
    assert _action(api_cloud, uuid, {"os-stop": None}, who="admin").status_code == 202
    api_cloud.compute.wait_for("stop_instance")
    db.instance_update(uuid, {"task_state": None})
    assert api_cloud.request("DELETE", C + "/servers/" + uuid, "admin").status_code == 204
    assert api_cloud.conductor.wait_for("delete_instance")[0]["instance_uuid"] == uuid


def test_an_admins_lock_is_lifted_by_an_admin_only(api_cloud):
    uuid = _active(api_cloud)
    assert _action(api_cloud, uuid, {"lock": None}, who="admin").status_code == 202
    assert db.instance_get(uuid).locked_by == "admin"
    r = _action(api_cloud, uuid, {"unlock": None})
    assert r.status_code == 403 and "unlock_override" in r.json["forbidden"]["message"]
    assert _show(api_cloud, uuid)["locked"] is True
    assert _action(api_cloud, uuid, {"unlock": None}, who="admin").status_code == 202
    assert _show(api_cloud, uuid)["locked"] is False
    # The owner's own lock is the owner's to lift; locking twice is no error.
    assert _action(api_cloud, uuid, {"lock": None}).status_code == 202
    assert _action(api_cloud, uuid, {"lock": None}).status_code == 202
    assert db.instance_get(uuid).locked_by == "owner"
    assert _action(api_cloud, uuid, {"unlock": None}).status_code == 202


def test_lock_reason_from_2_73(api_cloud):
    uuid = _active(api_cloud)
    r = _action(api_cloud, uuid, {"lock": {"locked_reason": "maintenance"}}, version="2.73")
    assert r.status_code == 202, r.text
    assert _show(api_cloud, uuid)["locked_reason"] == "maintenance"
    assert "locked_reason" not in _show(api_cloud, uuid, "2.72")
    _action(api_cloud, uuid, {"unlock": None})
    assert _show(api_cloud, uuid)["locked_reason"] is None
    # Before 2.73 the value is ignored, as Nova ignores it.
    assert _action(api_cloud, uuid, {"lock": {"locked_reason": "x"}},
                   version="2.72").status_code == 202
    assert _show(api_cloud, uuid)["locked_reason"] is None


@pytest.mark.parametrize("body,field", [
    ({"lock": {"locked_reason": ""}}, "lock.locked_reason"),
    ({"lock": {"locked_reason": "r" * 256}}, "lock.locked_reason"),
    ({"lock": {"reason": "x"}}, "reason"),
    ({"lock": "now"}, "lock"),
])
def test_lock_validation_at_2_73(api_cloud, body, field):
    uuid = _active(api_cloud)
    r = _action(api_cloud, uuid, body, version="2.73")
    assert r.status_code == 400, r.text
    assert field in r.json["badRequest"]["message"]
    assert _show(api_cloud, uuid)["locked"] is False


def test_lock_of_another_projects_server_is_404(api_cloud):
    uuid = _active(api_cloud)
    assert _action(api_cloud, uuid, {"lock": None}, who="other").status_code == 404
    assert _action(api_cloud, uuid, {"lock": None}, who="reader").status_code == 403
    assert _show(api_cloud, uuid)["locked"] is False


def test_lock_and_unlock_are_instance_actions(api_cloud):
    uuid = _active(api_cloud)
    _action(api_cloud, uuid, {"lock": None})
    _action(api_cloud, uuid, {"unlock": None})
    actions = db.action_get_all(uuid)
    assert [a.action for a in actions][:2] == ["unlock", "lock"]
    assert all(a.finish_time is not None for a in actions[:2])
    events = db.action_events_get(actions[1].id)
    assert [(e.event, e.result) for e in events] == [("api_lock", "Success")]


def test_list_filter_locked_from_2_73(api_cloud):
    locked, free = _active(api_cloud), _active(api_cloud)
    _action(api_cloud, locked, {"lock": None})

    def listed(query: str, version: str) -> set[str]:
        r = api_cloud.request("GET", C + "/servers/detail" + query, "member", version)
        assert r.status_code == 200, r.text
        return {s["id"] for s in r.json["servers"]}

    assert listed("?locked=true", "2.73") == {locked}
    assert listed("?locked=False", "2.73") == {free}
    assert listed("?locked=true", "2.72") == {locked, free}
    r = api_cloud.request("GET", C + "/servers?locked=maybe", "member", "2.73")
    assert r.status_code == 400 and "locked" in r.json["badRequest"]["message"]


def test_owner_renames_and_describes(api_cloud):
    uuid = _active(api_cloud)
    r = api_cloud.request("PUT", C + "/servers/" + uuid, "member", "2.19",
                          json={"server": {"name": "renamed", "description": "db"}})
    assert r.status_code == 200, r.text
    server = r.json["server"]
    assert (server["name"], server["description"]) == ("renamed", "db")
    # Below 2.75 the answer is Nova's short form, from 2.75 the full one.
    assert "OS-EXT-STS:vm_state" not in server and "key_name" not in server
    full = api_cloud.request("PUT", C + "/servers/" + uuid, "member", "2.75",
                             json={"server": {"description": None}}).json["server"]
    assert full["description"] is None and full["OS-EXT-STS:vm_state"] == "active"
    inst = db.instance_get(uuid)
    assert (inst.name, inst.display_description) == ("renamed", None)
    assert _show(api_cloud, uuid)["name"] == "renamed"


def test_rename_of_a_locked_server_is_allowed_as_in_nova(api_cloud):
    uuid = _active(api_cloud)
    _action(api_cloud, uuid, {"lock": None})
    r = api_cloud.request("PUT", C + "/servers/" + uuid, json={"server": {"name": "n2"}})
    assert r.status_code == 200 and r.json["server"]["name"] == "n2"


@pytest.mark.parametrize("body,version,field", [
    ({"server": {"name": ""}}, "2.19", "server.name"),
    ({"server": {"name": "x" * 256}}, "2.19", "server.name"),
    ({"server": {"name": " padded "}}, "2.19", "server.name"),
    ({"server": {"description": "d"}}, "2.18", "description"),
    ({"server": {"description": "d" * 256}}, "2.19", "server.description"),
    ({"server": {"description": "bell\u0007"}}, "2.19", "server.description"),
    ({"server": {"hostname": "h"}}, "2.19", "hostname"),
    ({"name": "x"}, "2.19", "server"),
])
def test_update_validation_names_the_field(api_cloud, body, version, field):
    uuid = _active(api_cloud)
    r = api_cloud.request("PUT", C + "/servers/" + uuid, "member", version, json=body)
    assert r.status_code == 400, r.text
    assert field in r.json["badRequest"]["message"]
    assert db.instance_get(uuid).name == "web"


def test_update_refusals(api_cloud):
    uuid = _active(api_cloud)
    body = {"server": {"name": "mine"}}
    assert api_cloud.request("PUT", C + "/servers/" + uuid, "other", json=body).status_code == 404
    assert api_cloud.request("PUT", C + "/servers/" + uuid, "reader",
                             json=body).status_code == 403
    missing = "00000000-0000-4000-8000-000000000000"
    r = api_cloud.request("PUT", C + "/servers/" + missing, json=body)
    assert r.status_code == 404 and missing in r.json["itemNotFound"]["message"]
    assert db.instance_get(uuid).name == "web"

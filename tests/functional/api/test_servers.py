"""Servers: create (up to the cast), list, detail, show, delete, actions."""

from __future__ import annotations

import pytest

from flotilla import objects
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import quotas as quotas_db
from tests.functional.api.fixtures import IMAGE_ID, C


def inst_user() -> str:
    from flotilla.db import identity as identity_db
    return identity_db.user_get("member").id


def test_create_casts_build_instances(api_cloud):
    uuid = api_cloud.create_server(metadata={"k": "v"})
    call = api_cloud.conductor.wait_for("build_instances")[0]
    assert call["instance_uuids"] == [uuid]
    spec = call["request_spec"]
    assert isinstance(spec, objects.RequestSpec)
    assert spec.flavor.flavorid == "1" and spec.num_instances == 1
    assert spec.image.id == IMAGE_ID and (spec.project_id, spec.user_id) == ("p1", inst_user())
    image = call["image"]
    assert isinstance(image, objects.ImageMeta)
    assert image.id == IMAGE_ID and image.sha256 == "0" * 64 and image.source
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.BUILDING, st.SCHEDULING)
    assert inst.task_deadline is not None and inst.project_id == "p1"
    assert inst.flavor["memory_mb"] == 64 and inst.metadata_ == {"k": "v"}
    assert [a.action for a in db.action_get_all(uuid)] == ["create"]


def test_create_accepts_what_the_cli_sends(api_cloud):
    r = api_cloud.request("POST", C + "/servers", version="2.100", json={"server": {
        "name": "cli", "flavorRef": "1", "imageRef": IMAGE_ID, "networks": "none",
        "min_count": 1, "max_count": 1, "block_device_mapping_v2": [{
            "uuid": IMAGE_ID, "boot_index": 0, "source_type": "image",
            "destination_type": "local", "delete_on_termination": True}]}})
    assert r.status_code == 202, r.text
    assert r.json["server"]["links"][0]["rel"] == "self"
    assert r.headers["OpenStack-API-Version"] == "compute 2.100"


def test_show_list_detail(api_cloud):
    uuid = api_cloud.create_server(name="web")
    r = api_cloud.request("GET", C + "/servers/" + uuid, version="2.100")
    server = r.json["server"]
    assert server["status"] == "BUILD" and server["image"]["id"] == IMAGE_ID
    assert server["flavor"]["original_name"] == "tiny"
    assert server["OS-EXT-STS:task_state"] == "scheduling"
    assert "OS-EXT-SRV-ATTR:host" not in server
    r = api_cloud.request("GET", C + "/servers/" + uuid, version="2.1")
    assert r.json["server"]["flavor"]["id"] == "1"
    r = api_cloud.request("GET", C + "/servers/" + uuid, who="admin")
    assert "OS-EXT-SRV-ATTR:host" in r.json["server"]
    r = api_cloud.request("GET", C + "/servers")
    assert [s["id"] for s in r.json["servers"]] == [uuid]
    r = api_cloud.request("GET", C + "/servers/detail", params={"name": "web"})
    assert r.json["servers"][0]["name"] == "web"
    r = api_cloud.request("GET", C + "/servers/detail", params={"name": "nomatch"})
    assert r.json["servers"] == []
    r = api_cloud.request("GET", C + "/servers/detail", params={"status": "BUILD"})
    assert len(r.json["servers"]) == 1
    r = api_cloud.request("GET", C + "/servers/detail", params={"status": "ACTIVE"})
    assert r.json["servers"] == []


def test_lookup_by_name_is_404(api_cloud):
    r = api_cloud.request("GET", C + "/servers/web")
    assert r.status_code == 404 and r.json["itemNotFound"]["code"] == 404


def test_pagination(api_cloud):
    quotas_db.set_limit("p1", "instances", 50)
    quotas_db.set_limit("p1", "cores", 50)
    ids = [api_cloud.create_server(name="s%d" % i) for i in range(5)]
    seen, marker = [], None
    while True:
        params = {"limit": 2}
        if marker:
            params["marker"] = marker
        r = api_cloud.request("GET", C + "/servers/detail", params=params)
        page = r.json["servers"]
        seen += [s["id"] for s in page]
        if "servers_links" not in r.json:
            break
        marker = page[-1]["id"]
        assert "marker=" + marker in r.json["servers_links"][0]["href"]
    assert seen == list(reversed(ids))
    r = api_cloud.request("GET", C + "/servers", params={"marker": "nope"})
    assert r.status_code == 400


def test_error_shows_fault(api_cloud):
    uuid = api_cloud.create_server()
    db.instance_update(uuid, {"vm_state": st.ERROR, "task_state": None})
    db.instance_fault_create(uuid, 500, "No valid host was found.")
    server = api_cloud.request("GET", C + "/servers/" + uuid).json["server"]
    assert server["status"] == "ERROR"
    assert server["fault"]["message"] == "No valid host was found."


def test_delete_then_404(api_cloud):
    uuid = api_cloud.create_server()
    r = api_cloud.request("DELETE", C + "/servers/" + uuid)
    assert r.status_code == 204
    assert api_cloud.conductor.wait_for("delete_instance")[0]["instance_uuid"] == uuid
    server = api_cloud.request("GET", C + "/servers/" + uuid).json["server"]
    assert server["OS-EXT-STS:task_state"] == "deleting"
    assert api_cloud.request("DELETE", C + "/servers/" + uuid).status_code == 204
    db.instance_destroy(uuid)     # what the agent does when it is done
    assert api_cloud.request("GET", C + "/servers/" + uuid).status_code == 404


def _active(api_cloud, vm_state=st.ACTIVE):
    uuid = api_cloud.create_server()
    db.instance_update(uuid, {"vm_state": vm_state, "task_state": None, "host": "host1"})
    return uuid


@pytest.mark.parametrize("body,vm_state,method,task_state", [
    ({"os-stop": None}, st.ACTIVE, "stop_instance", st.POWERING_OFF),
    ({"os-start": None}, st.STOPPED, "start_instance", st.POWERING_ON),
    ({"reboot": {"type": "SOFT"}}, st.ACTIVE, "reboot_instance", st.REBOOTING),
    ({"reboot": {"type": "HARD"}}, st.STOPPED, "reboot_instance", st.REBOOTING_HARD),
    ({"pause": None}, st.ACTIVE, "pause_instance", st.PAUSING),
    ({"unpause": None}, st.PAUSED, "unpause_instance", st.UNPAUSING),
    ({"suspend": None}, st.ACTIVE, "suspend_instance", st.SUSPENDING),
    ({"resume": None}, st.SUSPENDED, "resume_instance", st.RESUMING),
])
def test_actions(api_cloud, body, vm_state, method, task_state):
    uuid = _active(api_cloud, vm_state)
    r = api_cloud.request("POST", C + "/servers/%s/action" % uuid, json=body,
                          headers={"Accept": ""})
    assert r.status_code == 202, r.text
    assert r.text == ""
    call = api_cloud.compute.wait_for(method)[0]
    assert call["instance_uuid"] == uuid
    assert db.instance_get(uuid).task_state == task_state
    # a second request conflicts while the first runs
    r = api_cloud.request("POST", C + "/servers/%s/action" % uuid, json=body)
    assert r.status_code == 409
    assert r.json["conflictingRequest"]["code"] == 409
    actions = [a.action for a in db.action_get_all(uuid)]
    assert actions[0] == method.split("_")[0] and len(actions) == 2


def test_action_in_wrong_state_is_409(api_cloud):
    uuid = _active(api_cloud, st.STOPPED)
    r = api_cloud.request("POST", C + "/servers/%s/action" % uuid, json={"pause": None})
    assert r.status_code == 409
    assert api_cloud.compute.calls == []


def test_console_output(api_cloud):
    uuid = _active(api_cloud)
    r = api_cloud.request("POST", C + "/servers/%s/action" % uuid,
                          json={"os-getConsoleOutput": {"length": 10}})
    assert r.status_code == 200 and r.json["output"] == "console of " + uuid


def test_instance_actions(api_cloud):
    uuid = api_cloud.create_server()
    r = api_cloud.request("GET", C + "/servers/%s/os-instance-actions" % uuid,
                          version="2.100")
    actions = r.json["instanceActions"]
    assert actions[0]["action"] == "create"
    db.action_event_start(uuid, actions[0]["request_id"], "schedule", host="h")
    r = api_cloud.request("GET", C + "/servers/%s/os-instance-actions/%s"
                          % (uuid, actions[0]["request_id"]), version="2.100")
    assert r.json["instanceAction"]["events"][0]["event"] == "schedule"

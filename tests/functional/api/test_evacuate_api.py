"""The evacuate action and forced-down services at the API: what is refused
(409 while the server's host is up, 400 naming the field for a bad target
or body, 403 for non-admins), what is recorded and what reaches the
conductor (a recording endpoint)."""

from __future__ import annotations

import pytest

from api.compute.services import service_uuid
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from tests.functional.api.fixtures import C
from tests.functional.api.test_live_migration_api import _compute


def _server(api_cloud, vm_state=st.ACTIVE, task_state=None, host="host1") -> str:
    uuid = api_cloud.create_server(name="web")
    db.instance_update(uuid, {"vm_state": vm_state, "task_state": task_state,
                              "host": host})
    return uuid


def _evacuate(cloud, uuid: str, args: dict | None = None, who: str = "admin",
              version: str = "2.14"):
    return cloud.request("POST", C + "/servers/%s/action" % uuid, who, version,
                         json={"evacuate": args if args is not None else {}})


def test_evacuate_of_a_server_whose_host_is_up_is_409(api_cloud):
    _compute("host1")
    _compute("host2")
    uuid = _server(api_cloud)
    r = _evacuate(api_cloud, uuid)
    assert r.status_code == 409, r.text
    assert "host1" in r.text
    inst = db.instance_get(uuid)
    assert (inst.task_state, inst.host) == (None, "host1")
    assert mig_db.migration_list(uuid) == []
    assert not [c for c in api_cloud.conductor.calls if c[0] == "evacuate_instance"]


def test_evacuate_records_and_starts_the_flow(api_cloud):
    _compute("host1", down=True)
    _compute("host2")
    uuid = _server(api_cloud)
    r = _evacuate(api_cloud, uuid, {"host": "host2"})
    assert r.status_code == 200, r.text
    assert not r.text      # no body from 2.14
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state, inst.host) == (st.ACTIVE, st.REBUILDING,
                                                           "host1")
    [migration] = mig_db.migration_list(uuid)
    assert (migration.status, migration.source_host, migration.migration_type) == (
        "accepted", "host1", "evacuation")
    cast = api_cloud.conductor.wait_for("evacuate_instance")[0]
    assert cast["migration_uuid"] == migration.uuid and cast["host"] == "host2"
    actions = api_cloud.request("GET", C + "/servers/%s/os-instance-actions" % uuid,
                                "admin").json
    assert actions["instanceActions"][0]["action"] == "evacuate"
    # A second evacuation of the server being rebuilt: 409, nothing new.
    again = _evacuate(api_cloud, uuid)
    assert again.status_code == 409, again.text
    assert len(mig_db.migration_list(uuid)) == 1


def test_before_2_14_on_shared_storage_is_required_and_admin_pass_answered(api_cloud):
    _compute("host1", down=True)
    uuid = _server(api_cloud)
    r = _evacuate(api_cloud, uuid, {"host": None}, version="2.13")
    assert r.status_code == 400 and "onSharedStorage" in r.text, r.text
    r = _evacuate(api_cloud, uuid, {"onSharedStorage": True}, version="2.13")
    assert r.status_code == 400 and "onSharedStorage" in r.text, r.text
    assert db.instance_get(uuid).task_state is None
    r = _evacuate(api_cloud, uuid, {"onSharedStorage": False, "adminPass": "s3cret"},
                  version="2.13")
    assert r.status_code == 200, r.text
    assert r.json == {"adminPass": "s3cret"}
    # From 2.14 onSharedStorage is no longer a field.
    other = _server(api_cloud)
    r = _evacuate(api_cloud, other, {"onSharedStorage": False}, version="2.14")
    assert r.status_code == 400 and "onSharedStorage" in r.text, r.text


def test_a_forced_down_host_counts_as_down(api_cloud):
    _compute("host1")          # heartbeat fresh: up
    _compute("host2")
    uuid = _server(api_cloud)
    assert _evacuate(api_cloud, uuid).status_code == 409
    r = api_cloud.request("PUT", C + "/os-services/force-down", "admin", "2.11",
                          json={"host": "host1", "binary": "nova-compute",
                                "forced_down": True})
    assert r.status_code == 200, r.text
    assert r.json["service"] == {"host": "host1", "binary": "nova-compute",
                                 "forced_down": True}
    listed = api_cloud.request("GET", C + "/os-services?host=host1", "admin", "2.11")
    [service] = listed.json["services"]
    assert (service["forced_down"], service["state"]) == (True, "down")
    # A heartbeat does not clear it: only an operator does.
    db.service_heartbeat("host1", "flotilla-compute", "compute")
    assert not db.service_is_up(db.service_get("host1", "flotilla-compute"), 60)
    r = _evacuate(api_cloud, uuid)
    assert r.status_code == 200, r.text


def test_forced_down_through_the_2_53_form(api_cloud):
    _compute("host1")
    service = db.service_get("host1", "flotilla-compute")
    path = C + "/os-services/" + service_uuid(service)
    r = api_cloud.request("PUT", path, "admin", "2.53", json={"forced_down": True})
    assert r.status_code == 200, r.text
    assert (r.json["service"]["forced_down"], r.json["service"]["state"]) == (True, "down")
    r = api_cloud.request("PUT", path, "admin", "2.53", json={"forced_down": False})
    assert r.status_code == 200, r.text
    assert (r.json["service"]["forced_down"], r.json["service"]["state"]) == (False, "up")
    r = api_cloud.request("PUT", path, "admin", "2.53", json={"forced_down": "yes"})
    assert r.status_code == 400 and "forced_down" in r.text
    # Not a 2.10 action.
    r = api_cloud.request("PUT", C + "/os-services/force-down", "admin", "2.10",
                          json={"host": "host1", "binary": "nova-compute",
                                "forced_down": True})
    assert r.status_code == 404


@pytest.mark.parametrize("target, reason", [
    ("host1", "is on host host1 already"), ("nohost", "could not be found"),
    ("host3", "disabled"), ("host4", "down")])
def test_a_bad_target_is_400_naming_host(api_cloud, target, reason):
    _compute("host1", down=True)
    _compute("host3", disabled=True)
    _compute("host4", down=True)
    uuid = _server(api_cloud)
    r = _evacuate(api_cloud, uuid, {"host": target})
    assert r.status_code == 400, r.text
    assert "host" in r.text and reason in r.text
    assert db.instance_get(uuid).task_state is None
    assert mig_db.migration_list(uuid) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_target_without_room_is_409_naming_the_resource(api_cloud, force):
    _compute("host1", down=True)
    _compute("host2", node={"memory_mb": 32})
    uuid = _server(api_cloud)
    r = _evacuate(api_cloud, uuid, {"host": "host2", "force": force}, version="2.29")
    assert r.status_code == 409, r.text
    assert "Host host2 has 32 MiB of RAM free, server needs 64 MiB" in r.text
    assert db.instance_get(uuid).task_state is None
    assert mig_db.migration_list(uuid) == []
    assert [a.action for a in db.action_get_all(uuid)] == ["create"]


@pytest.mark.parametrize("vm_state, task_state", [
    (st.PAUSED, None), (st.SUSPENDED, None), (st.ACTIVE, st.REBOOTING)])
def test_only_an_idle_active_stopped_or_error_server_is_evacuated(api_cloud, vm_state,
                                                                   task_state):
    _compute("host1", down=True)
    uuid = _server(api_cloud, vm_state, task_state)
    r = _evacuate(api_cloud, uuid)
    assert r.status_code == 409, r.text
    assert mig_db.migration_list(uuid) == []


def test_non_admins_may_not_evacuate(api_cloud):
    _compute("host1", down=True)
    uuid = _server(api_cloud)
    assert _evacuate(api_cloud, uuid, who="member").status_code == 403
    assert db.instance_get(uuid).task_state is None

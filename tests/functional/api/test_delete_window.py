"""A server the API reports gone is never in a listing (issue 9, part 10).

The delete paths write vm_state ``deleted`` and then soft-delete the row
(the conductor's local delete here; the agent's terminate does the same
through ConductorManager). The probe runs at the moment between those two
writes: once the first is done, show must say the server is gone (404, or
status DELETED, which openstacksdk's wait_for_delete also accepts) only if
no listing still holds it. Deterministic: it looks exactly at that moment.
"""

from __future__ import annotations

from conductor.flows.delete import DeleteFlow
from flotilla import states as st
from flotilla.context import get_admin_context
from flotilla.db import api as db
from tests.functional.api.fixtures import C


def _listed(api_cloud, path: str, who: str = "member") -> list[str]:
    r = api_cloud.request("GET", C + path, who=who)
    assert r.status_code == 200, r.text
    return [s["id"] for s in r.json["servers"]]


def test_gone_in_show_means_gone_from_every_listing(api_cloud, monkeypatch):
    uuid = api_cloud.create_server()
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None})
    probes = []
    real_destroy = db.instance_destroy

    def probe_then_destroy(instance_uuid, **kwargs):
        show = api_cloud.request("GET", C + "/servers/" + instance_uuid)
        status = show.json["server"]["status"] if show.status_code == 200 else None
        probes.append({
            "show": show.status_code, "status": status,
            "listed": _listed(api_cloud, "/servers") + _listed(api_cloud, "/servers/detail")
            + _listed(api_cloud, "/servers/detail?all_tenants=1", "admin")})
        return real_destroy(instance_uuid, **kwargs)

    monkeypatch.setattr(db, "instance_destroy", probe_then_destroy)
    flow = DeleteFlow(api_cloud.conf, compute=None, host="conductor")
    assert flow.delete_locally(get_admin_context(), uuid, st.ACTIVE, None)

    [probe] = probes     # taken after vm_state deleted was written
    assert probe["show"] == 404 or probe["status"] == "DELETED"
    assert uuid not in probe["listed"]
    assert probe["show"] == 404
    assert api_cloud.request("GET", C + "/servers/" + uuid).status_code == 404
    gone = db.instance_get(uuid, read_deleted=True)
    assert gone.deleted and gone.vm_state == st.DELETED and gone.terminated_at

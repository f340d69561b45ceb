"""What a server's view says of its host: the zone every user sees
(``OS-EXT-AZ:availability_zone``) and, for admins from 2.16, the status of
the compute service it is on (``host_status``), both as Nova shows them."""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from flotilla import states as st
from flotilla.db import aggregates as agg_db
from flotilla.db import api as db
from flotilla.db.engine import session_scope
from flotilla.db.models import Service
from tests.functional.api.fixtures import C


def _on_host1(api_cloud) -> str:
    uuid = api_cloud.create_server()
    db.instance_update(uuid, {"host": "host1", "node": "host1",
                              "vm_state": st.ACTIVE, "task_state": None})
    return uuid


def _show(api_cloud, uuid: str, who: str = "member", version: str = "2.16") -> dict:
    r = api_cloud.request("GET", C + "/servers/" + uuid, who, version)
    assert r.status_code == 200, r.text
    return r.json["server"]


def _listed(api_cloud, uuid: str, who: str = "admin") -> dict:
    r = api_cloud.request("GET", C + "/servers/detail?all_tenants=1", who, "2.16")
    assert r.status_code == 200, r.text
    return next(s for s in r.json["servers"] if s["id"] == uuid)


def test_a_server_on_a_host_is_in_that_hosts_zone_whatever_it_asked(api_cloud):
    unscheduled = api_cloud.create_server()
    assert _show(api_cloud, unscheduled)["OS-EXT-AZ:availability_zone"] == ""
    asked = api_cloud.create_server(availability_zone="nova")
    assert _show(api_cloud, asked)["OS-EXT-AZ:availability_zone"] == "nova"
    uuid = _on_host1(api_cloud)
    assert _show(api_cloud, uuid)["OS-EXT-AZ:availability_zone"] == "nova"
    aggregate, _ = agg_db.aggregate_create("rack1", zone="az-rack1")
    agg_db.aggregate_add_host(aggregate.id, "host1")
    assert _show(api_cloud, uuid)["OS-EXT-AZ:availability_zone"] == "az-rack1"
    assert _listed(api_cloud, uuid, who="member")["OS-EXT-AZ:availability_zone"] \
        == "az-rack1"
    # What it asked for stays what it pinned (2.96).
    assert _show(api_cloud, uuid, version="2.96")["pinned_availability_zone"] is None


def test_host_status_follows_the_compute_service(api_cloud):
    uuid = _on_host1(api_cloud)
    assert "host_status" not in _show(api_cloud, uuid)
    assert "host_status" not in _show(api_cloud, uuid, "admin", "2.15")
    assert _show(api_cloud, uuid, "admin")["host_status"] == "UP"
    db.service_set_disabled("host1", "flotilla-compute", True, "maintenance")
    assert _show(api_cloud, uuid, "admin")["host_status"] == "MAINTENANCE"
    assert _listed(api_cloud, uuid)["host_status"] == "MAINTENANCE"
    db.service_set_forced_down("host1", "flotilla-compute", True)
    assert _show(api_cloud, uuid, "admin")["host_status"] == "DOWN"
    db.service_set_forced_down("host1", "flotilla-compute", False)
    db.service_set_disabled("host1", "flotilla-compute", False)
    with session_scope() as session:
        session.execute(sa.update(Service).where(Service.host == "host1").values(
            last_seen_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)))
    assert _show(api_cloud, uuid, "admin")["host_status"] == "UNKNOWN"
    assert _listed(api_cloud, uuid)["host_status"] == "UNKNOWN"
    unscheduled = api_cloud.create_server()
    assert _show(api_cloud, unscheduled, "admin")["host_status"] == ""

"""os-migrateLive and the migrations views at the API: what is refused
(400 naming the reason, 409 for the state, 403 for non-admins), what is
recorded and what reaches the conductor (a recording endpoint)."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.db.engine import session_scope
from flotilla.db.models import Service
from tests.functional.api.fixtures import C


def _server(api_cloud, vm_state=st.ACTIVE, task_state=None) -> str:
    uuid = api_cloud.create_server(name="web")
    db.instance_update(uuid, {"vm_state": vm_state, "task_state": task_state,
                              "host": "host1"})
    return uuid


ROOMY = {"vcpus": 8, "memory_mb": 8192, "disk_gb": 100}


def _compute(host: str, disabled: bool = False, down: bool = False,
             node: dict | None = None, used: dict | None = None) -> None:
    """A compute service on ``host`` and its node: roomy unless ``node``
    (reported inventory, ratios included) says otherwise; ``used`` is
    claimed there by another consumer."""
    db.service_heartbeat(host, "flotilla-compute", "compute")
    db.compute_node_update(host, dict(ROOMY, **(node or {})))
    if used:
        db.allocation_claim(host, "other-server", used,
                            db.compute_node_get(host).generation)
    if disabled:
        db.service_set_disabled(host, "flotilla-compute", True, "maintenance")
    if down:
        with session_scope() as session:
            session.execute(sa.update(Service).where(Service.host == host).values(
                last_seen_at=datetime.datetime.now(datetime.UTC)
                - datetime.timedelta(hours=1)))


def _migrate(cloud, uuid: str, args: dict | None = None, who: str = "admin",
             version: str = "2.30"):
    return cloud.request("POST", C + "/servers/%s/action" % uuid, who, version,
                         json={"os-migrateLive": args if args is not None else
                               {"host": None, "block_migration": "auto"}})


def test_live_migrate_records_and_starts_the_flow(api_cloud):
    _compute("host1")
    _compute("host2")
    uuid = _server(api_cloud)
    r = _migrate(api_cloud, uuid, {"host": "host2", "block_migration": "auto",
                                   "force": False})
    assert r.status_code == 202, r.text
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.ACTIVE, st.MIGRATING)
    assert inst.task_deadline is not None
    [migration] = mig_db.migration_list(uuid)
    assert (migration.status, migration.source_host, migration.migration_type) == (
        "accepted", "host1", "live-migration")
    cast = api_cloud.conductor.wait_for("live_migrate_instance")[0]
    assert cast["migration_uuid"] == migration.uuid and cast["host"] == "host2"
    shown = api_cloud.request("GET", C + "/servers/" + uuid, "admin").json["server"]
    assert shown["status"] == "MIGRATING"
    actions = api_cloud.request("GET", C + "/servers/%s/os-instance-actions" % uuid,
                                "admin").json
    assert actions["instanceActions"][0]["action"] == "live-migration"
    # A second migration of the migrating server: 409, nothing new.
    again = _migrate(api_cloud, uuid)
    assert again.status_code == 409, again.text
    assert len(mig_db.migration_list(uuid)) == 1


def test_no_host_lets_the_scheduler_choose(api_cloud):
    uuid = _server(api_cloud)
    assert _migrate(api_cloud, uuid).status_code == 202
    assert api_cloud.conductor.wait_for("live_migrate_instance")[0]["host"] is None


@pytest.mark.parametrize("vm_state, task_state", [
    (st.STOPPED, None), (st.SUSPENDED, None), (st.ERROR, None),
    (st.ACTIVE, st.REBOOTING)])
def test_only_an_idle_active_or_paused_server_migrates(api_cloud, vm_state, task_state):
    uuid = _server(api_cloud, vm_state, task_state)
    r = _migrate(api_cloud, uuid)
    assert r.status_code == 409, r.text
    assert mig_db.migration_list(uuid) == []
    assert db.instance_get(uuid).task_state == task_state


def test_a_paused_server_migrates(api_cloud):
    uuid = _server(api_cloud, st.PAUSED)
    assert _migrate(api_cloud, uuid).status_code == 202


# The server's flavor "1": 64 MiB, 1 VCPU, 1 GiB root disk.
BAD_DESTINATIONS = [
    ("host1", {}, 400, "already"),
    ("nowhere", None, 400, "could not be found"),
    ("host2", {"disabled": True}, 400, "disabled"),
    ("host2", {"down": True}, 400, "down"),
    ("host2", {"node": {"memory_mb": 32}}, 409,
     "Host host2 has 32 MiB of RAM free, server needs 64 MiB"),
    # Ratios applied: 64 * 1.5 = 96 MiB, 64 claimed by another server.
    ("host2", {"node": {"memory_mb": 64, "ram_allocation_ratio": 1.5},
               "used": {"memory_mb": 64}}, 409,
     "Host host2 has 32 MiB of RAM free, server needs 64 MiB"),
    ("host2", {"node": {"vcpus": 2, "cpu_allocation_ratio": 1.0},
               "used": {"vcpus": 2}}, 409, "Host host2 has 0 VCPUs free, server needs 1"),
    ("host2", {"node": {"disk_gb": 0}}, 409,
     "Host host2 has 0 GiB of disk free, server needs 1 GiB"),
]


@pytest.mark.parametrize("host, setup, code, words", BAD_DESTINATIONS)
@pytest.mark.parametrize("force", [False, True])
def test_a_bad_destination_is_400_naming_why(api_cloud, host, setup, code, words, force):
    """400 for a host that is no destination, 409 for one without room,
    forced or not; either way nothing is written."""
    _compute("host1")
    if setup is not None:
        _compute(host, **setup)
    uuid = _server(api_cloud)
    r = _migrate(api_cloud, uuid, {"host": host, "block_migration": "auto",
                                   "force": force})
    assert r.status_code == code, r.text
    message = r.json["badRequest" if code == 400 else "conflictingRequest"]["message"]
    assert "host" in message.lower() and words in message
    assert mig_db.migration_list(uuid) == []
    assert db.instance_get(uuid).task_state is None
    assert [a.action for a in db.action_get_all(uuid)] == ["create"]


@pytest.mark.parametrize("args", [
    {"host": 5}, {"block_migration": "sometimes"}, {"force": "yes"}, {"bogus": 1},
    {"host": ""}])
def test_malformed_arguments_are_400(api_cloud, args):
    uuid = _server(api_cloud)
    assert _migrate(api_cloud, uuid, args).status_code == 400


def test_only_admins_live_migrate(api_cloud):
    uuid = _server(api_cloud)
    assert _migrate(api_cloud, uuid, who="member").status_code == 403
    assert mig_db.migration_list(uuid) == []


def test_migrations_views_show_progress(api_cloud):
    uuid = _server(api_cloud)
    migration = mig_db.migration_create(uuid, "host1", "host2", "live-migration",
                                        status=mig_db.RUNNING)
    mig_db.migration_update(migration.uuid, {
        "memory_total": 100, "memory_processed": 40, "memory_remaining": 60,
        "disk_total": 10, "disk_processed": 10, "disk_remaining": 0})
    listed = api_cloud.request("GET", C + "/servers/%s/migrations" % uuid, "admin",
                               "2.59")
    assert listed.status_code == 200, listed.text
    [view] = listed.json["migrations"]
    assert view["id"] == migration.id and view["uuid"] == migration.uuid
    assert (view["memory_total_bytes"], view["memory_processed_bytes"],
            view["memory_remaining_bytes"]) == (100, 40, 60)
    assert (view["disk_total_bytes"], view["disk_remaining_bytes"]) == (10, 0)
    assert (view["source_compute"], view["dest_compute"], view["status"]) == (
        "host1", "host2", "running")
    one = api_cloud.request("GET", C + "/servers/%s/migrations/%d" % (uuid, migration.id),
                            "admin", "2.59")
    assert one.status_code == 200 and one.json["migration"] == view
    assert api_cloud.request("GET", C + "/servers/%s/migrations/999" % uuid, "admin",
                             "2.59").status_code == 404
    assert api_cloud.request("GET", C + "/servers/%s/migrations" % uuid, "admin",
                             "2.22").status_code == 404
    assert api_cloud.request("GET", C + "/servers/%s/migrations" % uuid,
                             "member", "2.59").status_code == 403
    everything = api_cloud.request("GET", C + "/os-migrations?host=host2", "admin", "2.59")
    [row] = everything.json["migrations"]
    assert row["instance_uuid"] == uuid and row["migration_type"] == "live-migration"
    assert api_cloud.request("GET", C + "/os-migrations", "member").status_code == 403
    mig_db.migration_update(migration.uuid, {"status": "completed"})
    # Finished migrations leave the server's list (as Nova), not /os-migrations.
    assert api_cloud.request("GET", C + "/servers/%s/migrations" % uuid, "admin",
                             "2.59").json["migrations"] == []
    assert len(api_cloud.request("GET", C + "/os-migrations", "admin").json["migrations"]) \
        == 1


def _running_migration(api_cloud, status: str = "running"):
    uuid = _server(api_cloud, task_state=st.MIGRATING)
    migration = mig_db.migration_create(uuid, "host1", "host2", "live-migration",
                                        status=status)
    return uuid, migration


def test_abort_of_a_migration_in_progress_reaches_the_conductor(api_cloud):
    uuid, migration = _running_migration(api_cloud)
    r = api_cloud.request("DELETE", C + "/servers/%s/migrations/%d" % (uuid, migration.id),
                          "admin", "2.24")
    assert r.status_code == 202, r.text
    cast = api_cloud.conductor.wait_for("live_migration_abort")[0]
    assert (cast["instance_uuid"], cast["migration_uuid"]) == (uuid, migration.uuid)


@pytest.mark.parametrize("status", ["completed", "error", "cancelled"])
def test_abort_of_an_ended_migration_is_400(api_cloud, status):
    uuid, migration = _running_migration(api_cloud, status)
    r = api_cloud.request("DELETE", C + "/servers/%s/migrations/%d" % (uuid, migration.id),
                          "admin", "2.24")
    assert r.status_code == 400, r.text
    assert status in r.json["badRequest"]["message"]


def test_abort_of_an_unknown_migration_is_404(api_cloud):
    uuid, _migration = _running_migration(api_cloud)
    r = api_cloud.request("DELETE", C + "/servers/%s/migrations/4242" % uuid, "admin",
                          "2.24")
    assert r.status_code == 404


def test_force_complete_of_a_running_migration(api_cloud):
    uuid, migration = _running_migration(api_cloud)
    path = C + "/servers/%s/migrations/%d/action" % (uuid, migration.id)
    r = api_cloud.request("POST", path, "admin", "2.22", json={"force_complete": None})
    assert r.status_code == 202, r.text
    assert api_cloud.conductor.wait_for("live_migration_force_complete")[0][
        "migration_uuid"] == migration.uuid
    assert api_cloud.request("POST", path, "admin", "2.22",
                             json={"force_complete": 1}).status_code == 400
    assert api_cloud.request("POST", path, "member", "2.22",
                             json={"force_complete": None}).status_code == 403
    mig_db.migration_update(migration.uuid, {"status": "preparing"})
    r = api_cloud.request("POST", path, "admin", "2.22", json={"force_complete": None})
    assert r.status_code == 400 and "preparing" in r.text

"""``openstack server migration list`` (the unmodified CLI, at its 2.80)
against GET /os-migrations: the filters it sends (status, type, host,
changes-since/-before, user and project resolved through Keystone) and
paging by limit and marker."""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from flotilla.db import migration_records as mig_db
from flotilla.db.engine import session_scope
from flotilla.db.models import Migration
from tests.functional.api.test_openstack_cli import cli  # noqa: F401
from tests.functional.api.test_openstacksdk import sdk_cloud  # noqa: F401

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _migrations(alice_id: str, demo_id: str) -> list[str]:
    """Four migrations of one server, a minute apart (oldest first); the
    two live ones started by alice of demo."""
    uuid = "aaaaaaaa-1111-4222-8333-444444444444"
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": demo_id,
                        "user_id": alice_id, "flavor": {"memory_mb": 64, "vcpus": 1},
                        "vm_state": st.ACTIVE, "host": "host1"})
    made = []
    for i, (kind, status) in enumerate([("live-migration", "completed"),
                                        ("migration", "error"),
                                        ("live-migration", "running"),
                                        ("resize", "finished")]):
        m = mig_db.migration_create(uuid, "host1", "host2", kind, status=status)
        values = {"created_at": T0 + datetime.timedelta(minutes=i),
                  "updated_at": T0 + datetime.timedelta(minutes=i + 10)}
        if kind == "live-migration":
            values["flow_data"] = {"ctxt": {"user_id": alice_id, "project_id": demo_id,
                                            "request_id": "req-%d" % i, "roles": []}}
        with session_scope() as session:
            session.execute(sa.update(Migration).where(Migration.uuid == m.uuid)
                            .values(**values))
        made.append(m.uuid)
    return made


def test_server_migration_list_filters_and_pages(sdk_cloud, cli):  # noqa: F811
    identity_db.role_add("alice", "demo", "admin")
    alice = identity_db.user_get("alice").id
    demo = identity_db.project_get("demo").id
    m0, m1, m2, m3 = _migrations(alice, demo)

    def listed(*args: str) -> list[str]:
        return [m["UUID"] for m in cli.ok("server", "migration", "list", "-f", "json",
                                          *args)]
    assert listed() == [m3, m2, m1, m0]
    assert listed("--status", "error") == [m1]
    assert listed("--type", "live-migration") == [m2, m0]
    assert listed("--type", "cold-migration") == [m1]
    assert listed("--changes-since", "2026-01-01T00:12:00Z") == [m3, m2]
    assert listed("--changes-before", "2026-01-01T00:11:00Z") == [m1, m0]
    assert listed("--user", "alice") == [m2, m0]
    assert listed("--project", "demo", "--status", "running") == [m2]
    assert listed("--limit", "2") == [m3, m2]
    assert listed("--marker", m2, "--limit", "1") == [m1]
    code, _out, err = cli("server", "migration", "list", "--changes-since", "soon")
    assert code != 0 and "changes-since" in err, err

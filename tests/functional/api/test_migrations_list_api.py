"""GET /os-migrations as Nova answers it: the filters (status,
migration_type, host, source_compute, instance_uuid), changes-since
(2.59) and changes-before (2.66), paging by limit and marker (2.59) with a
next link, user_id / project_id (2.80) of whoever started the migration;
and 400 naming the parameter for a bad value."""

from __future__ import annotations

import datetime
import urllib.parse

import pytest
import sqlalchemy as sa

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.db.engine import session_scope
from flotilla.db.models import Migration
from tests.functional.api.fixtures import C

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _at(minutes: int) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


def _stamp(at: str) -> str:
    return at.replace("+00:00", "Z")


@pytest.fixture
def rows(api_cloud) -> dict[str, Migration]:
    """Five migrations of two servers, created a minute apart (m0 oldest),
    each last changed at the minute its number says plus ten; m1 and m3
    started by user u9 of project p9 (their flows saved that context)."""
    servers = []
    for name in ("a", "b"):
        uuid = api_cloud.create_server(name=name)
        db.instance_update(uuid, {"vm_state": st.ACTIVE, "host": "host1"})
        servers.append(uuid)
    kinds = [("live-migration", "completed", "host1", "host2"),
             ("migration", "error", "host1", "host3"),
             ("resize", "finished", "host2", "host1"),
             ("live-migration", "running", "host3", "host2"),
             ("evacuation", "done", "host2", "host3")]
    made = {}
    for i, (kind, status, source, dest) in enumerate(kinds):
        m = mig_db.migration_create(servers[i % 2], source, dest, kind, status=status)
        values = {"created_at": _at(i), "updated_at": _at(i + 10)}
        if i in (1, 3):
            values["flow_data"] = {"ctxt": {"user_id": "u9", "project_id": "p9",
                                            "request_id": "req-%d" % i, "roles": []}}
        with session_scope() as session:
            session.execute(sa.update(Migration).where(Migration.uuid == m.uuid)
                            .values(**values))
        made["m%d" % i] = mig_db.migration_get(m.uuid)
    return made


def _list(api_cloud, query: str = "", version: str = "2.80"):
    return api_cloud.request("GET", C + "/os-migrations" + query, "admin", version)


def _names(rows, response) -> list[str]:
    by_uuid = {m.uuid: name for name, m in rows.items()}
    by_id = {m.id: name for name, m in rows.items()}
    return [by_uuid.get(v.get("uuid")) or by_id[v["id"]]
            for v in response.json["migrations"]]


def test_newest_first_with_uuid_and_who_started_it(api_cloud, rows):
    r = _list(api_cloud)
    assert r.status_code == 200, r.text
    assert _names(rows, r) == ["m4", "m3", "m2", "m1", "m0"]
    views = {v["uuid"]: v for v in r.json["migrations"]}
    assert (views[rows["m3"].uuid]["user_id"], views[rows["m3"].uuid]["project_id"]) \
        == ("u9", "p9")
    assert views[rows["m0"].uuid]["user_id"] is None
    # Before 2.80 the view has no user_id / project_id.
    assert "user_id" not in _list(api_cloud, version="2.79").json["migrations"][0]
    assert "migrations_links" not in r.json


@pytest.mark.parametrize("query, expected", [
    ("?status=error", ["m1"]),
    ("?status=running", ["m3"]),
    ("?status=nothing", []),
    ("?migration_type=live-migration", ["m3", "m0"]),
    ("?migration_type=resize", ["m2"]),
    ("?migration_type=live-migration&status=completed", ["m0"]),
    ("?host=host3", ["m4", "m3", "m1"]),
    ("?source_compute=host2", ["m4", "m2"]),
])
def test_filters(api_cloud, rows, query, expected):
    for version in ("2.1", "2.23", "2.80"):
        r = _list(api_cloud, query, version)
        assert r.status_code == 200, r.text
        assert [m for m in _names(rows, r)] == expected, (version, query)


def test_instance_uuid_filter(api_cloud, rows):
    r = _list(api_cloud, "?instance_uuid=" + rows["m1"].instance_uuid)
    assert _names(rows, r) == ["m3", "m1"]


@pytest.mark.parametrize("query, version, expected", [
    # changed at m+10 minutes: since/before include the bound.
    ("?changes-since=" + _stamp(_at(12).isoformat()), "2.59", ["m4", "m3", "m2"]),
    ("?changes-since=2026-01-01T00:12:00", "2.59", ["m4", "m3", "m2"]),
    ("?changes-before=" + _stamp(_at(11).isoformat()), "2.66", ["m1", "m0"]),
    ("?changes-since=2026-01-01T00:11:00Z&changes-before=2026-01-01T00:13:00Z",
     "2.66", ["m3", "m2", "m1"]),
    # Before 2.59 Nova ignores changes-since.
    ("?changes-since=2026-01-01T00:12:00Z", "2.58", ["m4", "m3", "m2", "m1", "m0"]),
])
def test_changes_since_and_before(api_cloud, rows, query, version, expected):
    r = _list(api_cloud, query, version)
    assert r.status_code == 200, r.text
    assert _names(rows, r) == expected


def test_a_never_updated_migration_changed_when_created(api_cloud, rows):
    with session_scope() as session:
        session.execute(sa.update(Migration).where(Migration.uuid == rows["m4"].uuid)
                        .values(updated_at=None))
    r = _list(api_cloud, "?changes-before=2026-01-01T00:05:00Z")
    assert _names(rows, r) == ["m4"]


def test_paging_by_limit_and_marker_with_a_next_link(api_cloud, rows):
    r = _list(api_cloud, "?limit=2", "2.59")
    assert r.status_code == 200, r.text
    assert _names(rows, r) == ["m4", "m3"]
    [link] = r.json["migrations_links"]
    assert link["rel"] == "next"
    query = urllib.parse.parse_qs(urllib.parse.urlparse(link["href"]).query)
    assert query == {"limit": ["2"], "marker": [rows["m3"].uuid]}
    seen = _names(rows, r)
    while "migrations_links" in r.json:
        href = r.json["migrations_links"][0]["href"]
        r = _list(api_cloud, "?" + urllib.parse.urlparse(href).query, "2.59")
        assert r.status_code == 200, r.text
        seen += _names(rows, r)
    assert seen == ["m4", "m3", "m2", "m1", "m0"]


def test_paging_with_a_filter(api_cloud, rows):
    r = _list(api_cloud, "?host=host3&marker=%s&limit=5" % rows["m4"].uuid)
    assert _names(rows, r) == ["m3", "m1"]
    assert "migrations_links" not in r.json


def test_limit_zero_and_the_configured_maximum(api_cloud, rows, conf):
    assert _list(api_cloud, "?limit=0").json["migrations"] == []
    conf.set_override("max_limit", 3, "api")
    r = _list(api_cloud, "?limit=100")
    assert _names(rows, r) == ["m4", "m3", "m2"] and "migrations_links" in r.json
    # Paging starts at 2.59: before it, every row.
    assert len(_list(api_cloud, "", "2.58").json["migrations"]) == 5


@pytest.mark.parametrize("query, expected", [
    ("?user_id=u9", ["m3", "m1"]),
    ("?project_id=p9", ["m3", "m1"]),
    ("?user_id=u9&status=error", ["m1"]),
    ("?project_id=nobody", []),
])
def test_user_and_project_of_whoever_started_it(api_cloud, rows, query, expected):
    r = _list(api_cloud, query, "2.80")
    assert r.status_code == 200, r.text
    assert _names(rows, r) == expected


@pytest.mark.parametrize("query, version, words", [
    ("?limit=-1", "2.59", "limit"),
    ("?limit=many", "2.59", "limit"),
    ("?changes-since=yesterday", "2.59", "changes-since"),
    ("?changes-before=2026-13-45", "2.66", "changes-before"),
    ("?marker=no-such-migration", "2.59", "Marker no-such-migration could not be found"),
    ("?changes-since=2026-01-02T00:00:00Z&changes-before=2026-01-01T00:00:00Z", "2.66",
     "changes-since must be less than or equal to changes-before"),
    # Parameters a microversion does not know (Nova: additionalProperties
    # false from 2.59).
    ("?changes-before=2026-01-01T00:00:00Z", "2.65", "changes-before"),
    ("?user_id=u9", "2.79", "user_id"),
    ("?bogus=1", "2.59", "bogus"),
])
def test_a_bad_value_is_400_naming_the_parameter(api_cloud, rows, query, version, words):
    r = _list(api_cloud, query, version)
    assert r.status_code == 400, r.text
    assert words in r.json["badRequest"]["message"]


def test_before_2_59_unknown_parameters_are_ignored(api_cloud, rows):
    r = _list(api_cloud, "?bogus=1&user_id=u9&limit=-1", "2.58")
    assert r.status_code == 200, r.text
    assert len(r.json["migrations"]) == 5


def test_only_admins_list(api_cloud, rows):
    r = api_cloud.request("GET", C + "/os-migrations", "member", "2.80")
    assert r.status_code == 403

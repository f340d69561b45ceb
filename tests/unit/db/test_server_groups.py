"""Server groups: members, their hosts, soft delete."""

from __future__ import annotations

import pytest

from flotilla import exception


def test_group_members_and_hosts(db):
    group = db.server_group_create({"name": "g", "policy": "anti-affinity",
                                    "project_id": "p1"})
    a = db.instance_create({"name": "a", "project_id": "p1", "host": "h1"}).uuid
    b = db.instance_create({"name": "b", "project_id": "p1"}).uuid
    db.server_group_add_members(group.uuid, [a, b])
    assert db.server_group_members(group.uuid) == [a, b]
    assert db.server_group_member_hosts(group.uuid) == {a: "h1", b: None}
    assert db.server_group_get_for_instance(b).uuid == group.uuid
    db.instance_destroy(b)
    assert db.server_group_members(group.uuid) == [a]


def test_group_is_scoped_to_its_project_and_soft_deleted(db):
    group = db.server_group_create({"name": "g", "policy": "affinity", "project_id": "p1"})
    with pytest.raises(db.ServerGroupNotFound):
        db.server_group_get(group.uuid, project_id="p2")
    db.server_group_destroy(group.uuid, project_id="p1")
    assert db.server_group_get_all("p1") == []
    with pytest.raises(exception.NotFound):
        db.server_group_get(group.uuid)


def test_bad_policy_is_refused(db):
    with pytest.raises(exception.Invalid, match="policy"):
        db.server_group_create({"name": "g", "policy": "soft-affinity"})

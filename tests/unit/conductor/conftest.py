from __future__ import annotations

import pytest

from tests.unit.db.fixtures import db, db_conf, empty_db  # noqa: F401


@pytest.fixture
def db_url(tmp_path):
    return "sqlite:///%s" % (tmp_path / "conductor.sqlite")


@pytest.fixture
def instance(db):  # noqa: F811 - the db fixture
    """An active instance with a ``stop`` action under request ``req-1``."""
    uuid = "11111111-2222-4333-8444-555555555555"
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1", "user_id": "u1",
                        "flavor": {"memory_mb": 64, "vcpus": 1}, "vm_state": "active",
                        "host": "h1"})
    db.action_start(uuid, "stop", "req-1", user_id="u1", project_id="p1")
    return uuid

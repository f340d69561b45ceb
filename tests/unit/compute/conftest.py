from __future__ import annotations

import pytest

from tests.unit.db.fixtures import db, db_conf, empty_db  # noqa: F401


@pytest.fixture
def db_url(tmp_path):
    return "sqlite:///%s" % (tmp_path / "compute.sqlite")

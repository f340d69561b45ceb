from __future__ import annotations

import pytest

from tests.unit.db.fixtures import db, db_conf, empty_db, manage  # noqa: F401


@pytest.fixture
def db_url(tmp_path):
    """A fresh SQLite file per test."""
    return "sqlite:///%s" % (tmp_path / "flotilla-test.sqlite")

"""Database fixtures shared by the SQLite (unit) and PostgreSQL
(integration) test modules. Each directory's conftest imports them and
provides ``db_url``, the only thing that differs between backends."""

from __future__ import annotations

import pytest

from flotilla.db import api, migration


@pytest.fixture
def db_conf(conf, db_url):
    """``conf`` pointing [database] connection at the test database."""
    conf.set_override("connection", db_url, group="database")
    yield conf


@pytest.fixture
def empty_db(db_conf):
    """The process engine configured on a database with no schema."""
    api.configure(db_conf)
    yield db_conf
    api.dispose()


@pytest.fixture
def db(empty_db):
    """A configured database migrated to head; yields flotilla.db.api."""
    migration.db_sync()
    yield api

"""Schema migrations (shared by the SQLite and PostgreSQL tiers)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from flotilla import exception
from flotilla.db import api, models, schema


def test_empty_database_is_not_synced(empty_db):
    assert schema.current_revision() is None
    with pytest.raises(exception.DBNotSynced) as info:
        schema.check_synced()
    assert "empty" in str(info.value)
    assert schema.head_revision() in str(info.value)


def test_db_sync_from_empty_reaches_head(empty_db):
    assert schema.db_sync() == schema.head_revision()
    schema.check_synced()
    tables = set(sa.inspect(api.get_engine()).get_table_names())
    assert set(models.Base.metadata.tables) <= tables


def test_db_sync_is_idempotent(db_conf):
    head = schema.head_revision()
    # db_sync(conf) builds and disposes its own engine.
    assert schema.db_sync(db_conf) == head
    assert schema.db_sync(db_conf) == head


def test_models_and_migrations_do_not_drift(db):
    with api.get_engine().connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True})
        diffs = compare_metadata(context, models.Base.metadata)
    assert diffs == []


def test_downgrade_to_base_and_back(db):
    engine = api.get_engine()
    with engine.begin() as connection:
        config = schema.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert schema.current_revision() is None
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    schema.db_sync()
    schema.check_synced()

"""The database schema: bring a database to the current revision and check it.

Rules:

* :func:`db_sync` is idempotent: it works on an empty database and is a
  no-op on a current one; on PostgreSQL concurrent runs are serialised by an
  advisory lock, so two hosts running ``flotilla-manage db sync`` at once
  are safe;
* services call :func:`check_synced` at start-up and refuse to run on a
  schema other than the one their code was written for.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from oslo_config import cfg

from flotilla import exception
from flotilla.db import engine as db_engine

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")

# Arbitrary constant identifying "flotilla db sync" among advisory locks.
_PG_SYNC_LOCK = 0x666C6F7469


def alembic_config(url: sa.URL | str | None = None) -> Config:
    """An Alembic Config pointing at Flotilla's migrations (no .ini file)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    if url is not None:
        if isinstance(url, sa.URL):
            url = url.render_as_string(hide_password=False)
        # ConfigParser interpolation would choke on a "%" in a password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def db_sync(conf: cfg.ConfigOpts | None = None,
            revision: str = "head") -> str | None:
    """Upgrade the database of ``conf`` (or the configured one) to
    ``revision``; return the revision reached."""
    engine = db_engine.create_engine(conf) if conf is not None \
        else db_engine.get_engine()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                                   {"k": _PG_SYNC_LOCK})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return current_revision(engine)
    finally:
        if conf is not None:
            engine.dispose()


def current_revision(engine: sa.Engine | None = None) -> str | None:
    """The revision the database is at; None for an empty database."""
    engine = engine or db_engine.get_engine()
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def check_synced(engine: sa.Engine | None = None) -> None:
    """Raise DBNotSynced unless the database is at :func:`head_revision`."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise exception.DBNotSynced(current=current or "empty", head=head)

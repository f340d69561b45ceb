"""Alembic environment for Flotilla's schema.

Configured programmatically by :mod:`flotilla.db.migration`: the caller puts
an open connection (inside a transaction it owns) into
``config.attributes["connection"]``. Offline (``--sql``) mode reads
``sqlalchemy.url`` instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from flotilla.db import models

config = context.config
target_metadata = models.Base.metadata


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        **kwargs)


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"),
               literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = sa.create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _run_on(connection)
        engine.dispose()
    else:
        _run_on(connection)


def _run_on(connection: sa.Connection) -> None:
    # SQLite cannot ALTER most things: later migrations use batch mode
    # (copy-and-move), which this enables for op.batch_alter_table.
    _configure(connection=connection,
               render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

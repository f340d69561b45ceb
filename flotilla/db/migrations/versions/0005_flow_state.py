"""Flow state on instance actions and migration records; services report
their RPC API version.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FLOW_TABLES = ("instance_actions", "migrations")


def upgrade() -> None:
    for table in _FLOW_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("flow", sa.String(length=32), nullable=True))
            batch.add_column(sa.Column("flow_status", sa.String(length=32), nullable=True))
            batch.add_column(sa.Column("flow_owner", sa.String(length=255), nullable=True))
            batch.add_column(sa.Column("flow_data", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("abort_requested", sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("rpc_version", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("rpc_version")
    for table in _FLOW_TABLES:
        with op.batch_alter_table(table) as batch:
            for column in ("abort_requested", "flow_data", "flow_owner", "flow_status",
                           "flow"):
                batch.drop_column(column)

"""Hardening: flavor access lists, image virtual sizes, RPC replay ids.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "flavor_projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flavor_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["flavor_id"], ["flavors.id"], ondelete="CASCADE",
                                name="fk_flavor_projects_flavor_id_flavors"),
        sa.PrimaryKeyConstraint("id", name="pk_flavor_projects"),
        sa.UniqueConstraint("flavor_id", "project_id",
                            name="uq_flavor_projects_flavor_id_project_id"),
    )
    op.create_index("ix_flavor_projects_project_id", "flavor_projects", ["project_id"])
    op.create_table(
        "rpc_seen_messages",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_rpc_seen_messages"),
    )
    op.create_index("ix_rpc_seen_messages_expires_at", "rpc_seen_messages",
                    ["expires_at"])
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("virtual_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("virtual_size")
    op.drop_index("ix_rpc_seen_messages_expires_at", table_name="rpc_seen_messages")
    op.drop_table("rpc_seen_messages")
    op.drop_index("ix_flavor_projects_project_id", table_name="flavor_projects")
    op.drop_table("flavor_projects")

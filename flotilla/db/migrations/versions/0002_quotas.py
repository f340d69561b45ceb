"""Per-project quota overrides (the defaults live in [quota]).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quotas"),
        sa.UniqueConstraint("project_id", "resource",
                            name="uq_quotas_project_id_resource"),
    )
    op.create_index("ix_quotas_project_id", "quotas", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_quotas_project_id", table_name="quotas")
    op.drop_table("quotas")

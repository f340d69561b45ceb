"""Key pairs, server locks and key names, per-user and class quotas.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "key_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_key_pairs"),
        sa.UniqueConstraint("user_id", "name", "deleted",
                            name="uq_key_pairs_user_id_name_deleted"),
    )
    op.create_index("ix_key_pairs_user_id", "key_pairs", ["user_id"])
    op.create_table(
        "project_user_quotas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_project_user_quotas"),
        sa.UniqueConstraint("project_id", "user_id", "resource",
                            name="uq_project_user_quotas_project_id_user_id_resource"),
    )
    op.create_index("ix_project_user_quotas_project_id", "project_user_quotas",
                    ["project_id"])
    op.create_table(
        "quota_classes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quota_classes"),
        sa.UniqueConstraint("class_name", "resource",
                            name="uq_quota_classes_class_name_resource"),
    )
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("key_name", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("key_data", sa.Text(), nullable=True))
        batch.add_column(sa.Column("locked", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("locked_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("locked_reason", sa.String(length=255),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        for column in ("locked_reason", "locked_by", "locked", "key_data", "key_name"):
            batch.drop_column(column)
    op.drop_table("quota_classes")
    op.drop_index("ix_project_user_quotas_project_id", table_name="project_user_quotas")
    op.drop_table("project_user_quotas")
    op.drop_index("ix_key_pairs_user_id", table_name="key_pairs")
    op.drop_table("key_pairs")

"""Volume snapshots (issue 11): the volume_snapshots table; a volume's
source snapshot or image, ``bootable`` and the image metadata it keeps.

Revision ID: 0012
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0008"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)

_VOLUME_COLUMNS = (("snapshot_id", sa.String(length=36)),
                   ("image_id", sa.String(length=36)),
                   ("image_metadata", sa.JSON()))


def upgrade() -> None:
    op.create_table(
        "volume_snapshots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_deadline", TIMESTAMP, nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("path", sa.String(length=1024), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["volume_id"], ["volumes.id"],
                                name="fk_volume_snapshots_volume_id_volumes"),
        sa.PrimaryKeyConstraint("id", name="pk_volume_snapshots"),
    )
    op.create_index("ix_volume_snapshots_volume_id", "volume_snapshots", ["volume_id"])
    op.create_index("ix_volume_snapshots_project_id", "volume_snapshots", ["project_id"])
    with op.batch_alter_table("volumes") as batch:
        for name, kind in _VOLUME_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.add_column(sa.Column("bootable", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("bootable")
        for name, _kind in reversed(_VOLUME_COLUMNS):
            batch.drop_column(name)
    op.drop_index("ix_volume_snapshots_project_id", table_name="volume_snapshots")
    op.drop_index("ix_volume_snapshots_volume_id", table_name="volume_snapshots")
    op.drop_table("volume_snapshots")

"""A volume's source volume (Cinder's ``source_volid``): the volume a
clone was copied from, as the views show it.

Revision ID: 0017_volume_source_volid
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_volume_source_volid"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("source_volid", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("source_volid")

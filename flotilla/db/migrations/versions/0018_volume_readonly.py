"""A volume's read-only flag (Cinder's ``readonly`` admin metadata, set by
``os-update_readonly_flag``): None until it is first set, then whether
every attachment of the volume is read-only (the guest's disk gets
``<readonly/>``, the attachment's attach_mode is ``ro``).

Revision ID: 0018_volume_readonly
Revises: 0017_volume_source_volid
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_volume_readonly"
down_revision = "0017_volume_source_volid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("readonly", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("readonly")

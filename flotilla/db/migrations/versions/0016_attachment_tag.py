"""A volume attachment's device role tag (Nova 2.49 at attach, 2.42 in a
block device mapping at boot; shown from 2.70): kept instead of dropped.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volume_attachments") as batch:
        batch.add_column(sa.Column("tag", sa.String(60), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_attachments") as batch:
        batch.drop_column("tag")

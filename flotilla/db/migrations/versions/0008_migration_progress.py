"""Live migration (issue 12): progress and error reason on migration records.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PROGRESS = ("memory_total", "memory_processed", "memory_remaining",
             "disk_total", "disk_processed", "disk_remaining")


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        for name in _PROGRESS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("error_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("error_reason")
        for name in reversed(_PROGRESS):
            batch.drop_column(name)

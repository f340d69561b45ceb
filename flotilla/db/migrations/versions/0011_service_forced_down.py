"""Evacuate (issue 12): services.forced_down, set by an operator through
os-services (2.11) so a dead host's servers may be evacuated at once.

Revision ID: 0011
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("forced_down", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("forced_down")

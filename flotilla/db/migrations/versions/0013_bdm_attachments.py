"""Boot from volume (issue 11): what a volume attached at server create
keeps on its attachment: ``delete_on_termination`` (the server's delete
also deletes the volume) and ``boot_index`` (0: the server's boot disk).

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volume_attachments") as batch:
        batch.add_column(sa.Column("delete_on_termination", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("boot_index", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_attachments") as batch:
        batch.drop_column("boot_index")
        batch.drop_column("delete_on_termination")

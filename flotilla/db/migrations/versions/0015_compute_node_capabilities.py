"""Online extend of in-use volumes (issue 11): what a compute node's driver
can do (the names of its DriverCapabilities flags that are set), which the
API reads before it lets an in-use volume's extend through.

(Assigned as 0015 revising 0013; 0014, volume capacities, landed on main
meanwhile, so it revises 0014: one head.)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(sa.Column("capabilities", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("capabilities")

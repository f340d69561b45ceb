"""Block volumes (issue 11): the volume host, owner, name and type of a
volume, its status deadline and reason; an attachment's public id, compute
host and connection.

Revision ID: 0007
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0009"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)

_VOLUME_COLUMNS = (("host", sa.String(length=255)),
                   ("user_id", sa.String(length=255)),
                   ("description", sa.Text()),
                   ("volume_type", sa.String(length=255)),
                   ("availability_zone", sa.String(length=255)),
                   ("metadata", sa.JSON()),
                   ("status_deadline", TIMESTAMP),
                   ("status_reason", sa.Text()))
_ATTACHMENT_COLUMNS = (("uuid", sa.String(length=36)),
                       ("host", sa.String(length=255)),
                       ("connection_info", sa.JSON()))


def upgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        for name, kind in _VOLUME_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.create_index("ix_volumes_host", ["host"])
    with op.batch_alter_table("volume_attachments") as batch:
        for name, kind in _ATTACHMENT_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.create_unique_constraint("uq_volume_attachments_uuid", ["uuid"])


def downgrade() -> None:
    with op.batch_alter_table("volume_attachments") as batch:
        batch.drop_constraint("uq_volume_attachments_uuid", type_="unique")
        for name, _kind in reversed(_ATTACHMENT_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("volumes") as batch:
        batch.drop_index("ix_volumes_host")
        for name, _kind in reversed(_VOLUME_COLUMNS):
            batch.drop_column(name)

"""API conformance (issue 14): user attributes, system-scoped role
assignments and tokens; servers' access addresses, disk config, host name,
user data, tags and password; flavor swap; host aggregates; image members.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


_INSTANCE_COLUMNS = (("access_ip_v4", sa.String(length=39)),
                     ("access_ip_v6", sa.String(length=39)),
                     ("disk_config", sa.String(length=32)),
                     ("hostname", sa.String(length=255)),
                     ("user_data", sa.Text()),
                     ("tags", sa.JSON()),
                     ("password", sa.Text()),
                     ("reservation_id", sa.String(length=32)))


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        for name, kind in _INSTANCE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.create_index("ix_instances_reservation_id", ["reservation_id"])
    with op.batch_alter_table("flavors") as batch:
        batch.add_column(sa.Column("swap", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "aggregates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("availability_zone", sa.String(length=255), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_aggregates"),
        sa.UniqueConstraint("uuid", name="uq_aggregates_uuid"),
        sa.UniqueConstraint("name", name="uq_aggregates_name"),
    )
    op.create_table(
        "aggregate_hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("aggregate_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["aggregate_id"], ["aggregates.id"], ondelete="CASCADE",
                                name="fk_aggregate_hosts_aggregate_id_aggregates"),
        sa.PrimaryKeyConstraint("id", name="pk_aggregate_hosts"),
        sa.UniqueConstraint("aggregate_id", "host",
                            name="uq_aggregate_hosts_aggregate_id_host"),
    )
    op.create_index("ix_aggregate_hosts_host", "aggregate_hosts", ["host"])
    op.create_table(
        "image_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE",
                                name="fk_image_members_image_id_images"),
        sa.PrimaryKeyConstraint("id", name="pk_image_members"),
        sa.UniqueConstraint("image_id", "member", name="uq_image_members_image_id_member"),
    )
    op.create_index("ix_image_members_image_id", "image_members", ["image_id"])
    op.create_index("ix_image_members_member", "image_members", ["member"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("extra", sa.JSON(), nullable=True))
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("system", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "system_role_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_system_role_assignments_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_system_role_assignments"),
        sa.UniqueConstraint("user_id", "role",
                            name="uq_system_role_assignments_user_id_role"),
    )


def downgrade() -> None:
    op.drop_index("ix_image_members_member", table_name="image_members")
    op.drop_index("ix_image_members_image_id", table_name="image_members")
    op.drop_table("image_members")
    op.drop_index("ix_aggregate_hosts_host", table_name="aggregate_hosts")
    op.drop_table("aggregate_hosts")
    op.drop_table("aggregates")
    with op.batch_alter_table("flavors") as batch:
        batch.drop_column("swap")
    with op.batch_alter_table("instances") as batch:
        batch.drop_index("ix_instances_reservation_id")
        for name, _ in reversed(_INSTANCE_COLUMNS):
            batch.drop_column(name)
    op.drop_table("system_role_assignments")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("system")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("extra")

"""Initial schema: every table of the first Flotilla release.

Written by autogenerate from flotilla.db.models, then reviewed: timestamps
are plain ``DateTime(timezone=True)`` here (the UTC handling is Python-side
in the models), and indexes are created with the tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Timestamps: timezone-aware (timestamptz on PostgreSQL).
TIMESTAMP = sa.DateTime(timezone=True)

# Creation order respects foreign keys; downgrade drops in reverse.
TABLES = (
    "compute_nodes",
    "flavors",
    "images",
    "instances",
    "projects",
    "server_groups",
    "services",
    "volumes",
    "allocations",
    "instance_actions",
    "instance_faults",
    "migrations",
    "server_group_members",
    "users",
    "volume_attachments",
    "instance_action_events",
    "role_assignments",
    "tokens",
)


def upgrade() -> None:
    op.create_table('compute_nodes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('disk_gb', sa.Integer(), nullable=False),
        sa.Column('vcpus_used', sa.Integer(), nullable=False),
        sa.Column('memory_mb_used', sa.Integer(), nullable=False),
        sa.Column('disk_gb_used', sa.Integer(), nullable=False),
        sa.Column('cpu_allocation_ratio', sa.Double(), nullable=False),
        sa.Column('ram_allocation_ratio', sa.Double(), nullable=False),
        sa.Column('disk_allocation_ratio', sa.Double(), nullable=False),
        sa.Column('hypervisor_type', sa.String(length=255), nullable=True),
        sa.Column('hypervisor_version', sa.Integer(), nullable=True),
        sa.Column('hypervisor_hostname', sa.String(length=255), nullable=True),
        sa.Column('cpu_arch', sa.String(length=32), nullable=True),
        sa.Column('availability_zone', sa.String(length=255), nullable=True),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('running_vms', sa.Integer(), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_compute_nodes'),
        sa.UniqueConstraint('host', name='uq_compute_nodes_host')
    )
    op.create_table('flavors',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('flavorid', sa.String(length=255), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('root_gb', sa.Integer(), nullable=False),
        sa.Column('ephemeral_gb', sa.Integer(), nullable=False),
        sa.Column('is_public', sa.Boolean(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('extra_specs', sa.JSON(), nullable=False),
        sa.Column('deleted', sa.Integer(), nullable=False),
        sa.Column('deleted_at', TIMESTAMP, nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_flavors'),
        sa.UniqueConstraint('flavorid', 'deleted', name='uq_flavors_flavorid_deleted'),
        sa.UniqueConstraint('name', 'deleted', name='uq_flavors_name_deleted')
    )
    op.create_table('images',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('owner', sa.String(length=255), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('disk_format', sa.String(length=32), nullable=True),
        sa.Column('container_format', sa.String(length=32), nullable=True),
        sa.Column('size', sa.BigInteger(), nullable=True),
        sa.Column('checksum', sa.String(length=64), nullable=True),
        sa.Column('min_ram', sa.Integer(), nullable=False),
        sa.Column('min_disk', sa.Integer(), nullable=False),
        sa.Column('visibility', sa.String(length=32), nullable=False),
        sa.Column('properties', sa.JSON(), nullable=False),
        sa.Column('location', sa.String(length=1024), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.Column('deleted_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_images')
    )
    op.create_index('ix_images_owner', 'images', ['owner'])

    op.create_table('instances',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('display_description', sa.Text(), nullable=True),
        sa.Column('project_id', sa.String(length=255), nullable=True),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('flavor_id', sa.String(length=255), nullable=True),
        sa.Column('flavor', sa.JSON(), nullable=True),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('root_gb', sa.Integer(), nullable=False),
        sa.Column('ephemeral_gb', sa.Integer(), nullable=False),
        sa.Column('image_ref', sa.String(length=255), nullable=True),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('node', sa.String(length=255), nullable=True),
        sa.Column('availability_zone', sa.String(length=255), nullable=True),
        sa.Column('vm_state', sa.String(length=32), nullable=False),
        sa.Column('task_state', sa.String(length=32), nullable=True),
        sa.Column('power_state', sa.Integer(), nullable=False),
        sa.Column('task_deadline', TIMESTAMP, nullable=True),
        sa.Column('launched_at', TIMESTAMP, nullable=True),
        sa.Column('terminated_at', TIMESTAMP, nullable=True),
        sa.Column('metadata', sa.JSON(), nullable=False),
        sa.Column('server_group_id', sa.String(length=36), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.Column('deleted_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_instances'),
        sa.UniqueConstraint('uuid', name='uq_instances_uuid')
    )
    op.create_index('ix_instances_host', 'instances', ['host'])
    op.create_index('ix_instances_project_id', 'instances', ['project_id'])
    op.create_index('ix_instances_task_deadline', 'instances', ['task_deadline'])
    op.create_index('ix_instances_vm_state', 'instances', ['vm_state'])

    op.create_table('projects',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_projects'),
        sa.UniqueConstraint('name', name='uq_projects_name')
    )
    op.create_table('server_groups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=True),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('policy', sa.String(length=32), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.Column('deleted_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_server_groups'),
        sa.UniqueConstraint('uuid', name='uq_server_groups_uuid')
    )
    op.create_index('ix_server_groups_project_id', 'server_groups', ['project_id'])

    op.create_table('services',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('binary', sa.String(length=255), nullable=False),
        sa.Column('topic', sa.String(length=255), nullable=True),
        sa.Column('last_seen_at', TIMESTAMP, nullable=True),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('disabled_reason', sa.String(length=255), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_services'),
        sa.UniqueConstraint('host', 'binary', name='uq_services_host_binary')
    )
    op.create_table('volumes',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('project_id', sa.String(length=255), nullable=True),
        sa.Column('size_gb', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('pool', sa.String(length=255), nullable=True),
        sa.Column('path', sa.String(length=1024), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.Column('deleted_at', TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_volumes')
    )
    op.create_index('ix_volumes_project_id', 'volumes', ['project_id'])

    op.create_table('allocations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('consumer_id', sa.String(length=36), nullable=False),
        sa.Column('compute_node_id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('disk_gb', sa.Integer(), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(['compute_node_id'], ['compute_nodes.id'], name='fk_allocations_compute_node_id_compute_nodes'),
        sa.PrimaryKeyConstraint('id', name='pk_allocations'),
        sa.UniqueConstraint('consumer_id', 'compute_node_id', name='uq_allocations_consumer_id_compute_node_id')
    )
    op.create_index('ix_allocations_consumer_id', 'allocations', ['consumer_id'])
    op.create_index('ix_allocations_host', 'allocations', ['host'])

    op.create_table('instance_actions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('action', sa.String(length=255), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('request_id', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('project_id', sa.String(length=255), nullable=True),
        sa.Column('start_time', TIMESTAMP, nullable=False),
        sa.Column('finish_time', TIMESTAMP, nullable=True),
        sa.Column('message', sa.String(length=255), nullable=True),
        sa.Column('current_step', sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], name='fk_instance_actions_instance_uuid_instances'),
        sa.PrimaryKeyConstraint('id', name='pk_instance_actions')
    )
    op.create_index('ix_instance_actions_instance_uuid_request_id', 'instance_actions', ['instance_uuid', 'request_id'])

    op.create_table('instance_faults',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('code', sa.Integer(), nullable=False),
        sa.Column('message', sa.String(length=255), nullable=False),
        sa.Column('details', sa.Text(), nullable=True),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], name='fk_instance_faults_instance_uuid_instances'),
        sa.PrimaryKeyConstraint('id', name='pk_instance_faults')
    )
    op.create_index('ix_instance_faults_instance_uuid', 'instance_faults', ['instance_uuid'])

    op.create_table('migrations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('source_host', sa.String(length=255), nullable=True),
        sa.Column('dest_host', sa.String(length=255), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('migration_type', sa.String(length=32), nullable=False),
        sa.Column('current_step', sa.String(length=255), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], name='fk_migrations_instance_uuid_instances'),
        sa.PrimaryKeyConstraint('id', name='pk_migrations'),
        sa.UniqueConstraint('uuid', name='uq_migrations_uuid')
    )
    op.create_index('ix_migrations_instance_uuid', 'migrations', ['instance_uuid'])
    op.create_index('ix_migrations_status', 'migrations', ['status'])

    op.create_table('server_group_members',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['server_groups.id'], name='fk_server_group_members_group_id_server_groups', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], name='fk_server_group_members_instance_uuid_instances'),
        sa.PrimaryKeyConstraint('id', name='pk_server_group_members'),
        sa.UniqueConstraint('group_id', 'instance_uuid', name='uq_server_group_members_group_id_instance_uuid')
    )
    op.create_index('ix_server_group_members_instance_uuid', 'server_group_members', ['instance_uuid'])

    op.create_table('users',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('default_project_id', sa.String(length=36), nullable=True),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(['default_project_id'], ['projects.id'], name='fk_users_default_project_id_projects', ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name='pk_users'),
        sa.UniqueConstraint('name', name='uq_users_name')
    )
    op.create_table('volume_attachments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('volume_id', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('device', sa.String(length=64), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('created_at', TIMESTAMP, nullable=False),
        sa.Column('updated_at', TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'], name='fk_volume_attachments_instance_uuid_instances'),
        sa.ForeignKeyConstraint(['volume_id'], ['volumes.id'], name='fk_volume_attachments_volume_id_volumes'),
        sa.PrimaryKeyConstraint('id', name='pk_volume_attachments')
    )
    op.create_index('ix_volume_attachments_instance_uuid', 'volume_attachments', ['instance_uuid'])
    op.create_index('ix_volume_attachments_volume_id', 'volume_attachments', ['volume_id'])

    op.create_table('instance_action_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('action_id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=255), nullable=False),
        sa.Column('start_time', TIMESTAMP, nullable=False),
        sa.Column('finish_time', TIMESTAMP, nullable=True),
        sa.Column('result', sa.String(length=255), nullable=True),
        sa.Column('traceback', sa.Text(), nullable=True),
        sa.Column('details', sa.Text(), nullable=True),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(['action_id'], ['instance_actions.id'], name='fk_instance_action_events_action_id_instance_actions'),
        sa.PrimaryKeyConstraint('id', name='pk_instance_action_events')
    )
    op.create_index('ix_instance_action_events_action_id', 'instance_action_events', ['action_id'])

    op.create_table('role_assignments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=False),
        sa.Column('role', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name='fk_role_assignments_project_id_projects', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_role_assignments_user_id_users', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_role_assignments'),
        sa.UniqueConstraint('user_id', 'project_id', 'role', name='uq_role_assignments_user_id_project_id_role')
    )
    op.create_index('ix_role_assignments_project_id', 'role_assignments', ['project_id'])

    op.create_table('tokens',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=True),
        sa.Column('roles', sa.JSON(), nullable=False),
        sa.Column('issued_at', TIMESTAMP, nullable=False),
        sa.Column('expires_at', TIMESTAMP, nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name='fk_tokens_project_id_projects', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_tokens_user_id_users', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_tokens')
    )
    op.create_index('ix_tokens_expires_at', 'tokens', ['expires_at'])
    op.create_index('ix_tokens_user_id', 'tokens', ['user_id'])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)

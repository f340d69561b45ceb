"""Migration records (the ``migrations`` table): created by the API when a
migration is accepted, moved along by its conductor flow, read by the API.

Statuses as Nova shows them: accepted -> preparing -> running ->
post-migrating -> completed, or error / cancelled. The flow's own state
lives on the same row (see flotilla.db.flows).
"""

from __future__ import annotations

import datetime
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.compute_nodes import RESOURCES
from flotilla.db.engine import session_scope
from flotilla.db.instances import MIGRATION_ENDED
from flotilla.db.models import Allocation, ComputeNode, Instance, Migration, VolumeAttachment
from flotilla.db.servers import MarkerNotFound
from flotilla.db.types import utcnow

ACCEPTED = "accepted"
PREPARING = "preparing"
RUNNING = "running"
POST_MIGRATING = "post-migrating"
COMPLETED = "completed"
ERROR = "error"
CANCELLED = "cancelled"

PROGRESS_FIELDS = ("memory_total", "memory_processed", "memory_remaining",
                   "disk_total", "disk_processed", "disk_remaining")


def migration_create(instance_uuid: str, source_host: str | None, dest_host: str | None,
                     migration_type: str, status: str = ACCEPTED) -> Migration:
    with session_scope() as session:
        row = Migration(uuid=str(uuidlib.uuid4()), instance_uuid=instance_uuid,
                        source_host=source_host, dest_host=dest_host, status=status,
                        migration_type=migration_type)
        session.add(row)
        session.flush()
        return row


def migration_get(migration_uuid: str) -> Migration:
    with session_scope() as session:
        row = session.scalars(sa.select(Migration).where(
            Migration.uuid == migration_uuid)).one_or_none()
    if row is None:
        raise exception.MigrationNotFound(migration_id=migration_uuid)
    return row


def migration_get_by_id(instance_uuid: str, migration_id: int) -> Migration:
    with session_scope() as session:
        row = session.scalars(sa.select(Migration).where(
            Migration.id == migration_id,
            Migration.instance_uuid == instance_uuid)).one_or_none()
    if row is None:
        raise exception.MigrationNotFound(migration_id=migration_id)
    return row


def migration_list(instance_uuid: str | None = None, status: str | None = None,
                   host: str | None = None, migration_type: str | None = None,
                   in_progress: bool = False) -> list[Migration]:
    """Migrations, newest first, filtered as given (``host``: source or
    destination)."""
    query = sa.select(Migration).order_by(Migration.created_at.desc(), Migration.id.desc())
    if instance_uuid is not None:
        query = query.where(Migration.instance_uuid == instance_uuid)
    if status is not None:
        query = query.where(Migration.status == status)
    if host is not None:
        query = query.where(sa.or_(Migration.source_host == host, Migration.dest_host == host))
    if migration_type is not None:
        query = query.where(Migration.migration_type == migration_type)
    if in_progress:
        query = query.where(Migration.status.not_in(MIGRATION_ENDED))
    with session_scope() as session:
        return list(session.scalars(query))


def migration_page(filters: Mapping[str, str | None], *,
                   changes_since: datetime.datetime | None = None,
                   changes_before: datetime.datetime | None = None,
                   marker: str | None = None, limit: int | None = None) -> list[Migration]:
    """``GET /os-migrations``: migrations newest first (created_at, id),
    after ``marker`` (a migration uuid; MarkerNotFound if there is none),
    at most ``limit``. ``filters``: instance_uuid, status, migration_type,
    host (source or destination), source_compute, and user_id / project_id
    of whoever started it (the request context its flow saved: a migration
    whose flow has not started yet has none and matches neither).
    ``changes_since`` / ``changes_before``: its last change (updated_at,
    or created_at for a row never updated) at or after / at or before."""
    query = sa.select(Migration).order_by(Migration.created_at.desc(), Migration.id.desc())
    for name, column in (("instance_uuid", Migration.instance_uuid),
                         ("status", Migration.status),
                         ("migration_type", Migration.migration_type),
                         ("source_compute", Migration.source_host)):
        if filters.get(name) is not None:
            query = query.where(column == filters[name])
    if filters.get("host") is not None:
        query = query.where(sa.or_(Migration.source_host == filters["host"],
                                   Migration.dest_host == filters["host"]))
    for name in ("user_id", "project_id"):
        if filters.get(name) is not None:
            query = query.where(
                Migration.flow_data[("ctxt", name)].as_string() == filters[name])
    changed = sa.func.coalesce(Migration.updated_at, Migration.created_at)
    if changes_since is not None:
        query = query.where(changed >= changes_since)
    if changes_before is not None:
        query = query.where(changed <= changes_before)
    with session_scope() as session:
        if marker is not None:
            after = session.execute(sa.select(Migration.created_at, Migration.id).where(
                Migration.uuid == marker)).first()
            if after is None:
                raise MarkerNotFound(marker=marker)
            query = query.where(sa.or_(
                Migration.created_at < after.created_at,
                sa.and_(Migration.created_at == after.created_at,
                        Migration.id < after.id)))
        if limit is not None:
            query = query.limit(limit)
        return list(session.scalars(query))


def migration_in_progress(instance_uuid: str) -> Migration | None:
    found = migration_list(instance_uuid, in_progress=True)
    return found[0] if found else None


def migration_update(migration_uuid: str, values: Mapping[str, Any],
                     expected_status: Sequence[str] | None = None) -> bool:
    """Set ``values``; with ``expected_status`` only from one of those
    statuses. True when the row changed."""
    query = sa.update(Migration).where(Migration.uuid == migration_uuid)
    if expected_status is not None:
        query = query.where(Migration.status.in_(tuple(expected_status)))
    with session_scope() as session:
        result = session.execute(query.values(updated_at=utcnow(), **dict(values)),
                                 execution_options={"synchronize_session": False})
        return result.rowcount > 0



def free_claims(session, consumer: str) -> None:
    """Inside ``session``: remove ``consumer``'s claims, giving their
    amounts back to their nodes (each node's generation bumped)."""
    freed = session.execute(
        sa.delete(Allocation).where(Allocation.consumer_id == consumer)
        .returning(Allocation.compute_node_id,
                   *(getattr(Allocation, r) for r in RESOURCES))).all()
    for row in sorted(freed):
        amounts = dict(zip(RESOURCES, row[1:], strict=True))
        session.execute(
            sa.update(ComputeNode).where(ComputeNode.id == row[0])
            .values(generation=ComputeNode.generation + 1, updated_at=utcnow(),
                    **{r + "_used": getattr(ComputeNode, r + "_used") - amounts[r]
                       for r in RESOURCES}),
            execution_options={"synchronize_session": False})


def move_claims(session, instance_uuid: str, migration_uuid: str) -> None:
    """Inside ``session``: free the instance's claims on its old host and
    make the migration's claim on the new one the instance's. Used wherever
    an instance changes host."""
    free_claims(session, instance_uuid)
    session.execute(
        sa.update(Allocation).where(Allocation.consumer_id == migration_uuid)
        .values(consumer_id=instance_uuid),
        execution_options={"synchronize_session": False})


def live_migration_complete(migration_uuid: str, task_state: str) -> None:
    """The guest runs on the destination now: in one transaction the
    instance moves there (its task cleared), its volume attachments name
    the destination, the instance's claim on the source is freed, the
    migration's claim on the destination becomes the instance's, and the
    migration is completed.

    Conflict when the instance is not where and as the migration says
    (someone else changed it); nothing is changed then.
    """
    with session_scope() as session:
        migration = session.scalars(sa.select(Migration).where(
            Migration.uuid == migration_uuid).with_for_update()).one_or_none()
        if migration is None:
            raise exception.MigrationNotFound(migration_id=migration_uuid)
        instance_uuid = migration.instance_uuid
        result = session.execute(
            sa.update(Instance).where(
                Instance.uuid == instance_uuid, Instance.deleted.is_(False),
                Instance.host == migration.source_host, Instance.task_state == task_state)
            .values(host=migration.dest_host, node=migration.dest_host, task_state=None,
                    task_deadline=None, updated_at=utcnow()),
            execution_options={"synchronize_session": False})
        if result.rowcount != 1:
            raise exception.Conflict(reason="instance %s is no longer migrating from %s"
                                     % (instance_uuid, migration.source_host))
        move_claims(session, instance_uuid, migration_uuid)
        # Its volumes are plugged on the new host now (the same exports).
        session.execute(sa.update(VolumeAttachment).where(
            VolumeAttachment.instance_uuid == instance_uuid,
            VolumeAttachment.host == migration.source_host).values(
            host=migration.dest_host, updated_at=utcnow()),
            execution_options={"synchronize_session": False})
        migration.status = COMPLETED
        migration.updated_at = utcnow()

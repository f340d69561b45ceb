"""The database side of resize and cold migration (conductor/flows/resize.py).

A resize's migration record (``migration_type`` "resize" or "migration")
goes accepted -> pre-migrating -> migrating -> post-migrating -> finished
(the server in VERIFY_RESIZE) -> confirming -> confirmed, or reverting ->
reverted, or error. While it is unfinished ("finished" included: both
hosts hold a copy) both hosts may act on the instance (agent_access).

Claims: the instance keeps its claim on the source (consumer: the
instance), the migration claims the destination (consumer: the migration
record's uuid). Each switch below is one transaction, so the instance's
host, flavor, state and claims never disagree:

* :func:`resize_finish` - the guest runs on the destination: the instance
  moves there with its new flavor, vm_state resized, both claims kept;
* :func:`resize_confirm` - the source claim is freed, the migration's claim
  becomes the instance's, migration ``confirmed``;
* :func:`resize_revert` - the migration's claim is freed, the instance is
  back on the source with its old flavor, migration ``reverted``.

Each is a compare-and-swap on the instance's task_state: Conflict (nothing
changed) when the instance is not in the task the caller expects.

The server's volume attachments name the host its guest runs on (the same
NBD exports serve every host): :func:`resize_finish` moves them to the
destination and :func:`resize_revert` back to the source, in the same
transaction as the instance (nothing to do for a resize on one host).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla import states as st
from flotilla.db.engine import session_scope
from flotilla.db.migration_records import free_claims
from flotilla.db.models import Allocation, Instance, Migration, VolumeAttachment
from flotilla.db.types import utcnow

PRE_MIGRATING = "pre-migrating"
MIGRATING = "migrating"
POST_MIGRATING = "post-migrating"
FINISHED = "finished"
CONFIRMING = "confirming"
CONFIRMED = "confirmed"
REVERTING = "reverting"
REVERTED = "reverted"
ERROR = "error"

RESIZE = "resize"
COLD = "migration"


def flavor_values(flavor: Mapping[str, Any]) -> dict[str, Any]:
    """The instance columns a flavor snapshot (views.flavor_snapshot's
    form) sets."""
    return {"flavor": dict(flavor), "flavor_id": flavor.get("flavorid"),
            "vcpus": int(flavor.get("vcpus") or 1),
            "memory_mb": int(flavor["memory_mb"]),
            "root_gb": int(flavor.get("root_gb") or 0),
            "ephemeral_gb": int(flavor.get("ephemeral_gb") or 0)}


def _locked_migration(session, migration_uuid: str) -> Migration:
    migration = session.scalars(sa.select(Migration).where(
        Migration.uuid == migration_uuid).with_for_update()).one_or_none()
    if migration is None:
        raise exception.MigrationNotFound(migration_id=migration_uuid)
    return migration


def _switch_instance(session, migration: Migration, task_state: str,
                     values: Mapping[str, Any]) -> None:
    result = session.execute(
        sa.update(Instance).where(
            Instance.uuid == migration.instance_uuid, Instance.deleted.is_(False),
            Instance.task_state == task_state)
        .values(task_state=None, task_deadline=None, updated_at=utcnow(), **dict(values)),
        execution_options={"synchronize_session": False})
    if result.rowcount != 1:
        raise exception.Conflict(reason="instance %s is no longer in task %s"
                                 % (migration.instance_uuid, task_state))


def _move_attachments(session, instance_uuid: str, from_host: str | None,
                      to_host: str | None) -> None:
    if not to_host or from_host == to_host:
        return
    session.execute(sa.update(VolumeAttachment).where(
        VolumeAttachment.instance_uuid == instance_uuid,
        VolumeAttachment.host == from_host).values(host=to_host, updated_at=utcnow()),
        execution_options={"synchronize_session": False})


def resize_finish(migration_uuid: str, flavor: Mapping[str, Any]) -> None:
    """The guest runs on the destination with ``flavor``: see the module."""
    with session_scope() as session:
        migration = _locked_migration(session, migration_uuid)
        _switch_instance(session, migration, st.RESIZE_FINISH,
                         dict(flavor_values(flavor), host=migration.dest_host,
                              node=migration.dest_host, vm_state=st.RESIZED))
        _move_attachments(session, migration.instance_uuid, migration.source_host,
                          migration.dest_host)
        migration.status = FINISHED
        migration.updated_at = utcnow()


def resize_confirm(migration_uuid: str, vm_state: str) -> None:
    """Confirmed: the source claim goes, the migration's claim becomes the
    instance's, the server ends in ``vm_state``."""
    with session_scope() as session:
        migration = _locked_migration(session, migration_uuid)
        _switch_instance(session, migration, st.RESIZE_CONFIRMING, {"vm_state": vm_state})
        free_claims(session, migration.instance_uuid)
        session.execute(
            sa.update(Allocation).where(Allocation.consumer_id == migration_uuid)
            .values(consumer_id=migration.instance_uuid),
            execution_options={"synchronize_session": False})
        migration.status = CONFIRMED
        migration.updated_at = utcnow()


def resize_revert(migration_uuid: str, flavor: Mapping[str, Any], vm_state: str,
                  task_state: str = st.RESIZE_REVERTING, status: str = REVERTED,
                  reason: str | None = None) -> None:
    """Reverted (or, with ``status`` error, given up before it finished):
    the migration's claim goes, the instance is on the source with
    ``flavor`` in ``vm_state``."""
    with session_scope() as session:
        migration = _locked_migration(session, migration_uuid)
        _switch_instance(session, migration, task_state,
                         dict(flavor_values(flavor), host=migration.source_host,
                              node=migration.source_host, vm_state=vm_state))
        _move_attachments(session, migration.instance_uuid, migration.dest_host,
                          migration.source_host)
        free_claims(session, migration_uuid)
        migration.status = status
        if reason:
            migration.error_reason = reason[:2000]
        migration.updated_at = utcnow()


def resizes_to_confirm(older_than: datetime.datetime) -> list[Migration]:
    """Finished resizes (servers in VERIFY_RESIZE) last changed before
    ``older_than``: the automatic confirmation's candidates."""
    query = sa.select(Migration).join(
        Instance, Instance.uuid == Migration.instance_uuid).where(
        Migration.status == FINISHED, Migration.updated_at < older_than,
        Instance.deleted.is_(False), Instance.vm_state == st.RESIZED,
        Instance.task_state.is_(None))
    with session_scope() as session:
        return list(session.scalars(query))

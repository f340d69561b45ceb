"""Evacuation records: the database side of ``evacuate`` (issue 12).

An evacuation is a migration record of type ``evacuation``. Statuses as
Nova shows them: accepted -> pre-migrating -> rebuilding -> done, or
failed. ``done`` is final for the cloud: the dead source host's agent,
when it comes back, destroys its stale copy of the guest by itself (its
start-up reconciliation destroys domains of instances recorded elsewhere)
and has no business with the record.
"""

from __future__ import annotations

import sqlalchemy as sa

from flotilla import exception
from flotilla.db import migration_records
from flotilla.db.engine import session_scope
from flotilla.db.models import Instance, Migration
from flotilla.db.types import utcnow

EVACUATION = "evacuation"
ACCEPTED = "accepted"
PRE_MIGRATING = "pre-migrating"
REBUILDING = "rebuilding"
DONE = "done"
FAILED = "failed"


def evacuation_move(migration_uuid: str, task_state: str) -> bool:
    """The instance now belongs to the evacuation's destination: in one
    transaction its host and node become the destination (its task, still
    ``task_state``, kept: the destination rebuilds it next), its claim on
    the dead source is freed, and the evacuation's claim on the destination
    becomes the instance's.

    Idempotent: True when it moved the instance, False when it was on the
    destination already. Conflict when the instance is neither on the
    source in ``task_state`` nor on the destination (someone else changed
    it); nothing is changed then.
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
            .values(host=migration.dest_host, node=migration.dest_host, updated_at=utcnow()),
            execution_options={"synchronize_session": False})
        if result.rowcount != 1:
            host = session.scalars(sa.select(Instance.host).where(
                Instance.uuid == instance_uuid)).one_or_none()
            if host == migration.dest_host:
                return False
            raise exception.Conflict(reason="instance %s is no longer being evacuated "
                                     "from %s" % (instance_uuid, migration.source_host))
        migration_records.move_claims(session, instance_uuid, migration_uuid)
        migration.status = REBUILDING
        migration.updated_at = utcnow()
        return True

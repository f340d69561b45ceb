"""Instances and their faults.

Every state transition is a compare-and-swap: :func:`instance_update`
issues ONE ``UPDATE ... WHERE uuid = ? AND vm_state IN (...) AND task_state
...`` and succeeds only if the row still is in an expected state. Two
requests racing for the same instance cannot both win, on SQLite (one writer
at a time) or PostgreSQL (the second UPDATE re-checks the WHERE clause on
the row the first one committed). A loser gets InstanceStateConflict naming
the state it found; nothing is ever overwritten.

Deletion rule: vm_state ``deleted`` and the row's ``deleted`` flag are
written by ONE statement. :func:`instance_update` to vm_state deleted
soft-deletes the row as well, so no reader (the API's show and list, quota
usage, the reaper) can ever see a live row in vm_state deleted: the
moment a server is reported gone is the moment it leaves every listing.
:func:`instance_destroy` of a row retired that way returns it unchanged,
so callers that still write the state and then destroy keep working.
"""

from __future__ import annotations

import datetime
import uuid as uuidlib
from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Instance, InstanceFault
from flotilla.db.types import utcnow
from flotilla.states import DELETED


class _AnyState:
    """Sentinel: "do not check this state" (None means "must be NULL")."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _AnyState()

# Columns a caller may not set through instance_update.
_PROTECTED = frozenset({"id", "uuid", "created_at", "deleted", "deleted_at"})
# Sizing columns filled from the flavor snapshot when not given.
_FLAVOR_FIELDS = ("vcpus", "memory_mb", "root_gb", "ephemeral_gb")

ExpectedState = str | None | Collection[str | None] | _AnyState


def _attr_values(values: Mapping[str, Any], protected=_PROTECTED) -> dict:
    """Map column names (``metadata``) to attribute keys (``metadata_``),
    rejecting unknown and protected names."""
    columns = {attr.columns[0].name: attr.key
               for attr in sa.inspect(Instance).column_attrs}
    result = {}
    for name, value in values.items():
        if name not in columns or name in protected:
            raise exception.Invalid(reason="cannot set instance field %r" % name)
        result[columns[name]] = value
    return result


def instance_create(values: Mapping[str, Any]) -> Instance:
    """Insert an instance. ``uuid`` is generated if absent; vcpus, memory_mb,
    root_gb and ephemeral_gb default to the ``flavor`` snapshot's."""
    values = dict(values)
    values.setdefault("uuid", str(uuidlib.uuid4()))
    flavor = values.get("flavor") or {}
    for field in _FLAVOR_FIELDS:
        if field not in values and field in flavor:
            values[field] = flavor[field]
    if "flavor_id" not in values and "flavorid" in flavor:
        values["flavor_id"] = flavor["flavorid"]
    instance = Instance(**_attr_values(values, protected=frozenset({"id"})))
    try:
        with session_scope() as session:
            session.add(instance)
    except sa.exc.IntegrityError:
        raise exception.Conflict(
            reason="instance %s already exists" % values["uuid"]) from None
    return instance


def instance_get(uuid: str, read_deleted: bool = False) -> Instance:
    """The instance, or InstanceNotFound (also for a deleted one unless
    ``read_deleted``)."""
    with session_scope() as session:
        return _get(session, uuid, read_deleted)


def instance_get_all(project_id: str | None = None, host: str | None = None,
                     vm_state: str | None = None, read_deleted: bool = False,
                     limit: int | None = None) -> list[Instance]:
    """Instances matching every filter given, oldest first."""
    query = sa.select(Instance).order_by(Instance.created_at, Instance.id)
    if project_id is not None:
        query = query.where(Instance.project_id == project_id)
    if host is not None:
        query = query.where(Instance.host == host)
    if vm_state is not None:
        query = query.where(Instance.vm_state == vm_state)
    if not read_deleted:
        query = query.where(Instance.deleted.is_(False))
    if limit is not None:
        query = query.limit(limit)
    with session_scope() as session:
        return list(session.scalars(query))


def instance_get_all_by_host(host: str, read_deleted: bool = False) -> list[Instance]:
    """The live instances placed on ``host``."""
    return instance_get_all(host=host, read_deleted=read_deleted)


def instance_get_expired_tasks(now: datetime.datetime | None = None) -> list[Instance]:
    """Live instances with a task whose deadline has passed (for the reaper)."""
    now = now or utcnow()
    query = (sa.select(Instance)
             .where(Instance.deleted.is_(False),
                    Instance.task_state.is_not(None),
                    Instance.task_deadline < now)
             .order_by(Instance.task_deadline))
    with session_scope() as session:
        return list(session.scalars(query))


def instance_update(uuid: str, values: Mapping[str, Any],
                    expected_vm_state: ExpectedState = ANY,
                    expected_task_state: ExpectedState = ANY) -> Instance:
    """Set ``values`` on a live instance if its state is as expected.

    ``expected_*`` may be a value, a tuple/list of values, ``None`` (the
    column must be NULL) or :data:`ANY` (not checked). Returns the updated
    instance. Raises InstanceStateConflict (with the actual and expected
    states) when the state differs, InstanceNotFound when there is no live
    instance ``uuid``.
    """
    attrs = _attr_values(values)
    attrs.setdefault("updated_at", utcnow())
    if attrs.get("vm_state") == DELETED:
        # See the deletion rule: never a live row in vm_state deleted.
        attrs.update(deleted=True, deleted_at=attrs["updated_at"])
    return _compare_and_swap(uuid, attrs, expected_vm_state, expected_task_state)


def instance_destroy(uuid: str, expected_vm_state: ExpectedState = ANY,
                     expected_task_state: ExpectedState = ANY) -> Instance:
    """Soft-delete an instance (same compare-and-swap rules as update).

    The row stays, with ``deleted`` set and ``deleted_at`` now, so its
    actions and faults remain readable; it disappears from normal reads.
    A row already retired by :func:`instance_update` to vm_state deleted
    is returned as it is (when it matches the expected states).
    """
    now = utcnow()
    attrs = {"deleted": True, "deleted_at": now, "updated_at": now}
    try:
        return _compare_and_swap(uuid, attrs, expected_vm_state, expected_task_state)
    except exception.InstanceNotFound:
        with session_scope() as session:
            retired = _get(session, uuid, read_deleted=True)
        if retired.vm_state != DELETED or not _matches(
                retired, expected_vm_state, expected_task_state):
            raise
        return retired


def _compare_and_swap(uuid: str, attrs: dict, expected_vm_state,
                      expected_task_state) -> Instance:
    conditions = [Instance.uuid == uuid, Instance.deleted.is_(False)]
    for column, expected in ((Instance.vm_state, expected_vm_state),
                             (Instance.task_state, expected_task_state)):
        clause = _state_clause(column, expected)
        if clause is not None:
            conditions.append(clause)
    with session_scope() as session:
        result = session.execute(
            sa.update(Instance).where(*conditions).values(**attrs),
            execution_options={"synchronize_session": False})
        if result.rowcount == 1:
            return _get(session, uuid, read_deleted=True)
        # Lost: read what is there to say why (InstanceNotFound if nothing).
        actual = _get(session, uuid, read_deleted=False)
        raise exception.InstanceStateConflict(
            instance_uuid=uuid,
            actual_vm_state=actual.vm_state,
            actual_task_state=actual.task_state,
            expected_vm_state=_describe(expected_vm_state),
            expected_task_state=_describe(expected_task_state))


def _matches(instance: Instance, expected_vm_state, expected_task_state) -> bool:
    for actual, expected in ((instance.vm_state, expected_vm_state),
                             (instance.task_state, expected_task_state)):
        if isinstance(expected, _AnyState):
            continue
        if isinstance(expected, (str, type(None))):
            expected = (expected,)
        if actual not in tuple(expected):
            return False
    return True


def _state_clause(column, expected):
    if isinstance(expected, _AnyState):
        return None
    if isinstance(expected, (str, type(None))):
        expected = (expected,)
    expected = tuple(expected)
    parts = []
    if None in expected:
        parts.append(column.is_(None))
    values = [v for v in expected if v is not None]
    if values:
        parts.append(column.in_(values))
    # An empty collection matches nothing, rather than everything.
    return sa.or_(*parts) if parts else sa.false()


def _describe(expected) -> str:
    if isinstance(expected, _AnyState):
        return "any"
    if isinstance(expected, (str, type(None))):
        return str(expected)
    return "one of (%s)" % ", ".join(str(v) for v in expected)


def _get(session, uuid: str, read_deleted: bool) -> Instance:
    query = sa.select(Instance).where(Instance.uuid == uuid)
    if not read_deleted:
        query = query.where(Instance.deleted.is_(False))
    instance = session.scalars(
        query.execution_options(populate_existing=True)).one_or_none()
    if instance is None:
        raise exception.InstanceNotFound(instance_uuid=uuid)
    return instance


# --- migrations in progress --------------------------------------------------

#: Migration statuses after which neither host has business with the instance.
MIGRATION_ENDED = ("completed", "error", "failed", "cancelled", "confirmed", "reverted",
                   "done")


def migration_hosts_in_progress(instance_uuid: str) -> set[str]:
    """The source and destination hosts of the instance's unfinished
    migrations (a resize waiting for confirmation counts: both hosts hold a
    copy)."""
    from flotilla.db.models import Migration
    query = sa.select(Migration.source_host, Migration.dest_host).where(
        Migration.instance_uuid == instance_uuid, Migration.status.not_in(MIGRATION_ENDED))
    with session_scope() as session:
        return {h for row in session.execute(query) for h in row if h}


# --- faults ------------------------------------------------------------------

FAULT_MESSAGE_LEN = 255

def instance_fault_create(instance_uuid: str, code: int, message: str,
                          details: str | None = None,
                          host: str | None = None) -> InstanceFault:
    """Record why an operation on an instance failed.

    The message column holds 255 characters: a longer message is cut there
    and kept whole at the top of ``details`` (the one place faults are cut).
    """
    if len(message) > FAULT_MESSAGE_LEN:
        details = message + ("\n\n" + details if details else "")
        message = message[:FAULT_MESSAGE_LEN - 3] + "..."
    fault = InstanceFault(instance_uuid=instance_uuid, code=code,
                          message=message, details=details, host=host)
    try:
        with session_scope() as session:
            session.add(fault)
    except sa.exc.IntegrityError:
        raise exception.InstanceNotFound(instance_uuid=instance_uuid) from None
    return fault


def instance_fault_get_all(instance_uuid: str) -> list[InstanceFault]:
    """The faults of an instance, newest first."""
    query = (sa.select(InstanceFault)
             .where(InstanceFault.instance_uuid == instance_uuid)
             .order_by(InstanceFault.created_at.desc(), InstanceFault.id.desc()))
    with session_scope() as session:
        return list(session.scalars(query))

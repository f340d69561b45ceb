"""Where conductor flows keep their state: on an instance action or a
migration record (the columns of :class:`flotilla.db.models.FlowStateMixin`).

A flow's record is named by a :class:`FlowRecordRef`: ``("action",
instance_uuid, request_id)`` or ``("migration", migration_uuid)``. Every
write is one UPDATE of that row; a row that does not exist (its instance was
purged) raises NotFound.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import InstanceAction, Migration

# Flow statuses.
RUNNING = "running"
WAITING = "waiting"
REVERTING = "reverting"
COMPLETED = "completed"
FAILED = "failed"
ABORTED = "aborted"
UNFINISHED = (RUNNING, WAITING, REVERTING)

_FIELDS = ("flow", "flow_status", "flow_owner", "flow_data", "current_step",
           "abort_requested")


@dataclasses.dataclass(frozen=True)
class FlowRecordRef:
    kind: str                 # "action" or "migration"
    key: tuple[str, ...]      # (instance_uuid, request_id) or (migration_uuid,)

    @classmethod
    def action(cls, instance_uuid: str, request_id: str) -> FlowRecordRef:
        return cls("action", (instance_uuid, request_id))

    @classmethod
    def migration(cls, migration_uuid: str) -> FlowRecordRef:
        return cls("migration", (migration_uuid,))


@dataclasses.dataclass(frozen=True)
class FlowRecord:
    ref: FlowRecordRef
    instance_uuid: str
    flow: str | None
    flow_status: str | None
    flow_owner: str | None
    flow_data: dict[str, Any] | None
    current_step: str | None
    abort_requested: bool


def _where(ref: FlowRecordRef):
    if ref.kind == "action":
        instance_uuid, request_id = ref.key
        latest = (sa.select(sa.func.max(InstanceAction.id))
                  .where(InstanceAction.instance_uuid == instance_uuid,
                         InstanceAction.request_id == request_id)
                  .scalar_subquery())
        return InstanceAction, InstanceAction.id == latest
    if ref.kind == "migration":
        return Migration, Migration.uuid == ref.key[0]
    raise ValueError("unknown flow record kind %r" % ref.kind)


def _record(ref: FlowRecordRef, row) -> FlowRecord:
    return FlowRecord(ref, row.instance_uuid, row.flow, row.flow_status, row.flow_owner,
                      row.flow_data, row.current_step, bool(row.abort_requested))


def flow_record_get(ref: FlowRecordRef) -> FlowRecord:
    model, where = _where(ref)
    with session_scope() as session:
        row = session.scalars(sa.select(model).where(where)).one_or_none()
        if row is None:
            raise exception.NotFound("No flow record %s %s" % (ref.kind, "/".join(ref.key)))
        return _record(ref, row)


def flow_record_update(ref: FlowRecordRef, expected_status: tuple[str | None, ...] | None
                       = None, **values: Any) -> bool:
    """Write ``values`` (any of the flow columns) on the record; with
    ``expected_status`` only while its flow_status is one of them (a
    compare-and-swap: two conductors never both take a flow). True when
    written."""
    unknown = set(values) - set(_FIELDS)
    if unknown:
        raise ValueError("not flow columns: %s" % sorted(unknown))
    model, where = _where(ref)
    clauses = [where]
    if expected_status is not None:
        known = [s for s in expected_status if s is not None]
        status = model.flow_status.in_(known)
        if None in expected_status:
            status = sa.or_(status, model.flow_status.is_(None))
        clauses.append(status)
    with session_scope() as session:
        result = session.execute(sa.update(model).where(*clauses).values(**values),
                                 execution_options={"synchronize_session": False})
        if result.rowcount == 1:
            return True
        if expected_status is None or not session.scalar(
                sa.select(sa.func.count()).select_from(model).where(where)):
            raise exception.NotFound("No flow record %s %s" % (ref.kind, "/".join(ref.key)))
        return False


def flow_records_unfinished(owner: str | None = None,
                            statuses: tuple[str, ...] = UNFINISHED) -> list[FlowRecord]:
    """Flows in ``statuses`` (of ``owner`` when given), on actions and
    migration records alike."""
    result = []
    with session_scope() as session:
        for model in (InstanceAction, Migration):
            query = sa.select(model).where(model.flow.is_not(None),
                                           model.flow_status.in_(statuses))
            if owner is not None:
                query = query.where(model.flow_owner == owner)
            for row in session.scalars(query.order_by(model.id)):
                ref = (FlowRecordRef.action(row.instance_uuid, row.request_id)
                       if model is InstanceAction else FlowRecordRef.migration(row.uuid))
                result.append(_record(ref, row))
    return result


def flow_record_for_instance(instance_uuid: str,
                             statuses: tuple[str, ...] = UNFINISHED) -> FlowRecord | None:
    """The newest flow of the instance in ``statuses``, action or migration."""
    newest: tuple[Any, FlowRecord] | None = None
    with session_scope() as session:
        for model in (InstanceAction, Migration):
            row = session.scalars(
                sa.select(model).where(model.instance_uuid == instance_uuid,
                                       model.flow.is_not(None),
                                       model.flow_status.in_(statuses))
                .order_by(model.id.desc()).limit(1)).one_or_none()
            if row is None:
                continue
            ref = (FlowRecordRef.action(row.instance_uuid, row.request_id)
                   if model is InstanceAction else FlowRecordRef.migration(row.uuid))
            when = getattr(row, "start_time", None) or row.created_at
            if newest is None or when > newest[0]:
                newest = (when, _record(ref, row))
    return newest[1] if newest else None

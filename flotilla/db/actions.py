"""Instance actions (one per user request) and their events (one per step).

An action is keyed by (instance_uuid, request_id): every service handling
the request records its events under it, so a user can read what happened
to their instance and where it failed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import InstanceAction, InstanceActionEvent
from flotilla.db.types import utcnow


def action_start(instance_uuid: str, action: str, request_id: str,
                 user_id: str | None = None, project_id: str | None = None,
                 message: str | None = None) -> InstanceAction:
    """Record that ``action`` (create, stop, ...) began on an instance."""
    row = InstanceAction(instance_uuid=instance_uuid, action=action,
                         request_id=request_id, user_id=user_id,
                         project_id=project_id, message=message)
    try:
        with session_scope() as session:
            session.add(row)
    except sa.exc.IntegrityError:
        raise exception.InstanceNotFound(instance_uuid=instance_uuid) from None
    return row


def action_finish(instance_uuid: str, request_id: str,
                  message: str | None = None) -> InstanceAction:
    """Mark the action finished now (``message`` e.g. 'Error'). A flow's
    current step is the flow's to clear (see conductor/flows/runner.py)."""
    values: dict[str, Any] = {"finish_time": utcnow()}
    if message is not None:
        values["message"] = message
    return _update_action(instance_uuid, request_id, values)


def action_set_step(instance_uuid: str, request_id: str,
                    step: str | None) -> InstanceAction:
    """Record the flow step running now (None when none is)."""
    return _update_action(instance_uuid, request_id, {"current_step": step})


def action_get(instance_uuid: str, request_id: str) -> InstanceAction:
    with session_scope() as session:
        return _get(session, instance_uuid, request_id)


def action_get_all(instance_uuid: str) -> list[InstanceAction]:
    """The actions of an instance, newest first."""
    with session_scope() as session:
        return list(session.scalars(
            sa.select(InstanceAction)
            .where(InstanceAction.instance_uuid == instance_uuid)
            .order_by(InstanceAction.start_time.desc(),
                      InstanceAction.id.desc())))


def action_event_start(instance_uuid: str, request_id: str, event: str,
                       host: str | None = None) -> InstanceActionEvent:
    """Record that step ``event`` of the action began (on ``host``)."""
    with session_scope() as session:
        action = _get(session, instance_uuid, request_id)
        row = InstanceActionEvent(action_id=action.id, event=event, host=host)
        session.add(row)
    return row


def action_event_finish(instance_uuid: str, request_id: str, event: str,
                        result: str, traceback: str | None = None,
                        details: str | None = None) -> InstanceActionEvent:
    """Finish the latest unfinished ``event`` with ``result`` (Success or
    Error, with the traceback)."""
    with session_scope() as session:
        action = _get(session, instance_uuid, request_id)
        row = session.scalars(
            sa.select(InstanceActionEvent)
            .where(InstanceActionEvent.action_id == action.id,
                   InstanceActionEvent.event == event,
                   InstanceActionEvent.finish_time.is_(None))
            .order_by(InstanceActionEvent.id.desc()).limit(1)).one_or_none()
        if row is None:
            raise exception.NotFound(
                "No unfinished event %s for request %s on instance %s"
                % (event, request_id, instance_uuid))
        row.finish_time = utcnow()
        row.result = result
        row.traceback = traceback
        row.details = details
    return row


def action_events_get(action_id: int) -> list[InstanceActionEvent]:
    with session_scope() as session:
        return list(session.scalars(
            sa.select(InstanceActionEvent)
            .where(InstanceActionEvent.action_id == action_id)
            .order_by(InstanceActionEvent.id)))


def _update_action(instance_uuid, request_id, values) -> InstanceAction:
    with session_scope() as session:
        action = _get(session, instance_uuid, request_id)
        for key, value in values.items():
            setattr(action, key, value)
    return action


def _get(session, instance_uuid: str, request_id: str) -> InstanceAction:
    action = session.scalars(
        sa.select(InstanceAction)
        .where(InstanceAction.instance_uuid == instance_uuid,
               InstanceAction.request_id == request_id)
        .order_by(InstanceAction.id.desc()).limit(1)).one_or_none()
    if action is None:
        raise exception.NotFound(
            "No action for request %s on instance %s" % (request_id, instance_uuid))
    return action

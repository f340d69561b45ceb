"""Server locks (the ``lock`` and ``unlock`` actions) and the check every
state-changing request makes.

Rules (Nova's):

* a locked server refuses non-admins its state-changing actions and
  delete with 409 "Instance <uuid> is locked" (:func:`check_not_locked`);
  admins are never refused. Reads, console output and renaming (PUT,
  which Nova leaves out of the lock) stay allowed;
* ``lock`` records who locked: ``owner`` when the caller's project owns the
  server, else ``admin``. The owner locking an already locked server
  changes nothing; an admin's lock replaces the owner's;
* ``unlock`` by a non-admin of a lock an admin set is 403;
* from 2.73 ``lock`` takes ``{"locked_reason": "..."}`` (1-255 characters),
  shown as ``locked_reason``; before 2.73 the body's value is ignored;
* both are instance actions (``lock``/``unlock``, event ``api_lock`` /
  ``api_unlock``), finished at once: nothing is sent to the host.
"""

from __future__ import annotations

from api import errors, validation
from flotilla import exception
from flotilla.context import RequestContext
from flotilla.db import api as db

LOCK_V273 = {"type": ["object", "null"], "properties": {
    "locked_reason": {"type": "string", "minLength": 1, "maxLength": 255}},
    "additionalProperties": False}


def check_not_locked(ctx: RequestContext, inst) -> None:
    """409 when ``inst`` is locked and ``ctx`` is not an admin."""
    if inst.locked and not ctx.is_admin:
        raise errors.conflict(str(exception.InstanceIsLocked(instance_uuid=inst.uuid)))


def lock(ctx: RequestContext, inst, args, version) -> None:
    reason = None
    if version >= (2, 73):
        validation.validate({"lock": args}, {"type": "object",
                                              "properties": {"lock": LOCK_V273}})
        reason = (args or {}).get("locked_reason")
    is_owner = inst.project_id == ctx.project_id
    if inst.locked and is_owner:
        return
    values = {"locked": True, "locked_by": "owner" if is_owner else "admin"}
    if reason:   # as Nova: an admin re-locking without a reason keeps the old one
        values["locked_reason"] = reason
    _record(ctx, inst.uuid, "lock", values)


def unlock(ctx: RequestContext, inst) -> None:
    expected_by = "owner" if inst.project_id == ctx.project_id else "admin"
    if inst.locked_by and inst.locked_by != expected_by and not ctx.is_admin:
        raise errors.forbidden("Policy doesn't allow os_compute_api:os-lock-server:"
                               "unlock:unlock_override to be performed.")
    _record(ctx, inst.uuid, "unlock",
            {"locked": False, "locked_by": None, "locked_reason": None})


def _record(ctx: RequestContext, uuid: str, action: str, values: dict) -> None:
    event = "api_" + action
    db.action_start(uuid, action, ctx.request_id, ctx.user_id, ctx.project_id)
    db.action_event_start(uuid, ctx.request_id, event)
    try:
        db.instance_update(uuid, values)
    except exception.InstanceNotFound:
        db.action_event_finish(uuid, ctx.request_id, event, "Error")
        db.action_finish(uuid, ctx.request_id, message="Error")
        raise errors.not_found("Instance %s could not be found." % uuid) from None
    db.action_event_finish(uuid, ctx.request_id, event, "Success")
    db.action_finish(uuid, ctx.request_id)

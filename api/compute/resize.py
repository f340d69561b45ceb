"""Cold migration and resize through the API: the ``migrate``, ``resize``,
``confirmResize`` and ``revertResize`` server actions (Nova's).

Rules:

* ``migrate`` is admin only (Nova's default policy); ``host`` is accepted
  from 2.56 (before: 400 naming it) and must be another enabled, up compute
  host (400 naming the reason, as os-migrateLive) with room for the server
  (409 naming the short resource, before anything is written; without a
  host, a cold migration no host can hold is answered 202 and ends in the
  conductor: migration ``error``, server back ACTIVE, the reason in the
  action's event, as Nova); a cold migration is a
  resize to the server's own flavor, recorded as the action ``migrate``;
* ``resize`` needs ``flavorRef``: a flavor the project may use (400 "could
  not be found" otherwise, as boot), not the server's own (400), with a
  root disk neither smaller than the server's nor zero (400: a local disk
  cannot shrink; a server booted from a volume has no local root disk, so
  its flavor's disk is not checked, as Nova); the extra cores and ram
  within quota (403 naming them);
* both need an ACTIVE or SHUTOFF server with no task (409 otherwise, and
  for a locked server and non-admins); volumes attached move with it (the
  same NBD exports, defined again on the new host), but not one still
  being attached or detached (409 naming it); the task becomes ``resize_prep``
  (status RESIZE before the 202 leaves, as ``--wait`` needs), the migration
  record is created ``accepted`` and the conductor's flow started: 202;
* ``confirmResize`` and ``revertResize`` need a server in VERIFY_RESIZE
  with no task (409 otherwise); the task becomes ``resize_confirming`` /
  ``resize_reverting``, the migration ``confirming`` / ``reverting``:
  204 for confirm (Nova), 202 for revert;
* a conductor that cannot be reached puts everything back: 503.
"""

from __future__ import annotations

import logging

import falcon

from api import errors
from api.compute import flavor_access, locks, migrations, views
from api.state import APIState, version
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.db import quotas as quotas_db
from flotilla.db import resizes as rs_db
from flotilla.db import volumes as volumes_db
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)

OPERATION = st.operation("resize")
ACTIONS = ("migrate", "resize", "confirmResize", "revertResize")


def handle(state: APIState, req: falcon.Request, resp: falcon.Response, ctx, inst,
           name: str, args) -> None:
    """One of :data:`ACTIONS` on ``inst`` (see the module rules)."""
    locks.check_not_locked(ctx, inst)
    if name == "migrate":
        _migrate(state, req, resp, ctx, inst, args)
    elif name == "resize":
        _resize(state, resp, ctx, inst, args)
    else:
        _confirm_or_revert(state, resp, ctx, inst, name)


def _conflict(name: str, inst) -> errors.APIError:
    return errors.conflict("Cannot '%s' instance %s while it is in vm_state %s%s"
                           % (name, inst.uuid, inst.vm_state,
                              ", task_state %s" % inst.task_state
                              if inst.task_state else ""))


def _check_movable(name: str, inst) -> None:
    if inst.vm_state not in OPERATION.from_vm_states or inst.task_state is not None:
        raise _conflict(name, inst)
    if not inst.host:
        raise errors.conflict("Cannot '%s' instance %s: it has no host" % (name, inst.uuid))
    migrations.check_volumes_settled(name, inst)


def _migrate(state: APIState, req, resp, ctx, inst, args) -> None:
    if not ctx.is_admin:
        raise errors.forbidden("Policy doesn't allow os_compute_api:os-migrate-server:"
                               "migrate to be performed.")
    args = args or {}
    host = args.get("host")
    if "host" in args and version(req) < (2, 56):
        raise errors.bad_request("Invalid input for field/attribute migrate. Value: %s. "
                                 "Additional properties are not allowed ('host' was "
                                 "unexpected)" % args)
    _check_movable("migrate", inst)
    if host:
        migrations._check_host(state, host, inst)
    _start(state, resp, ctx, inst, dict(inst.flavor or {}), host, rs_db.COLD, "migrate")


def _resize(state: APIState, resp, ctx, inst, args) -> None:
    flavor = flavor_access.usable_flavor(ctx, args["flavorRef"])
    current = dict(inst.flavor or {})
    if str(flavor.flavorid) == str(current.get("flavorid") or inst.flavor_id):
        raise errors.bad_request("Invalid input for field/attribute flavorRef: when "
                                 "resizing, instances must change flavor!")
    # A server booted from a volume: the flavor's disk is not its disk.
    volume_backed = any(a.boot_index == 0
                        for a in volumes_db.attachments_of_instance(inst.uuid))
    if volume_backed:
        LOG.debug("%s boots from a volume: its flavor's disk is not checked", inst.uuid)
    elif not flavor.root_gb:
        raise errors.bad_request("Invalid input for field/attribute flavorRef: resize to "
                                 "zero disk flavor is not allowed.")
    elif flavor.root_gb < (inst.root_gb or 0):
        raise errors.bad_request("Invalid input for field/attribute flavorRef: flavor %s "
                                 "has a %d GB root disk, smaller than the server's %d GB "
                                 "(a disk cannot shrink)"
                                 % (flavor.flavorid, flavor.root_gb, inst.root_gb))
    _check_movable("resize", inst)
    _check_quota(state, inst, flavor)
    _start(state, resp, ctx, inst, views.flavor_snapshot(flavor), None, rs_db.RESIZE,
           "resize")


def _check_quota(state: APIState, inst, flavor) -> None:
    """A resize up needs the extra cores and ram within the server's
    project's (and user's) quota: 403 naming them otherwise, as Nova. The
    check is not atomic with the resize's start (a concurrent boot may take
    the same room)."""
    from api.compute.servers import quota_limits
    deltas = {"cores": max(0, flavor.vcpus - (inst.vcpus or 0)),
              "ram": max(0, flavor.memory_mb - (inst.memory_mb or 0))}
    deltas = {k: v for k, v in deltas.items() if v}
    if deltas:
        quotas_db.check_project_and_user(
            inst.project_id, inst.user_id,
            quota_limits(state.conf, inst.project_id, user_id=inst.user_id), deltas)


def _start(state: APIState, resp, ctx, inst, flavor: dict, host: str | None,
           migration_type: str, action: str) -> None:
    try:
        db.instance_update(inst.uuid, {"task_state": OPERATION.task_state,
                                       "task_deadline": task_deadline(
                                           state.conf, OPERATION.task_state)},
                           expected_vm_state=OPERATION.from_vm_states,
                           expected_task_state=None)
    except exception.InstanceStateConflict:
        raise _conflict(action, db.instance_get(inst.uuid)) from None
    migration = mig_db.migration_create(inst.uuid, inst.host, None, migration_type)
    db.action_start(inst.uuid, action, ctx.request_id, ctx.user_id, ctx.project_id)
    try:
        state.conductor.resize_instance(ctx, inst.uuid, migration.uuid, flavor, host,
                                        action)
    except exception.MessagingException as exc:
        LOG.error("Could not cast resize_instance for %s: %s", inst.uuid, exc)
        mig_db.migration_update(migration.uuid, {"status": rs_db.ERROR,
                                                 "error_reason": str(exc)})
        _undo_task(inst.uuid, OPERATION.task_state)
        db.action_finish(inst.uuid, ctx.request_id, message="Error")
        raise errors.APIError(503, "The conductor could not be reached") from None
    resp.status = falcon.HTTP_202


def _confirm_or_revert(state: APIState, resp, ctx, inst, name: str) -> None:
    confirm = name == "confirmResize"
    op = st.operation("confirm_resize" if confirm else "revert_resize")
    if inst.vm_state != st.RESIZED or inst.task_state is not None:
        raise _conflict(name, inst)
    migration = next((m for m in mig_db.migration_list(inst.uuid, status=rs_db.FINISHED)
                      if m.migration_type in (rs_db.RESIZE, rs_db.COLD)), None)
    if migration is None:
        raise errors.conflict("Instance %s has no resize waiting for confirmation"
                              % inst.uuid)
    try:
        db.instance_update(inst.uuid, {"task_state": op.task_state,
                                       "task_deadline": task_deadline(state.conf,
                                                                      op.task_state)},
                           expected_vm_state=st.RESIZED, expected_task_state=None)
    except exception.InstanceStateConflict:
        raise _conflict(name, db.instance_get(inst.uuid)) from None
    mig_db.migration_update(migration.uuid, {"status": rs_db.CONFIRMING if confirm
                                             else rs_db.REVERTING})
    db.action_start(inst.uuid, op.action, ctx.request_id, ctx.user_id, ctx.project_id)
    try:
        if confirm:
            state.conductor.confirm_resize(ctx, inst.uuid, migration.uuid)
        else:
            state.conductor.revert_resize(ctx, inst.uuid, migration.uuid)
    except exception.MessagingException as exc:
        LOG.error("Could not cast %s for %s: %s", name, inst.uuid, exc)
        mig_db.migration_update(migration.uuid, {"status": rs_db.FINISHED})
        _undo_task(inst.uuid, op.task_state)
        db.action_finish(inst.uuid, ctx.request_id, message="Error")
        raise errors.APIError(503, "The conductor could not be reached") from None
    resp.status = falcon.HTTP_204 if confirm else falcon.HTTP_202


def _undo_task(instance_uuid: str, task: str) -> None:
    try:
        db.instance_update(instance_uuid, {"task_state": None, "task_deadline": None},
                           expected_task_state=task)
    except exception.FlotillaException:
        pass

"""POST /servers/{server_id}/action: start, stop, reboot, pause, unpause,
suspend, resume, get console output, lock, unlock; os-resetState (admin),
forceDelete, restore; createImage, createBackup (api.compute.snapshots) and
rebuild (api.compute.rebuild), os-migrateLive (api.compute.migrations) and
migrate, resize, confirmResize, revertResize (api.compute.resize), which
start conductor flows.

Rules:

* each state-changing action is a compare-and-swap of the server's
  task_state from None to its operation's task_state, expecting a vm_state
  the operation may start from (flotilla.states.OPERATIONS, the table the
  compute agent enforces too); a server in another state is 409 and
  nothing is sent;
* the action is recorded (instance action keyed by the request id), then
  cast to the compute agent of the server's host; a server with no host is
  409; a cast the bus refuses puts the task_state back and is 503;
* a locked server refuses non-admins every state-changing action (409,
  :func:`api.compute.locks.check_not_locked`); ``lock`` and ``unlock`` are
  done by the API alone, in any state (no task, no cast);
* ``os-resetState`` (admin) sets vm_state active or error and clears the
  task, as Nova does, with nothing cast; ``forceDelete`` deletes in any
  state at once (the DELETE path, no soft delete); ``restore`` powers a
  soft-deleted server back on (409 for any other: see api.compute.servers
  on ``[DEFAULT] reclaim_instance_interval``);
* 202 with an empty body.
"""

from __future__ import annotations

import logging

import falcon

from api import errors, validation
from api.compute import (
    block_devices,
    evacuate,
    locks,
    migrations,
    rebuild,
    resize,
    schemas,
    snapshots,
)
from api.compute.servers import get_server
from api.state import APIState, ctxt, version
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)


# API action -> (operation in flotilla.states, ComputeAPI method).
ACTIONS = {
    "os-stop": ("stop", "stop_instance"),
    "os-start": ("start", "start_instance"),
    "pause": ("pause", "pause_instance"),
    "unpause": ("unpause", "unpause_instance"),
    "suspend": ("suspend", "suspend_instance"),
    "resume": ("resume", "resume_instance"),
}
REBOOTS = {"SOFT": "reboot_soft", "HARD": "reboot_hard"}
# Done by the API alone, in any state: no task, nothing cast.
API_ONLY = ("lock", "unlock")


class ServerAction:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        body = validation.read_json(req, self.state.conf.api.max_request_body_size)
        if isinstance(body, dict) and len(body) == 1:
            name = next(iter(body))
            if name not in schemas.ACTIONS:
                raise errors.bad_request("There is no such action: %s" % name[:64])
        validation.validate(body, schemas.SERVER_ACTION)
        name, args = next(iter(body.items()))
        ctx = ctxt(req)
        inst = get_server(ctx, server_id)
        block_devices.check_action(inst, name)   # boot from volume (issue 11)
        if name == "os-getConsoleOutput":
            self._console(req, resp, ctx, inst, args or {})
            return
        if name in API_ONLY:
            self._locking(ctx, inst, name, args, version(req))
            resp.status = falcon.HTTP_202
            return
        if name in snapshots.ACTIONS:
            snapshots.snapshot(self.state, req, resp, ctx, inst, name, args)
            return
        if name == "rebuild":
            rebuild.rebuild(self.state, req, resp, ctx, inst, args)
            return
        if name == "os-migrateLive":
            migrations.live_migrate(self.state, req, resp, ctx, inst, args)
            return
        if name in resize.ACTIONS:
            resize.handle(self.state, req, resp, ctx, inst, name, args)
            return
        if name == "evacuate":
            evacuate.evacuate(self.state, req, resp, ctx, inst, args)
            return
        if name == "os-resetState":
            self._reset_state(ctx, inst, args["state"])
            resp.status = falcon.HTTP_202
            return
        if name == "forceDelete":
            from api.compute.servers import Server
            Server(self.state).on_delete(req, resp, server_id, force=True)
            resp.status = falcon.HTTP_202
            return
        if name == "reboot":
            op_name, method = REBOOTS[args["type"].upper()], "reboot_instance"
        elif name == "restore":
            op_name, method = "restore", "restore_instance"
        else:
            op_name, method = ACTIONS[name]
        action = st.operation(op_name)
        locks.check_not_locked(ctx, inst)
        if inst.vm_state in action.from_vm_states and not inst.host:
            raise errors.conflict("Cannot '%s' instance %s: it has no host"
                                  % (name, inst.uuid))
        try:
            db.instance_update(
                inst.uuid, {"task_state": action.task_state,
                            "task_deadline": task_deadline(self.state.conf,
                                                           action.task_state)},
                expected_vm_state=action.from_vm_states, expected_task_state=None)
        except exception.InstanceStateConflict:
            current = db.instance_get(inst.uuid)
            raise errors.conflict(
                "Cannot '%s' instance %s while it is in vm_state %s%s"
                % (name, inst.uuid, current.vm_state,
                   ", task_state %s" % current.task_state
                   if current.task_state else "")) from None
        except exception.InstanceNotFound:
            raise errors.not_found("Instance %s could not be found." % inst.uuid) from None
        db.action_start(inst.uuid, action.action, ctx.request_id, ctx.user_id,
                        ctx.project_id)
        kwargs = {"reboot_type": args["type"].upper()} if name == "reboot" else {}
        try:
            getattr(self.state.compute, method)(ctx, inst.host, inst.uuid, **kwargs)
        except exception.MessagingException as exc:
            LOG.error("Could not cast %s to %s: %s", method, inst.host, exc)
            try:
                db.instance_update(inst.uuid, {"task_state": None, "task_deadline": None},
                                   expected_task_state=action.task_state)
            except exception.FlotillaException:
                pass
            db.action_finish(inst.uuid, ctx.request_id, message="Error")
            raise errors.APIError(503, "The compute host %s of this server is "
                                  "unavailable" % inst.host) from None
        resp.status = falcon.HTTP_202

    @staticmethod
    def _reset_state(ctx, inst, state: str) -> None:
        if not ctx.is_admin:
            raise errors.forbidden("Policy doesn't allow os_compute_api:"
                                   "os-admin-actions:reset_state to be performed.")
        try:
            db.instance_update(inst.uuid, {"vm_state": state, "task_state": None,
                                           "task_deadline": None})
        except exception.InstanceNotFound:
            raise errors.not_found("Instance %s could not be found." % inst.uuid) from None
        db.action_start(inst.uuid, "resetState", ctx.request_id, ctx.user_id,
                        ctx.project_id)
        db.action_finish(inst.uuid, ctx.request_id)

    @staticmethod
    def _locking(ctx, inst, name: str, args, ver) -> None:
        if name == "lock":
            locks.lock(ctx, inst, args, ver)
        else:
            locks.unlock(ctx, inst)

    def _console(self, req, resp, ctx, inst, args: dict) -> None:
        length = args.get("length")
        length = None if length in (None, -1, "-1") else int(length)
        if length is not None and length < 0:
            raise errors.bad_request("Invalid input for field/attribute length")
        if inst.vm_state not in (st.ACTIVE, st.PAUSED, st.SUSPENDED, st.STOPPED) \
                or not inst.host:
            raise errors.conflict("Cannot get console output of instance %s in "
                                  "vm_state %s" % (inst.uuid, inst.vm_state))
        try:
            output = self.state.compute.get_console_output(ctx, inst.host, inst.uuid,
                                                           length)
        except exception.MessagingException as exc:
            raise errors.APIError(503, "The compute host %s is unavailable: %s"
                                  % (inst.host, exc)) from None
        except exception.NotFound:
            raise errors.conflict("Instance %s has no console on its host" % inst.uuid) \
                from None
        except exception.NotSupported as exc:
            raise errors.APIError(501, "Console output is not available: %s" % exc) \
                from None
        resp.media = {"output": output or ""}

"""The ``evacuate`` server action (admin): a server whose host is down is
rebuilt on another host (conductor/flows/evacuate.py).

Body, as Nova's: ``host`` optional (null or absent: the scheduler
chooses), ``adminPass`` optional, ``onSharedStorage`` required before 2.14
and gone from 2.14, ``force`` from 2.29 to 2.67 (the named host without the
scheduler's filters; its capacity is still claimed).

Rules:

* 403 for non-admins (Nova's default policy);
* 400 naming the field: a body of the wrong form for the microversion,
  ``onSharedStorage`` true (no shared storage here: the server is always
  rebuilt from its image), a target that is the server's own host, unknown,
  disabled or down;
* 409: the server's host's compute service is up (neither down by its
  heartbeat nor forced down: evacuating a running host would run the guest
  twice), the server not ACTIVE, STOPPED or ERROR or with a task, no host,
  a volume of it being attached or detached (naming the volume), a named
  target without room for it (naming the short resource; forced or not);
* the server's task becomes ``rebuilding`` (compare-and-swap), a migration
  record of type ``evacuation`` is created ``accepted``, the action
  ``evacuate`` recorded and the conductor's flow started: 200 with
  ``{"adminPass": ...}`` before 2.14, 200 with no body from 2.14 (as Nova).
"""

from __future__ import annotations

import logging
import secrets

import falcon

from api import errors, validation
from api.compute import migrations
from api.state import APIState, version
from conductor.flows.evacuate import source_is_down
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import evacuations as evac_db
from flotilla.db import migration_records as mig_db
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)

OPERATION = st.operation("rebuild")
ACTION = "evacuate"
FROM_VM_STATES = (st.ACTIVE, st.STOPPED, st.ERROR)

_HOST = {"type": ["string", "null"], "minLength": 1, "maxLength": 255}
_PASS = {"type": "string", "maxLength": 255}

#: Every form the action takes (what the action table accepts); each
#: microversion's own form is checked by :func:`schema`.
ANY_FORM = {"type": "object", "properties": {
    "host": _HOST, "adminPass": _PASS, "onSharedStorage": {"type": ["boolean", "string"]},
    "force": {"type": "boolean"}}, "additionalProperties": False}


def schema(ver: tuple[int, int]) -> dict:
    """The body of ``evacuate`` at microversion ``ver``."""
    props: dict = {"host": _HOST, "adminPass": _PASS}
    required: list[str] = []
    if ver < (2, 14):
        props["onSharedStorage"] = {"type": ["boolean", "string"],
                                    "enum": [True, False, "True", "False", "true",
                                             "false"]}
        required.append("onSharedStorage")
    if (2, 29) <= ver < (2, 68):
        props["force"] = {"type": "boolean"}
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def evacuate(state: APIState, req: falcon.Request, resp: falcon.Response, ctx,
             inst, args: dict | None) -> None:
    if not ctx.is_admin:
        raise errors.forbidden("Policy doesn't allow os_compute_api:os-evacuate to be "
                               "performed.")
    ver = version(req)
    args = validation.validate(args if args is not None else {}, schema(ver))
    if str(args.get("onSharedStorage", False)).lower() == "true":
        raise errors.bad_request("Invalid input for field/attribute onSharedStorage: "
                                 "this cloud has no shared instance storage; the server "
                                 "is rebuilt from its image")
    host = args.get("host")
    force = bool(args.get("force"))
    if inst.vm_state not in FROM_VM_STATES or inst.task_state is not None:
        raise errors.conflict("Cannot 'evacuate' instance %s while it is in vm_state %s%s"
                              % (inst.uuid, inst.vm_state,
                                 ", task_state %s" % inst.task_state
                                 if inst.task_state else ""))
    if not inst.host:
        raise errors.conflict("Cannot 'evacuate' instance %s: it has no host" % inst.uuid)
    migrations.check_volumes_settled("evacuate", inst)
    if host:
        migrations._check_host(state, host, inst)
    if not source_is_down(state.conf, inst.host):
        raise errors.conflict("Compute service of %s is still in use: evacuate only "
                              "servers of a host whose compute service is down or "
                              "forced down" % inst.host)
    try:
        db.instance_update(inst.uuid, {"task_state": OPERATION.task_state,
                                       "task_deadline": task_deadline(
                                           state.conf, OPERATION.task_state)},
                           expected_vm_state=FROM_VM_STATES, expected_task_state=None)
    except exception.InstanceStateConflict:
        current = db.instance_get(inst.uuid)
        raise errors.conflict("Cannot 'evacuate' instance %s while it is in vm_state %s, "
                              "task_state %s" % (inst.uuid, current.vm_state,
                                                 current.task_state)) from None
    migration = mig_db.migration_create(inst.uuid, inst.host, host or None,
                                        evac_db.EVACUATION)
    db.action_start(inst.uuid, ACTION, ctx.request_id, ctx.user_id, ctx.project_id)
    try:
        state.conductor.evacuate_instance(ctx, inst.uuid, migration.uuid, host, force)
    except exception.MessagingException as exc:
        LOG.error("Could not cast evacuate_instance for %s: %s", inst.uuid, exc)
        mig_db.migration_update(migration.uuid, {"status": evac_db.FAILED,
                                                 "error_reason": str(exc)})
        try:
            db.instance_update(inst.uuid, {"task_state": None, "task_deadline": None},
                               expected_task_state=OPERATION.task_state)
        except exception.FlotillaException:
            pass
        db.action_finish(inst.uuid, ctx.request_id, message="Error")
        raise errors.APIError(503, "The conductor could not be reached") from None
    resp.status = falcon.HTTP_200
    if ver < (2, 14):
        # Nothing in the guest takes a password here; answered as Nova does.
        resp.media = {"adminPass": args.get("adminPass") or secrets.token_urlsafe(9)}

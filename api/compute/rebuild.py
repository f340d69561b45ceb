"""The server action ``rebuild``: a new root disk from an image, same server.

Rules:

* the server keeps its uuid, host, flavor and volumes; its root disk is
  replaced by a fresh one from ``imageRef`` (a snapshot of it: this is how a
  tenant reverts a server); an active or failed server ends active, a
  stopped one stopped;
* the image must be one the server's project may boot: visible and active,
  and no larger than the flavor's disk (nor asking more memory or disk than
  the flavor has): 400 otherwise, before anything changes;
* the vm_state must allow the ``rebuild`` operation (active, stopped,
  error) with no task, else 409; a locked server is 409 for non-admins;
* ``name``, ``metadata`` (replacing the server's), ``description`` (2.19+),
  ``key_name`` (2.54+; null removes it) and ``user_data`` (2.57+, Base64;
  null removes it) change at once, with the task
  ``rebuilding``; ``adminPass`` (answered, as Nova), ``preserve_ephemeral``, the access IPs and
  ``OS-DCF:diskConfig`` are accepted and have no effect (Flotilla sets no
  passwords, and root disks hold no ephemeral data);
* a server booted from a volume (``image_ref`` ""): its root volume is
  re-imaged in place from 2.93, below only its own image is accepted (the
  guest restarted); the image is checked against the volume, not the
  flavor's disk (api.compute.rebuild_volume states those rules); the answer
  shows ``image`` "" as for any volume-backed server;
* the conductor is cast ``rebuild_instance``; a cast the bus refuses puts
  the task back and is 503;
* 202 with the server (status REBUILD), as Nova answers.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets

import falcon

from api import errors
from api.compute import locks, rebuild_volume, servers, views, zones
from api.state import APIState, version
from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import keypairs as keypairs_db
from flotilla.db import servers as servers_db
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)

OPERATION = st.operation("rebuild")


def rebuild(state: APIState, req: falcon.Request, resp: falcon.Response,
            ctx: RequestContext, inst, args: dict) -> None:
    """Handle ``rebuild`` (``args`` passed the action's schema)."""
    conf = state.conf
    ver = version(req)
    locks.check_not_locked(ctx, inst)
    if "description" in args and ver < (2, 19):
        raise errors.bad_request("Invalid input for field/attribute rebuild. Additional "
                                 "properties are not allowed (description)")
    if "key_name" in args and ver < (2, 54):
        raise errors.bad_request("Invalid input for field/attribute rebuild. Additional "
                                 "properties are not allowed (key_name)")
    if "user_data" in args and ver < (2, 57):
        raise errors.bad_request("Invalid input for field/attribute rebuild. Additional "
                                 "properties are not allowed (user_data)")
    if args.get("user_data"):
        try:
            base64.b64decode(args["user_data"], validate=True)
        except (binascii.Error, ValueError):
            raise errors.bad_request("Invalid input for field/attribute user_data: "
                                     "not Base64") from None
    from_volume = None
    if inst.image_ref == "":
        from_volume = rebuild_volume.check(state, ctx, inst, args["imageRef"].lower(), ver)
        image = from_volume.image
    else:
        image = servers.bootable_image(ctx, args["imageRef"].lower(),
                                       inst.memory_mb or 0, inst.root_gb or 0)
    if inst.vm_state not in OPERATION.from_vm_states or inst.task_state is not None:
        raise errors.conflict("Cannot 'rebuild' instance %s while it is in vm_state %s%s"
                              % (inst.uuid, inst.vm_state,
                                 ", task_state %s" % inst.task_state
                                 if inst.task_state else ""))
    if not inst.host:
        raise errors.conflict("Cannot 'rebuild' instance %s: it has no host" % inst.uuid)
    values: dict = {"task_state": OPERATION.task_state,
                    "task_deadline": task_deadline(conf, OPERATION.task_state)}
    if "name" in args:
        values["name"] = args["name"]
    if "metadata" in args:
        values["metadata"] = dict(args["metadata"])
    if "description" in args:
        values["display_description"] = args["description"]
    if "user_data" in args:
        values["user_data"] = args["user_data"]
    if "key_name" in args:
        key = _key_pair(ctx, args["key_name"])
        values["key_name"] = key.name if key else None
        values["key_data"] = key.public_key if key else None
    try:
        inst = db.instance_update(inst.uuid, values,
                                  expected_vm_state=OPERATION.from_vm_states,
                                  expected_task_state=None)
    except exception.InstanceStateConflict:
        current = db.instance_get(inst.uuid)
        raise errors.conflict("Cannot 'rebuild' instance %s while it is in vm_state %s%s"
                              % (inst.uuid, current.vm_state,
                                 ", task_state %s" % current.task_state
                                 if current.task_state else "")) from None
    except exception.InstanceNotFound:
        raise errors.not_found("Instance %s could not be found." % inst.uuid) from None
    db.action_start(inst.uuid, OPERATION.action, ctx.request_id, ctx.user_id,
                    ctx.project_id)
    try:
        if from_volume is not None:
            state.conductor.rebuild_instance(ctx, inst.uuid, image.id, volume_backed=True,
                                             reimage_boot_volume=from_volume.reimage)
        else:
            state.conductor.rebuild_instance(ctx, inst.uuid, image.id)
    except exception.MessagingException as exc:
        LOG.error("Could not cast rebuild_instance for %s: %s", inst.uuid, exc)
        try:
            inst = db.instance_update(inst.uuid, {"task_state": None, "task_deadline": None},
                                      expected_task_state=OPERATION.task_state)
        except exception.FlotillaException:
            pass
        db.action_finish(inst.uuid, ctx.request_id, message="Error")
        raise errors.APIError(503, "The conductor could not be reached") from None
    LOG.info("rebuild of %s from image %s started", inst.uuid, image.id)
    groups = servers_db.group_uuids_for([inst.uuid])
    resp.status = falcon.HTTP_202
    server = views.server_detail(inst, ctx, ver, state.compute_url(req),
                                 zones.HostFacts(state.conf), None, groups.get(inst.uuid),
                                 full=ver >= (2, 75), rebuild=True)
    # The answer names the new image, as Nova's (the record changes when the
    # agent is done: a rebuild that fails keeps the old one).
    server["image"] = views.embedded_image(image.id, state.compute_url(req)) \
        if from_volume is None else ""
    # As Nova: the password asked for (or one made up), answered once;
    # Flotilla has no guest agent to set it.
    server["adminPass"] = args.get("adminPass") or secrets.token_urlsafe(9)
    resp.media = {"server": server}


def _key_pair(ctx: RequestContext, name: str | None):
    if name is None:
        return None
    try:
        return keypairs_db.key_pair_get(ctx.user_id, name)
    except exception.KeypairNotFound:
        raise errors.bad_request("Invalid key_name provided.") from None

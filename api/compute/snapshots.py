"""The server actions ``createImage`` and ``createBackup``: snapshot a server.

Rules:

* the server must be in a vm_state the ``snapshot`` operation may start
  from (flotilla.states: active, stopped, paused, suspended), with no task
  and a host; otherwise 409 and nothing is created;
* the image is created here, ``queued``, before the 202 (clients read it at
  once): owned by the server's project (an admin's snapshot of another
  project's server belongs to that project), counted against that
  project's image quota (403 overLimit beyond ``[image] image_count_total``)
  and with at most ``[image] image_property_quota`` properties (400 naming
  ``<action>.metadata``); its properties are flotilla.images.snapshot_values';
* then the task becomes ``image_snapshot`` by compare-and-swap (409 if the
  server changed meanwhile; the image is removed again), the action
  (``createImage`` or ``createBackup``) is recorded and the conductor is
  cast ``snapshot_instance``; a cast the bus refuses puts the task back,
  removes the image and is 503;
* a backup's ``rotation`` (a non-negative integer) is how many backups of
  its ``backup_type`` the server keeps: once the new one is active the
  oldest beyond that are deleted (the conductor's flow does it);
* 202, with the image's URL in ``Location``, and from 2.45 ``{"image_id"}``
  in the body (Nova's forms; the SDK and the CLI read either);
* createImage of a server that boots from a volume snapshots its volumes
  instead (api.compute.volume_snapshot); createBackup of one is refused
  (api.compute.block_devices.check_action).
"""

from __future__ import annotations

import logging

import falcon

from api import errors
from api.compute import volume_snapshot
from api.state import APIState, version
from flotilla import exception, images
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)

ACTIONS = ("createImage", "createBackup")
OPERATION = st.operation("snapshot")


def _refuse_state(name: str, inst) -> errors.APIError:
    return errors.conflict(
        "Cannot '%s' instance %s while it is in vm_state %s%s"
        % (name, inst.uuid, inst.vm_state,
           ", task_state %s" % inst.task_state if inst.task_state else ""))


def _base_image(image_ref: str | None):
    """The server's image, deleted or not (its properties are inherited),
    or None."""
    if not image_ref or not images.is_valid_id(image_ref):
        return None
    try:
        return images_db.image_get(image_ref, read_deleted=True)
    except exception.ImageNotFound:
        return None


def snapshot(state: APIState, req: falcon.Request, resp: falcon.Response,
             ctx: RequestContext, inst, name: str, args: dict) -> None:
    """Handle ``createImage`` or ``createBackup`` (``args`` passed the
    action's schema)."""
    if name == "createImage" and inst.image_ref == "":
        # A volume-backed server: its volumes are snapshotted instead.
        volume_snapshot.snapshot_volume_backed(state, req, resp, ctx, inst, args)
        return
    conf = state.conf
    if inst.vm_state not in OPERATION.from_vm_states or inst.task_state is not None:
        raise _refuse_state(name, inst)
    if not inst.host:
        raise errors.conflict("Cannot '%s' instance %s: it has no host" % (name, inst.uuid))
    backup = name == "createBackup"
    rotation = int(args["rotation"]) if backup else None
    backup_type = args["backup_type"] if backup else None
    values = images.snapshot_values(
        inst, args["name"], args.get("metadata") or {}, ctx.user_id,
        _base_image(inst.image_ref), images.BACKUP if backup else images.SNAPSHOT,
        backup_type)
    try:
        image = images.create_snapshot_image(conf, values)
    except exception.OverQuota:
        raise
    except exception.Invalid as exc:
        raise errors.bad_request("Invalid input for field/attribute %s.metadata. %s"
                                 % (name, exc.kwargs.get("reason", exc))) from None
    try:
        db.instance_update(inst.uuid, {"task_state": OPERATION.task_state,
                                       "task_deadline": task_deadline(conf,
                                                                      OPERATION.task_state)},
                           expected_vm_state=OPERATION.from_vm_states,
                           expected_task_state=None)
    except exception.InstanceStateConflict:
        images.discard_image(conf, image.id, "the server changed state")
        raise _refuse_state(name, db.instance_get(inst.uuid)) from None
    except exception.InstanceNotFound:
        images.discard_image(conf, image.id, "the server was deleted")
        raise errors.not_found("Instance %s could not be found." % inst.uuid) from None
    db.action_start(inst.uuid, name, ctx.request_id, ctx.user_id, ctx.project_id)
    try:
        state.conductor.snapshot_instance(ctx, inst.uuid, image.id, backup_type, rotation)
    except exception.MessagingException as exc:
        LOG.error("Could not cast snapshot_instance for %s: %s", inst.uuid, exc)
        try:
            db.instance_update(inst.uuid, {"task_state": None, "task_deadline": None},
                               expected_task_state=OPERATION.task_state)
        except exception.FlotillaException:
            pass
        images.discard_image(conf, image.id, "the conductor could not be reached")
        db.action_finish(inst.uuid, ctx.request_id, message="Error")
        raise errors.APIError(503, "The conductor could not be reached") from None
    LOG.info("%s of %s as image %s started", name, inst.uuid, image.id)
    resp.status = falcon.HTTP_202
    resp.set_header("Location", "%s/image/v2/images/%s" % (state.base_url(req), image.id))
    if version(req) >= (2, 45):
        resp.media = {"image_id": image.id}

"""``createImage`` of a server that boots from a volume (Nova's
``snapshot_volume_backed``): the image is a bucket of properties naming
volume snapshots, from which servers boot.

Rules:

* the server must be in a vm_state the ``snapshot`` operation may start
  from (active, stopped, paused, suspended) with no task (409 otherwise);
  no task is set: the guest keeps running and each snapshot is taken
  crash-consistent by its volume's host, as Cinder's forced snapshot of an
  in-use volume;
* every volume attached to the server must be one a snapshot may be taken
  of (available or in-use; otherwise 409 as the volume API's "Invalid
  volume"), and the project's ``snapshots`` and ``gigabytes`` quotas must
  hold a snapshot of each, and each volume's host its copy (403, as Nova
  answers the volume service's over-limit; checked for all before any is
  taken, as Nova checks the limits first);
* the image is created first within the image quotas (403 overLimit / 400
  naming ``createImage.metadata``, as for any snapshot), then a snapshot
  row per volume (``snapshot for <image name>``) and its volume host cast
  ``create_snapshot`` (the volume API's path: a refused cast leaves that
  snapshot in error); the image then becomes ``active`` with size 0 and no
  disk or container format, its properties: the boot volume's image
  metadata (what the server booted from, as Nova copies the instance's
  image properties), the user's ``metadata``, Flotilla's snapshot
  properties, ``bdm_v2`` "True", ``root_device_name`` "/dev/vda" and
  ``block_device_mapping``: a JSON list of ``{source_type snapshot,
  destination_type volume, snapshot_id, volume_size, boot_index,
  device_name, delete_on_termination}``, one per volume. The image is
  active before the snapshots are (as Nova's): a server booted from it
  waits for them (conductor.flows.build_volumes);
* the ``createImage`` action is recorded, started and finished; 202 with
  the image's URL in ``Location`` and, from 2.45, ``{"image_id"}``.
"""

from __future__ import annotations

import json
import logging

import falcon

from api import errors
from api.state import APIState, version
from api.volume.resources import volume_defaults
from flotilla import exception, images
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.volume_placement import NotEnoughSpace, space_guard

LOG = logging.getLogger(__name__)

ROOT_DEVICE = "/dev/vda"
#: the image columns a volume's image metadata names (the rest are properties)
_COLUMNS = ("image_id", "image_name", "checksum", "container_format", "disk_format",
            "min_disk", "min_ram", "size")
OPERATION = st.operation("snapshot")


def _device(attachment) -> str | None:
    if attachment.boot_index == 0:
        return ROOT_DEVICE
    return "/dev/" + attachment.device if attachment.device else None


def _volumes(inst) -> list[tuple]:
    """(attachment, volume) of each volume of the server, the boot one first."""
    pairs = [(a, vdb.volume_get(a.volume_id)) for a in vdb.attachments_of_instance(inst.uuid)]
    return sorted(pairs, key=lambda p: p[0].boot_index != 0)


def _check_volumes(conf, project_id: str, pairs: list[tuple]) -> None:
    for _attachment, volume in pairs:
        if volume.status not in st.SNAPSHOT_VOLUME_STATUSES:
            raise errors.conflict("Invalid volume: Volume %s status must be available or "
                                  "in-use, but current status is: %s."
                                  % (volume.id, volume.status))
    limits = vdb.volume_limits(project_id, volume_defaults(conf))
    usage = vdb.volume_usage(project_id)
    wanted = {"snapshots": len(pairs), "gigabytes": sum(v.size_gb for _a, v in pairs)}
    over = ["%s: requested %d, in use %d, limit %d" % (r, n, usage[r], limits[r])
            for r, n in wanted.items() if limits.get(r, -1) >= 0 and usage[r] + n > limits[r]]
    if over:
        raise errors.forbidden("SnapshotLimitExceeded: Maximum number of snapshots or "
                               "gigabytes exceeded: %s" % "; ".join(over))


def _image_values(inst, name: str, metadata: dict, user_id: str | None,
                  boot_meta: dict) -> dict:
    values = images.snapshot_values(inst, name, {}, user_id, None)
    inherited = {k: v for k, v in boot_meta.items() if k not in _COLUMNS
                 and k not in images.SNAPSHOT_PROPERTIES}
    properties = dict(inherited, **(metadata or {}))
    properties.update(values["properties"])
    # Placeholders counted by the property quota; filled once the
    # snapshots exist.
    properties.update({"bdm_v2": "True", "root_device_name": ROOT_DEVICE,
                       "block_device_mapping": "[]"})
    values.update(properties=properties, disk_format=None, container_format=None,
                  min_disk=int(boot_meta.get("min_disk") or 0),
                  min_ram=int(boot_meta.get("min_ram") or 0))
    return values


def _take_snapshot(state: APIState, ctx: RequestContext, image_name: str, attachment,
                   volume) -> dict:
    """Record and start one snapshot of ``volume``; its image mapping."""
    conf = state.conf
    try:
        row = sdb.snapshot_create({
            "volume_id": volume.id, "name": "snapshot for %s" % image_name,
            "description": volume.description, "user_id": ctx.user_id,
            "status": st.SNAPSHOT_CREATING, "metadata": {},
            "status_deadline": vdb.deadline(conf.volume.operation_timeout)},
            volume_defaults(conf), st.SNAPSHOT_VOLUME_STATUSES,
            check=space_guard(conf, volume.host, volume.size_gb) if volume.host else None)
    except NotEnoughSpace as exc:
        raise errors.forbidden("Insufficient free space for snapshot creation: %s"
                               % exc) from None
    except vdb.VolumeOverQuota as exc:
        raise errors.forbidden("SnapshotLimitExceeded: Maximum number of snapshots or "
                               "gigabytes exceeded: %s" % str(exc)) from None
    except (vdb.VolumeStatusConflict, vdb.VolumeNotFound) as exc:
        raise errors.conflict("Invalid volume: %s." % str(exc)) from None
    try:
        state.volume.create_snapshot(ctx, row.host, row.id)
    except exception.MessagingException as exc:
        LOG.error("could not cast create_snapshot for %s: %s", row.id, exc)
        sdb.snapshot_update(row.id, {"status": st.SNAPSHOT_ERROR, "status_reason":
                                     "the volume service could not be reached"})
    return {"source_type": "snapshot", "destination_type": "volume", "snapshot_id": row.id,
            "volume_size": volume.size_gb, "boot_index": attachment.boot_index,
            "device_name": _device(attachment),
            "delete_on_termination": bool(attachment.delete_on_termination),
            "volume_id": None, "image_id": None, "no_device": None, "disk_bus": "virtio",
            "device_type": "disk", "guest_format": None, "tag": None}


def snapshot_volume_backed(state: APIState, req: falcon.Request, resp: falcon.Response,
                           ctx: RequestContext, inst, args: dict) -> None:
    """Handle ``createImage`` of a volume-backed server (``args`` passed
    the action's schema)."""
    conf = state.conf
    if inst.vm_state not in OPERATION.from_vm_states or inst.task_state is not None:
        raise errors.conflict(
            "Cannot 'createImage' instance %s while it is in vm_state %s%s"
            % (inst.uuid, inst.vm_state,
               ", task_state %s" % inst.task_state if inst.task_state else ""))
    pairs = _volumes(inst)
    project = inst.project_id
    _check_volumes(conf, project, pairs)
    boot_meta = dict(pairs[0][1].image_metadata or {}) \
        if pairs and pairs[0][0].boot_index == 0 else {}
    values = _image_values(inst, args["name"], args.get("metadata") or {}, ctx.user_id,
                           boot_meta)
    try:
        image = images.create_snapshot_image(conf, values)
    except exception.OverQuota:
        raise
    except exception.Invalid as exc:
        raise errors.bad_request("Invalid input for field/attribute createImage.metadata. "
                                 "%s" % exc.kwargs.get("reason", exc)) from None
    db.action_start(inst.uuid, "createImage", ctx.request_id, ctx.user_id, ctx.project_id)
    mappings = []
    try:
        for attachment, volume in pairs:
            mappings.append(_take_snapshot(state, ctx, image.name or "", attachment, volume))
    except errors.APIError:
        # The snapshots already taken stay (the project's, as Nova leaves
        # them); the image that would name them goes.
        images.discard_image(conf, image.id, "a volume snapshot could not be taken")
        db.action_finish(inst.uuid, ctx.request_id, message="Error")
        raise
    properties = dict(image.properties or {},
                      block_device_mapping=json.dumps(mappings))
    images_db.image_update(image.id, {"status": "active", "size": 0, "virtual_size": 0,
                                      "properties": properties})
    db.action_finish(inst.uuid, ctx.request_id)
    LOG.info("createImage of volume-backed %s: image %s, snapshots %s", inst.uuid,
             image.id, ", ".join(m["snapshot_id"] for m in mappings))
    resp.status = falcon.HTTP_202
    resp.set_header("Location", "%s/image/v2/images/%s" % (state.base_url(req), image.id))
    if version(req) >= (2, 45):
        resp.media = {"image_id": image.id}

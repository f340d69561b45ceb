"""The volume action ``os-volume_upload_image`` (``openstack image create
--volume V NAME``): copy a volume into a new image, as Cinder.

Rules:

* arguments (Cinder's schema): ``image_name`` (1-255 characters, required),
  ``force`` (a boolean or one of Cinder's string spellings,
  api.validation.strict_bool), ``disk_format`` (``raw``, the
  default, or ``qcow2``: what the image service stores), ``container_format``
  (``bare``, the default); from microversion 3.1 ``visibility`` (private,
  the default, shared, community, or public: admins only, 403) and
  ``protected``. Anything else is 400 naming the field;
* the volume must be ``available``, or ``in-use`` with ``force`` true (400
  "Invalid volume: ..." otherwise, as Cinder's InvalidVolume); while the
  volume service's RPC is capped below 1.5 the action is 409 and nothing
  is created;
* the image is created ``queued`` first (flotilla.volume_upload: owned by
  the volume's project, within its image quota, 403 overLimit, and
  property quota, 400 naming ``os-volume_upload_image``), then the volume
  becomes ``uploading`` by compare-and-swap from the status read, with a
  deadline ([volume] operation_timeout, which the volume service extends
  while it copies) and its owner recorded (the image id and whether it was
  ``in-use``: flotilla.volume_upload.owner_reason); a volume that moved
  meanwhile is 400 and the image is discarded again;
* the volume service is cast ``upload_to_image`` (RPC 1.5): it copies the
  volume into the image and puts the volume back (volume.upload). A cast
  the bus refuses puts the volume back, discards the image and is 503;
* 202 with ``{"os-volume_upload_image": {...}}`` as Cinder answers: the
  volume's id, updated_at, status (uploading), display_description, size
  and volume_type (the type's document, which the CLI reads ``name``
  from), and the image's id, name, formats, visibility and protected.
"""

from __future__ import annotations

import logging

import falcon

from api import errors, validation
from api.state import APIState, isotime
from api.volume import snapshots, views
from flotilla import exception, images
from flotilla import states as st
from flotilla import volume_upload as vup
from flotilla.context import RequestContext
from flotilla.db import volumes as vdb

LOG = logging.getLogger(__name__)

NAME = "os-volume_upload_image"
#: The microversion from which visibility and protected may be given (Cinder's).
PARAMS_VERSION = (3, 1)
_BOOLEAN = {"type": ["boolean", "string"]}
SCHEMA = {"type": "object", "required": ["image_name"], "additionalProperties": False,
          "properties": {
              "image_name": {"type": "string", "minLength": 1, "maxLength": 255},
              "force": _BOOLEAN,
              "disk_format": {"type": "string", "enum": list(images.DISK_FORMATS)},
              "container_format": {"type": "string",
                                   "enum": list(images.CONTAINER_FORMATS)}}}
SCHEMA_31 = {**SCHEMA, "properties": {
    **SCHEMA["properties"], "protected": _BOOLEAN,
    "visibility": {"type": "string",
                   "enum": ["community", "public", "private", "shared"]}}}


def _boolean(args: dict, field: str) -> bool:
    # Cinder's parameter_types.boolean: the same strict spellings as the
    # other volume actions' flags (api.validation.strict_bool).
    value = validation.strict_bool(args.get(field, False))
    if value is not None:
        return value
    raise errors.bad_request("Invalid input for field/attribute %s. Value: %s. "
                             "It must be a boolean." % (field, str(value)[:32]))


def _invalid_status(row, force: bool) -> errors.APIError:
    allowed = "available or in-use" if force else "available"
    return errors.bad_request("Invalid volume: Volume %s status must be %s, but current "
                              "status is: %s." % (row.id, allowed, row.status))


def upload_image(state: APIState, req: falcon.Request, resp: falcon.Response,
                 ctx: RequestContext, row, args) -> None:
    """Handle ``os-volume_upload_image`` on the volume ``row`` (the caller's)."""
    conf = state.conf
    if not isinstance(args, dict):
        raise errors.bad_request("Invalid input for field/attribute %s. It must be an "
                                 "object." % NAME)
    v31 = snapshots.request_version(req) >= PARAMS_VERSION
    args = validation.validate(args, SCHEMA_31 if v31 else SCHEMA)
    force = _boolean(args, "force")
    protected = _boolean(args, "protected") if v31 else False
    visibility = args.get("visibility", "private") if v31 else "private"
    if visibility == "public" and not ctx.is_admin:
        raise errors.forbidden("Policy doesn't allow volume_extension:volume_actions:"
                               "upload_public to be performed.")
    allowed = (st.VOLUME_AVAILABLE, st.VOLUME_IN_USE) if force else (st.VOLUME_AVAILABLE,)
    if row.status not in allowed:
        raise _invalid_status(row, force)
    if not state.volume.can_upload_to_image():
        raise errors.conflict("Uploading a volume to an image needs every volume service "
                              "upgraded to RPC 1.5 ([upgrade_levels] volume).")
    values = vup.image_values(row, args["image_name"], args.get("disk_format", "raw"),
                              args.get("container_format", "bare"), visibility, protected)
    try:
        image = images.create_snapshot_image(conf, values)
    except exception.OverQuota:
        raise
    except exception.Invalid as exc:
        raise errors.bad_request("Invalid input for field/attribute %s. %s"
                                 % (NAME, exc.kwargs.get("reason", exc))) from None
    try:
        row = vdb.volume_update(row.id, {
            "status": st.VOLUME_UPLOADING,
            # Which upload owns the volume, and whether it was in use (what
            # the volume service copies point in time): flotilla.volume_upload.
            "status_reason": vup.owner_reason(image.id, row.status == st.VOLUME_IN_USE),
            "status_deadline": vdb.deadline(conf.volume.operation_timeout)},
            expected_status=row.status)
    except vdb.VolumeStatusConflict:
        images.discard_image(conf, image.id, "the volume changed status")
        raise _invalid_status(vdb.volume_get(row.id), force) from None
    except vdb.VolumeNotFound:
        images.discard_image(conf, image.id, "the volume was deleted")
        raise errors.not_found("Volume %s could not be found." % row.id) from None
    try:
        state.volume.upload_to_image(ctx, row.host, row.id, image.id)
    except exception.MessagingException as exc:
        LOG.error("could not cast upload_to_image for volume %s: %s", row.id, exc)
        vup.end_upload(row.id, image.id)
        images.discard_image(conf, image.id, "the volume service could not be reached")
        raise errors.APIError(503, "The volume service could not be reached") from None
    LOG.info("volume %s uploading to image %s (%s)", row.id, image.id, image.disk_format)
    resp.status = falcon.HTTP_202
    resp.media = {NAME: {
        "id": row.id, "updated_at": isotime(row.updated_at, micro=True),
        "status": st.VOLUME_UPLOADING, "display_description": row.description,
        "size": row.size_gb, "volume_type": views.default_type(),
        "image_id": image.id, "container_format": image.container_format,
        "disk_format": image.disk_format, "image_name": image.name,
        "protected": protected, "visibility": visibility}}

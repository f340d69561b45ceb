"""Volume actions that set a volume's flags, status, type or image
metadata (``POST /volume/v3/{project}/volumes/{id}/action``), as Cinder
answers them; registered in :class:`api.volume.actions.VolumeAction`.

Rules (Cinder's; a volume of another project is a 404 before any of them):

* ``os-set_bootable {"bootable": B}`` (``volume create --bootable``,
  ``volume set --[non-]bootable``): B one of Cinder's boolean spellings
  (400 naming ``bootable`` otherwise); in any status (Cinder refuses only
  ``maintenance``, which Flotilla has not); 200, no body.
* ``os-set_image_metadata {"metadata": {k: v}}`` merges into the volume's
  image metadata (``volume_image_metadata``, the column a volume made from
  an image or a bootable source already fills, and what a server booted
  from the volume inherits); 200 ``{"metadata": {...}}``.
  ``os-unset_image_metadata {"key": k}``: 200, 404 when the key is not
  shown; ``os-show_image_metadata``: 200 ``{"metadata": {...}}``. Keys
  1-255 characters, values strings up to 255 (400 naming ``metadata``);
  Flotilla's own bookkeeping keys (flotilla.db.images.INTERNAL_PROPERTIES,
  and every key starting with ``_``, which images keep for it) are never
  shown, set or unset (400 naming the key). Not while ``uploading`` or
  ``maintenance`` (400, as Cinder).
* ``os-update_readonly_flag {"readonly": B}`` (``volume set
  --read-only/--read-write``): only while ``available`` (400 otherwise,
  as Cinder); 202. The volume shows ``"readonly": "True"``/``"False"`` in
  its ``metadata`` once set (Cinder's visible admin metadata). A read-only
  volume is exported to hosts with ``read_only`` in its connection: the
  compute agent (RPC 1.13) gives its disk ``<readonly/>`` and the
  attachment's ``attach_mode`` is ``ro``; its attach is refused (409) while
  compute RPC is capped below 1.13 or the server's agent serves less, and
  so is a server create given it (409, while capped).
* ``os-reset_status {"status", "attach_status", "migration_status"}``
  (``volume set --state``): admin only (403); at least one of them (400);
  ``status`` one of Flotilla's volume statuses (400 naming ``status``), a
  transitional one gets the usual deadline so the reaper ends it;
  ``in-use`` needs an attachment and ``available`` none (400: Flotilla's
  attachments are real disks that a reset cannot make or remove);
  ``attach_status`` attached/detached must match the volume's
  attachments, ``migration_status`` may only be ``none`` (Flotilla volumes
  do not migrate) (400 naming the field otherwise); 202.
* ``os-retype {"new_type": T, "migration_policy": P}``: Flotilla has one
  type (``__DEFAULT__``, which every volume has): T its name or id is
  Cinder's 400 "New volume_type same as original" naming ``new_type``
  (Cinder refuses a retype to the volume's own type; nothing to do), any
  other name or id 404 "Volume type ... could not be found", a missing or
  non-string T 400 naming ``new_type``; P ``never``/``on-demand`` or
  absent (400 naming it). No retype ever happens.
"""

from __future__ import annotations

import falcon

from api import errors, validation
from api.state import APIState
from api.volume import views
from flotilla import states as st
from flotilla.db import volume_metadata as mdb
from flotilla.db import volumes as vdb
from flotilla.db.images import INTERNAL_PROPERTIES
from flotilla.rpc import upgrade

#: Cinder's parameter_types.boolean spellings (shared: api.validation.strict_bool).
TRUE, FALSE = validation.TRUE, validation.FALSE
#: Statuses in which Cinder refuses an image metadata change.
NO_METADATA_CHANGE = ("uploading", "maintenance")
#: downloading: a re-image (a volume-backed server's rebuild) sets the
#: image metadata at its end; a change meanwhile would be overwritten.
NO_METADATA_CHANGE += ("downloading",)
VOLUME_STATUSES = (st.VOLUME_CREATING, st.VOLUME_AVAILABLE, st.VOLUME_RESERVED,
                   st.VOLUME_ATTACHING, st.VOLUME_IN_USE, st.VOLUME_DETACHING,
                   st.VOLUME_DELETING, st.VOLUME_ERROR, st.VOLUME_ERROR_DELETING,
                   st.VOLUME_EXTENDING, st.VOLUME_ERROR_EXTENDING)
ATTACH_STATUSES = ("attached", "detached")
MIGRATION_STATUSES = ("migrating", "error", "success", "completing", "none", "starting")
MIGRATION_POLICIES = ("never", "on-demand")
READ_ONLY_COMPUTE_VERSION = "1.13"

_KEY = {"type": "string", "minLength": 1, "maxLength": 255}
SET_IMAGE_METADATA = {
    "type": "object", "required": ["metadata"], "additionalProperties": False,
    "properties": {"metadata": {"type": "object", "propertyNames": _KEY,
                                "additionalProperties": {"type": "string",
                                                         "maxLength": 255}}}}
UNSET_IMAGE_METADATA = {"type": "object", "required": ["key"], "additionalProperties": False,
                        "properties": {"key": _KEY}}
RESET_STATUS = {"type": "object", "additionalProperties": False,
                "properties": {"status": {"type": ["string", "null"]},
                               "attach_status": {"type": ["string", "null"]},
                               "migration_status": {"type": ["string", "null"]}}}
RETYPE = {"type": "object", "required": ["new_type"], "additionalProperties": False,
          "properties": {"new_type": {"type": "string", "minLength": 1, "maxLength": 255},
                         "migration_policy": {"type": ["string", "null"]}}}

# The whole bodies, made once: validation caches a validator per schema.
_BODIES = {name: {"type": "object", "properties": {name: schema}}
           for name, schema in (("os-set_image_metadata", SET_IMAGE_METADATA),
                                ("os-unset_image_metadata", UNSET_IMAGE_METADATA),
                                ("os-reset_status", RESET_STATUS),
                                ("os-retype", RETYPE))}


def _args(name: str, args, schema: dict) -> dict:
    """The action's arguments checked against ``schema``, a 400 naming the
    field under the action's name (``os-retype.new_type``), as Cinder's
    whole-body schemas name it."""
    return validation.validate({name: args}, _BODIES[name])[name]


def _flag(args, field: str) -> bool:
    value = args.get(field) if isinstance(args, dict) else None
    if isinstance(args, dict) and set(args) - {field}:
        raise errors.bad_request("Invalid input for field/attribute %s: unexpected "
                                 "keys %s" % (field, str(sorted(set(args) - {field})[:4])[:128]))
    # Booleans and the strings only: 1 == True, but Cinder's enum refuses 1.
    if value is True or isinstance(value, str) and value in TRUE:
        return True
    if value is False or isinstance(value, str) and value in FALSE:
        return False
    raise errors.bad_request("Invalid input for field/attribute %s. Value: %s. It is "
                             "not a boolean." % (field, str(value)[:32]))


def _internal(key: str) -> bool:
    return key in INTERNAL_PROPERTIES or key.startswith("_")


def shown_image_metadata(row) -> dict:
    return {k: v for k, v in (row.image_metadata or {}).items() if not _internal(k)}


def read_only_attach_refusal(state: APIState, volume, host: str) -> str | None:
    """Why the read-only ``volume`` cannot be attached on ``host`` now
    (None: it can, or it is not read-only)."""
    if not getattr(volume, "readonly", None):
        return None
    if not state.compute.can_attach_read_only():
        return "the compute agents are capped below RPC %s" % READ_ONLY_COMPUTE_VERSION
    return upgrade.compute_host_refusal(host, READ_ONLY_COMPUTE_VERSION)


def check_read_only_attach(state: APIState, volume, host: str) -> None:
    """409 when the read-only ``volume`` cannot be attached on ``host``."""
    reason = read_only_attach_refusal(state, volume, host)
    if reason is not None:
        raise errors.conflict("Volume %s is read-only and cannot be attached read-only "
                              "now: %s" % (volume.id, reason))


def check_read_only_build(state: APIState, volumes) -> None:
    """409 when an existing volume given at server create (block device
    mappings) is read-only and compute RPC is capped below 1.13 (its host
    is not chosen yet: the cap is what can be checked)."""
    if state.compute.can_attach_read_only():
        return
    for bdm in volumes:
        if bdm.source_type != "volume" or not bdm.volume_id:
            continue
        try:
            volume = vdb.volume_get(bdm.volume_id)
        except vdb.VolumeNotFound:
            continue    # block_devices.parse found it; gone since: the build says so
        if volume.readonly:
            raise errors.conflict("Volume %s is read-only and cannot be attached "
                                  "read-only now: the compute agents are capped below "
                                  "RPC %s" % (volume.id, READ_ONLY_COMPUTE_VERSION))


class VolumeFlags:
    """The handlers; :meth:`handlers` names them by action."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def handlers(self) -> dict:
        return {"os-set_bootable": self.set_bootable,
                "os-set_image_metadata": self.set_image_metadata,
                "os-unset_image_metadata": self.unset_image_metadata,
                "os-show_image_metadata": self.show_image_metadata,
                "os-update_readonly_flag": self.update_readonly_flag,
                "os-reset_status": self.reset_status,
                "os-retype": self.retype}

    def set_bootable(self, req, resp, ctx, row, args) -> None:
        bootable = _flag(args, "bootable")
        try:
            vdb.volume_update(row.id, {"bootable": bootable})
        except vdb.VolumeNotFound:
            raise errors.not_found("Volume %s could not be found." % row.id) from None
        resp.status = falcon.HTTP_200

    def _image_metadata_change(self, row, updates: dict) -> dict:
        if row.status in NO_METADATA_CHANGE:
            raise errors.bad_request("Invalid volume: Updating volume metadata is not "
                                     "allowed for volumes in %s status." % row.status)
        result = mdb.image_metadata_change(row.id, updates)
        if result is None:
            raise errors.not_found("Volume %s could not be found." % row.id)
        return {k: v for k, v in result.items() if not _internal(k)}

    def set_image_metadata(self, req, resp, ctx, row, args) -> None:
        metadata = _args("os-set_image_metadata", args, SET_IMAGE_METADATA)["metadata"]
        internal = sorted(k for k in metadata if _internal(k))
        if internal:
            raise errors.bad_request("Invalid input for field/attribute metadata: key %s "
                                     "is reserved" % internal[0][:255])
        resp.media = {"metadata": self._image_metadata_change(row, metadata)}
        resp.status = falcon.HTTP_200

    def unset_image_metadata(self, req, resp, ctx, row, args) -> None:
        key = _args("os-unset_image_metadata", args, UNSET_IMAGE_METADATA)["key"]
        if key not in shown_image_metadata(row):
            raise errors.not_found("Glance metadata for volume/snapshot %s cannot be "
                                   "found." % row.id)
        self._image_metadata_change(row, {key: None})
        resp.status = falcon.HTTP_200

    def show_image_metadata(self, req, resp, ctx, row, args) -> None:
        resp.media = {"metadata": shown_image_metadata(row)}
        resp.status = falcon.HTTP_200

    def update_readonly_flag(self, req, resp, ctx, row, args) -> None:
        readonly = _flag(args, "readonly")
        try:
            # Compare-and-swap on available: an attach reserves it first,
            # so the flag an attach exports is the one it checked.
            vdb.volume_update(row.id, {"readonly": readonly},
                              expected_status=st.VOLUME_AVAILABLE)
        except vdb.VolumeStatusConflict as exc:
            raise errors.bad_request(
                "Invalid volume: Volume status must be available to update readonly "
                "flag, but current status is: %s." % exc.kwargs.get("actual")) from None
        except vdb.VolumeNotFound:
            raise errors.not_found("Volume %s could not be found." % row.id) from None
        resp.status = falcon.HTTP_202

    def reset_status(self, req, resp, ctx, row, args) -> None:
        if not ctx.is_admin:
            raise errors.forbidden("Policy doesn't allow volume_extension:"
                                   "volume_admin_actions:reset_status to be performed.")
        args = _args("os-reset_status", args, RESET_STATUS)
        status, attach_status, migration_status = (
            (args.get(k) or "").lower() or None
            for k in ("status", "attach_status", "migration_status"))
        if not (status or attach_status or migration_status):
            raise errors.bad_request("Must specify 'status', 'attach_status' or "
                                     "'migration_status' for update.")
        attached = any(a.status == "attached" for a in vdb.attachments_of_volume(row.id))
        if status is not None:
            if status not in VOLUME_STATUSES:
                raise errors.bad_request("Invalid input for field/attribute status. "
                                         "Value: %s. Must specify a valid status."
                                         % status[:32])
            if status == st.VOLUME_IN_USE and not attached or \
                    status == st.VOLUME_AVAILABLE and attached:
                raise errors.bad_request(
                    "Invalid input for field/attribute status. Value: %s. The volume "
                    "is %s a server; detach it with 'server remove volume'."
                    % (status, "attached to" if attached else "not attached to"))
        if attach_status is not None and (attach_status not in ATTACH_STATUSES or (
                attach_status == "attached") != attached):
            raise errors.bad_request(
                "Invalid input for field/attribute attach_status. Value: %s. Must "
                "specify a valid attach status (the volume is %s)."
                % (attach_status[:32], "attached" if attached else "detached"))
        if migration_status is not None and migration_status != "none":
            raise errors.bad_request(
                "Invalid input for field/attribute migration_status. Value: %s. Must "
                "specify a valid migration status (Flotilla volumes do not migrate: "
                "none)." % migration_status[:32])
        if status is not None:
            values: dict = {"status": status, "status_reason": None}
            if status in st.VOLUME_TRANSITIONAL:
                # The reaper ends it as any other (VOLUME_ON_TIMEOUT).
                values["status_deadline"] = vdb.deadline(
                    self.state.conf.volume.operation_timeout)
            try:
                vdb.volume_update(row.id, values)
            except vdb.VolumeNotFound:
                raise errors.not_found("Volume %s could not be found." % row.id) from None
        resp.status = falcon.HTTP_202

    def retype(self, req, resp, ctx, row, args) -> None:
        args = _args("os-retype", args, RETYPE)
        policy = args.get("migration_policy")
        if policy is not None and policy not in MIGRATION_POLICIES:
            raise errors.bad_request("Invalid input for field/attribute migration_policy. "
                                     "Value: %s. It must be never or on-demand."
                                     % str(policy)[:32])
        new_type = args["new_type"]
        if new_type not in (views.DEFAULT_TYPE_NAME, views.DEFAULT_TYPE_ID):
            raise errors.not_found("Volume type %s could not be found." % new_type[:255])
        raise errors.bad_request("Invalid input for field/attribute new_type: New "
                                 "volume_type same as original: %s." % new_type)

"""``os-volume_attachments``: volumes attached to a server (issue 11).

Rules:

* list and show read the server's attachments (show: 404 when the volume
  is not attached to this server);
* attach: ``volumeId`` a UUID (400 naming it), a volume of the server's
  project (404), ``available`` (409: in use or busy), the server active or
  stopped with no task and a host (409), not locked; ``tag`` from 2.49
  (schemas.DEVICE_TAG: no comma or slash) and ``delete_on_termination``
  from 2.79 are kept on the attachment (400 naming either before its
  version). The volume is
  reserved (available -> reserved, by compare-and-swap), an attachment row
  made, the server's agent asked which device the volume will take (a
  call, as Nova's reserve_block_device_name: the answer shows it, as
  ``/dev/vdb``; a requested ``device`` is ignored, as Nova does on libvirt;
  503 when the agent does not answer, 409 when no name is free; nothing
  stays reserved then), the action ``attach_volume`` recorded and the
  conductor cast ``attach_volume``; a read-only volume
  (os-update_readonly_flag) is refused (409) while compute RPC is capped
  below 1.13 or the server's agent serves less (it would plug it writable);
* update (PUT, 2.85): only ``delete_on_termination`` changes (``id``,
  ``serverId``, ``device`` and ``tag`` may be sent back as shown, any other
  value is a 400 naming it); a
  ``volumeId`` other than the attached volume asks for a volume swap,
  which Flotilla does not do (400 naming the field), and before 2.85 the
  request is that swap (400 too); 202;
* detach: the volume must be attached to this server (404), not the
  volume it boots from (400, as Nova), ``in-use`` or ``error`` after a
  failed detach (409 otherwise); it becomes detaching and the conductor is
  cast ``detach_volume``; 202.
"""

from __future__ import annotations

import logging

import falcon

from api import errors, validation
from api.compute import locks, schemas
from api.compute.servers import get_server
from api.state import APIState, ctxt, version
from api.volume import views, volume_flags
from api.volume.resources import get_volume
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb

LOG = logging.getLogger(__name__)

ATTACH = {"type": "object", "required": ["volumeAttachment"], "additionalProperties": False,
          "properties": {"volumeAttachment": {
              "type": "object", "required": ["volumeId"], "additionalProperties": False,
              "properties": {"volumeId": {"type": "string"},
                             "device": {"type": ["string", "null"], "maxLength": 255},
                             "tag": schemas.DEVICE_TAG,
                             "delete_on_termination": {"type": "boolean"}}}}}
UPDATE = {"type": "object", "required": ["volumeAttachment"], "additionalProperties": False,
          "properties": {"volumeAttachment": {
              "type": "object", "required": ["volumeId"], "additionalProperties": False,
              "properties": {"volumeId": {"type": "string"},
                             "delete_on_termination": {"type": "boolean"},
                             # 2.85 takes these back as shown; never changed.
                             "id": {"type": "string"}, "serverId": {"type": "string"},
                             "device": {"type": ["string", "null"]},
                             "tag": {"type": ["string", "null"]}}}}}
UNCHANGEABLE = ("id", "serverId", "device", "tag")
DETACHABLE = (st.VOLUME_IN_USE, st.VOLUME_ERROR, st.VOLUME_ERROR_EXTENDING)
# Since 2.N, key: what the attach request may carry.
ATTACH_KEYS_SINCE = {"tag": (2, 49), "delete_on_termination": (2, 79)}


def _attach_options(req, request: dict) -> dict:
    """The attachment's ``tag`` and ``delete_on_termination`` as the
    request's microversion allows them (400 naming the field otherwise)."""
    ver = version(req)
    for key, since in ATTACH_KEYS_SINCE.items():
        if key in request and ver < since:
            raise errors.bad_request(
                "Invalid input for field/attribute volumeAttachment. Additional "
                "properties are not allowed (%s needs microversion %d.%d or later)"
                % (key, since[0], since[1]))
    return {"tag": request.get("tag"),
            "delete_on_termination": bool(request.get("delete_on_termination", False))}


def _attachment(server_uuid: str, volume_id: str):
    for row in vdb.attachments_of_instance(server_uuid):
        if row.volume_id == volume_id:
            return row
    raise errors.not_found("volume_id not found: %s" % volume_id[:64])


class VolumeAttachments:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, server_id: str) -> None:
        inst = get_server(ctxt(req), server_id)
        ver = version(req)
        resp.media = {"volumeAttachments": [views.server_attachment(a, ver) for a in
                                            vdb.attachments_of_instance(inst.uuid)]}

    def on_post(self, req, resp, server_id: str) -> None:
        ctx = ctxt(req)
        conf = self.state.conf
        inst = get_server(ctx, server_id)
        body = validation.validate(
            validation.read_json(req, conf.api.max_request_body_size), ATTACH)
        volume_id = validation.check_uuid(body["volumeAttachment"]["volumeId"],
                                          "volumeAttachment.volumeId")
        options = _attach_options(req, body["volumeAttachment"])
        locks.check_not_locked(ctx, inst)
        volume = get_volume(ctx, volume_id)
        if volume.project_id != inst.project_id:
            raise errors.not_found("Volume %s could not be found." % volume_id)
        if inst.vm_state not in st.VOLUME_ATTACH_VM_STATES or inst.task_state is not None \
                or not inst.host:
            raise errors.conflict("Cannot 'attach_volume' instance %s while it is in "
                                  "vm_state %s%s" % (inst.uuid, inst.vm_state,
                                                     ", task_state %s" % inst.task_state
                                                     if inst.task_state else ""))
        # A read-only volume needs agents that plug it read-only (409).
        volume_flags.check_read_only_attach(self.state, volume, inst.host)
        try:
            vdb.volume_update(volume_id, {"status": st.VOLUME_RESERVED, "status_deadline":
                                          vdb.deadline(conf.volume.operation_timeout)},
                              expected_status=st.VOLUME_AVAILABLE)
        except vdb.VolumeStatusConflict as exc:
            raise errors.conflict("Volume %s status must be available to attach, but "
                                  "it is %s" % (volume_id, exc.kwargs.get("actual"))
                                  ) from None
        attachment = vdb.attachment_create(volume_id, inst.uuid, inst.host, **options)
        try:
            device = self._reserve_device(ctx, inst, volume_id)
        except BaseException:
            _release(attachment.uuid, volume_id)
            raise
        if device:
            vdb.attachment_update(attachment.uuid, {"device": device})
            attachment = vdb.attachment_get(attachment.uuid)
        db.action_start(inst.uuid, "attach_volume", ctx.request_id, ctx.user_id,
                        ctx.project_id)
        try:
            self.state.conductor.attach_volume(ctx, inst.uuid, volume_id, attachment.uuid)
        except exception.MessagingException as exc:
            LOG.error("could not cast attach_volume for %s: %s", inst.uuid, exc)
            _release(attachment.uuid, volume_id)
            db.action_finish(inst.uuid, ctx.request_id, message="Error")
            raise errors.APIError(503, "The conductor could not be reached") from None
        LOG.info("attaching volume %s to %s", volume_id, inst.uuid)
        resp.media = {"volumeAttachment": views.server_attachment(attachment, version(req))}

    def _reserve_device(self, ctx, inst, volume_id: str) -> str | None:
        """The device the server's agent sets aside for the volume (as
        Nova's reserve_block_device_name); None from an agent too old to
        be asked (the flow then lets it choose)."""
        try:
            return self.state.compute.reserve_volume_device(ctx, inst.host, inst.uuid,
                                                            volume_id)
        except exception.MessagingException as exc:
            raise errors.APIError(503, "The compute host %s is unavailable: %s"
                                  % (inst.host, exc)) from None
        except exception.DeviceNameUnavailable as exc:
            raise errors.conflict("Server %s cannot take another volume: %s"
                                  % (inst.uuid, exc)) from None
        except exception.InstanceNotFound:
            raise errors.conflict("Server %s is not on its host %s any more (moving?)"
                                  % (inst.uuid, inst.host)) from None


def _release(attachment_uuid: str, volume_id: str) -> None:
    """Undo an attach's reservation: no attachment, the volume available."""
    vdb.attachment_release(attachment_uuid, volume_id, {"status": st.VOLUME_AVAILABLE},
                           expected_status=st.VOLUME_RESERVED)


class VolumeAttachment:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, server_id: str, volume_id: str) -> None:
        inst = get_server(ctxt(req), server_id)
        resp.media = {"volumeAttachment": views.server_attachment(
            _attachment(inst.uuid, volume_id), version(req))}

    def on_put(self, req, resp, server_id: str, volume_id: str) -> None:
        ctx = ctxt(req)
        inst = get_server(ctx, server_id)
        attachment = _attachment(inst.uuid, volume_id)
        body = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), UPDATE)["volumeAttachment"]
        if body["volumeId"] != volume_id or version(req) < (2, 85):
            raise errors.bad_request(
                "Invalid input for field/attribute volumeAttachment.volumeId: swapping "
                "the volume of an attachment is not supported; from microversion 2.85 "
                "an update with the attached volume's id may change "
                "delete_on_termination")
        # ``id`` (the volume's, not shown from 2.89) may still come back.
        shown = dict(views.server_attachment(attachment, version(req)),
                     id=attachment.volume_id)
        for key in UNCHANGEABLE:
            if key in body and body[key] != shown[key]:
                raise errors.bad_request(
                    "Invalid input for field/attribute volumeAttachment.%s: it cannot be "
                    "changed (it is %r); only delete_on_termination can" % (key, shown[key]))
        locks.check_not_locked(ctx, inst)
        if "delete_on_termination" in body:
            vdb.attachment_update(attachment.uuid, {
                "delete_on_termination": body["delete_on_termination"]})
            LOG.info("volume %s of %s: delete_on_termination %s", volume_id, inst.uuid,
                     body["delete_on_termination"])
        resp.status = falcon.HTTP_202

    def on_delete(self, req, resp, server_id: str, volume_id: str) -> None:
        ctx = ctxt(req)
        inst = get_server(ctx, server_id)
        attachment = _attachment(inst.uuid, volume_id)
        locks.check_not_locked(ctx, inst)
        if attachment.boot_index == 0:
            raise errors.bad_request("Cannot detach a root device volume (the server "
                                     "boots from volume %s)" % volume_id)
        try:
            vdb.volume_update(volume_id, {"status": st.VOLUME_DETACHING, "status_deadline":
                                          vdb.deadline(self.state.conf.volume
                                                       .operation_timeout)},
                              expected_status=DETACHABLE)
        except vdb.VolumeStatusConflict as exc:
            raise errors.conflict("Volume %s cannot be detached while it is %s"
                                  % (volume_id, exc.kwargs.get("actual"))) from None
        db.action_start(inst.uuid, "detach_volume", ctx.request_id, ctx.user_id,
                        ctx.project_id)
        try:
            self.state.conductor.detach_volume(ctx, inst.uuid, volume_id, attachment.uuid)
        except exception.MessagingException as exc:
            LOG.error("could not cast detach_volume for %s: %s", inst.uuid, exc)
            vdb.volume_update(volume_id, {"status": st.VOLUME_IN_USE},
                              expected_status=st.VOLUME_DETACHING)
            db.action_finish(inst.uuid, ctx.request_id, message="Error")
            raise errors.APIError(503, "The conductor could not be reached") from None
        resp.status = falcon.HTTP_202

"""``/volume/v3/attachments`` (3.27+), read only: what ``openstack volume
attachment list`` and ``volume attachment show`` read.

Rules (Cinder's, for reading):

* from microversion 3.27 (404 below, as Cinder); a tenant sees the
  attachments of its project's volumes, an admin everyone's with
  ``all_tenants`` (one project's with ``project_id``); ``volume_id``,
  ``instance_id`` and ``status`` filter the list;
* list: ``id``, ``status``, ``instance``, ``volume_id``; detail and show add
  ``attach_mode`` (``ro`` when its connection is read-only, a volume
  made read-only by os-update_readonly_flag; ``rw`` otherwise), ``attached_at``, ``detached_at`` and, for
  admins only, ``connection_info`` (the NBD export's address);
* an attachment is made and removed by the compute API's attach and detach
  (os-volume_attachments), whose flows also drive the volume side: these
  routes take no POST, PUT or DELETE (404, as a method Cinder's router does
  not route).
"""

from __future__ import annotations

from api import errors, policy
from api.state import APIState, ctxt, isotime
from api.volume.resources import listed_project
from api.volume.snapshots import request_version
from flotilla.db import volumes as vdb

MIN_VERSION = (3, 27)
#: Flotilla's attachment row status -> Cinder's attachment status
_STATUS = {"attached": "attached"}


def view(row, detail: bool, admin: bool) -> dict:
    doc = {"id": row.uuid, "status": _STATUS.get(row.status, "attaching"),
           "instance": row.instance_uuid, "volume_id": row.volume_id}
    if detail:
        doc.update(attach_mode="ro" if (row.connection_info or {}).get("read_only")
                   else "rw",
                   attached_at=isotime(row.created_at, micro=True)
                   if row.status == "attached" else None,
                   detached_at=None,
                   connection_info=dict(row.connection_info or {}) if admin else None)
    return doc


def _check_version(req) -> None:
    if request_version(req) < MIN_VERSION:
        raise errors.not_found("Attachments need volume API microversion 3.27 or later.")


class Attachments:
    policy_rules = {"GET": policy.READER}

    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    def on_get(self, req, resp) -> None:
        _check_version(req)
        ctx = ctxt(req)
        volume_id, instance_id = req.get_param("volume_id"), req.get_param("instance_id")
        status = req.get_param("status")
        project = listed_project(req, ctx)
        if project is None and req.get_param("project_id"):
            project = req.get_param("project_id")    # an admin's --project
        volumes = [v.id for v in vdb.volume_get_all(project_id=project)
                   if volume_id is None or v.id == volume_id]
        docs = [view(a, self.detail, ctx.is_admin)
                for found in vdb.attachments_of_volumes(volumes).values() for a in found
                if instance_id is None or a.instance_uuid == instance_id]
        resp.media = {"attachments": [d for d in docs
                                      if status is None or d["status"] == status]}


class Attachment:
    policy_rules = {"GET": policy.READER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, attachment_id: str) -> None:
        _check_version(req)
        ctx = ctxt(req)
        try:
            row = vdb.attachment_get(attachment_id)
            vdb.volume_get(row.volume_id, project_id=policy.project_filter(ctx))
        except (vdb.AttachmentNotFound, vdb.VolumeNotFound):
            raise errors.not_found("Volume attachment %s could not be found."
                                   % attachment_id[:64]) from None
        resp.media = {"attachment": view(row, True, ctx.is_admin)}

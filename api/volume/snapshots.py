"""Block Storage v3 volume snapshots (``/volume/v3/snapshots``).

Rules (issue 11, Cinder's behaviour where the clients depend on it):

* a snapshot belongs to its volume's project; another project's is a 404
  (an admin sees all, ``all_tenants`` lists them);
* create: ``volume_id`` names a visible volume (404 otherwise; 400 naming
  ``volume_id`` when missing or not a string); the volume must be
  ``available``, or ``in-use`` — taken crash-consistent while the guest
  writes (volume.nbd.StorageDaemon.backup). An in-use volume needs
  ``force`` true below microversion 3.66 when ``force`` is sent (an
  explicit ``"force": false`` at < 3.66 is refused, 400 naming ``force``);
  from 3.66 ``force`` may be omitted or true, never false. Any other
  volume status is a 409. Within the project's ``snapshots`` and
  ``gigabytes`` quotas (413), and the volume's host must hold a copy
  (413 naming its free space, flotilla.volume_placement). The snapshot is recorded ``creating`` with a
  deadline and the volume's host is cast ``create_snapshot``;
* update: name, description (and their display_ forms), metadata;
* delete: ``available``, ``error`` or ``error_deleting`` snapshots
  (409 otherwise; 400 while a volume is being created from it) become
  ``deleting`` by compare-and-swap; the volume service removes the file;
* a volume with snapshots cannot be deleted (400, see resources.Volume).
"""

from __future__ import annotations

import logging
import re

import falcon

from api import errors, policy, validation
from api.state import APIState, ctxt, isotime
from api.volume import resources
from flotilla import exception
from flotilla import states as st
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.volume_placement import NotEnoughSpace, space_guard

LOG = logging.getLogger(__name__)

_TEXT = {"type": ["string", "null"], "maxLength": 255}
_DESCRIPTION = {"type": ["string", "null"], "maxLength": 65535}
_METADATA = {"type": ["object", "null"], "maxProperties": 128,
             "additionalProperties": {"type": "string", "maxLength": 255},
             "propertyNames": {"minLength": 1, "maxLength": 255}}
_FORCE = {"type": ["boolean", "string", "null"]}
CREATE = {"type": "object", "required": ["snapshot"], "additionalProperties": True,
          "properties": {"snapshot": {
              "type": "object", "required": ["volume_id"], "additionalProperties": True,
              "properties": {"volume_id": {"type": "string", "minLength": 1,
                                           "maxLength": 36},
                             "name": _TEXT, "description": _DESCRIPTION,
                             "display_name": _TEXT, "display_description": _DESCRIPTION,
                             "metadata": _METADATA, "force": _FORCE}}}}
UPDATE = {"type": "object", "required": ["snapshot"], "additionalProperties": False,
          "properties": {"snapshot": {
              "type": "object", "additionalProperties": False,
              "properties": {"name": _TEXT, "description": _DESCRIPTION,
                             "display_name": _TEXT, "display_description": _DESCRIPTION,
                             "metadata": _METADATA}}}}
DELETABLE = (st.SNAPSHOT_AVAILABLE, st.SNAPSHOT_ERROR, st.SNAPSHOT_ERROR_DELETING)
_VERSION = re.compile(r"volume\s+(\d{1,4})\.(\d{1,4})", re.IGNORECASE)


def request_version(req) -> tuple[int, int]:
    """The ``OpenStack-API-Version: volume X.Y`` asked for (3.0 when none)."""
    match = _VERSION.search(req.get_header("OpenStack-API-Version") or "")
    return (int(match.group(1)), int(match.group(2))) if match else (3, 0)


def view(row, url: str, detail: bool = True) -> dict:
    doc = {"id": row.id, "name": row.name, "description": row.description,
           "status": row.status, "size": row.size_gb, "volume_id": row.volume_id,
           "created_at": isotime(row.created_at, micro=True),
           "updated_at": isotime(row.updated_at, micro=True),
           "metadata": dict(row.metadata_ or {}),
           "links": [{"rel": "self", "href": "%s/snapshots/%s" % (url, row.id)},
                     {"rel": "bookmark", "href": "%s/snapshots/%s" % (url, row.id)}]}
    if detail:
        doc.update({"os-extended-snapshot-attributes:project_id": row.project_id,
                    "os-extended-snapshot-attributes:progress":
                        "100%" if row.status == st.SNAPSHOT_AVAILABLE else "0%",
                    "progress": "100%" if row.status == st.SNAPSHOT_AVAILABLE else "0%",
                    "user_id": row.user_id, "group_snapshot_id": None,
                    "consumes_quota": True})
    return doc


def get_snapshot(ctx, snapshot_id: str):
    try:
        return sdb.snapshot_get(snapshot_id, project_id=policy.project_filter(ctx))
    except sdb.SnapshotNotFound:
        raise errors.not_found("Snapshot %s could not be found." % snapshot_id[:64]) \
            from None


def _force(value, version: tuple[int, int]) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() not in (
            "true", "false", "1", "0", "yes", "no", "t", "f", "on", "off", "y", "n"):
        raise errors.bad_request("Invalid input for field/attribute force. Value: %s. "
                                 "It must be a boolean." % value[:32])
    force = validation.to_bool(value)
    if version >= (3, 66) and not force:
        raise errors.bad_request("Invalid input for field/attribute force. From "
                                 "microversion 3.66 force may only be true or omitted.")
    return force


class Snapshots:
    policy_rules = {"GET": policy.READER, "POST": policy.MEMBER}

    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    def on_get(self, req, resp) -> None:
        ctx = ctxt(req)
        project = policy.project_filter(ctx)
        if project is None and not validation.to_bool(req.get_param("all_tenants") or "0"):
            project = ctx.project_id
        rows = sdb.snapshot_get_all(project_id=project,
                                    volume_id=req.get_param("volume_id"))
        name, status = req.get_param("name"), req.get_param("status")
        rows = [r for r in rows if (name is None or r.name == name)
                and (status is None or r.status == status)]
        url = resources.volume_url(self.state, req)
        resp.media = {"snapshots": [view(r, url, self.detail) for r in rows]}

    def on_post(self, req, resp) -> None:
        if self.detail:
            raise errors.APIError(405, "Method not allowed")
        ctx = ctxt(req)
        conf = self.state.conf
        args = validation.validate(
            validation.read_json(req, conf.api.max_request_body_size), CREATE)["snapshot"]
        force = _force(args.get("force"), request_version(req))
        volume = resources.get_volume(ctx, args["volume_id"])
        if volume.status == st.VOLUME_IN_USE and force is False:
            raise errors.bad_request(
                "Invalid input for field/attribute force. Volume %s is in-use: "
                "snapshot it with force true (crash-consistent)." % volume.id)
        if volume.status not in st.SNAPSHOT_VOLUME_STATUSES:
            raise errors.conflict("Invalid volume: Volume %s status must be available "
                                  "or in-use, but current status is: %s."
                                  % (volume.id, volume.status))
        try:
            row = sdb.snapshot_create({
                "volume_id": volume.id,
                "name": args.get("name") or args.get("display_name"),
                "description": args.get("description") or args.get("display_description"),
                "user_id": ctx.user_id, "status": st.SNAPSHOT_CREATING,
                "metadata": args.get("metadata") or {},
                "status_deadline": vdb.deadline(conf.volume.operation_timeout)},
                resources.volume_defaults(conf), st.SNAPSHOT_VOLUME_STATUSES,
                check=space_guard(conf, volume.host, volume.size_gb) if volume.host
                else None)
        except NotEnoughSpace as exc:
            # The copy is a file in the pool of the volume's host.
            raise errors.APIError(413, "Insufficient free space for snapshot creation: "
                                  "%s" % exc, fault="overLimit") from None
        except vdb.VolumeOverQuota as exc:
            raise errors.APIError(413, "SnapshotLimitExceeded: Maximum number of "
                                  "snapshots or gigabytes exceeded: %s" % str(exc),
                                  fault="overLimit") from None
        except vdb.VolumeStatusConflict as exc:
            raise errors.conflict("Invalid volume: %s." % str(exc)) from None
        except vdb.VolumeNotFound:
            raise errors.not_found("Volume %s could not be found." % volume.id) from None
        try:
            self.state.volume.create_snapshot(ctx, row.host, row.id)
        except exception.MessagingException as exc:
            LOG.error("could not cast create_snapshot for %s: %s", row.id, exc)
            row = sdb.snapshot_update(row.id, {"status": st.SNAPSHOT_ERROR,
                                               "status_reason": "the volume service "
                                               "could not be reached"})
        LOG.info("snapshot %s of volume %s (%d GiB) %s", row.id, volume.id, row.size_gb,
                 row.status)
        resp.status = falcon.HTTP_202
        resp.media = {"snapshot": view(row, resources.volume_url(self.state, req))}


class Snapshot:
    policy_rules = {"GET": policy.READER, "PUT": policy.MEMBER, "DELETE": policy.MEMBER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, snapshot_id: str) -> None:
        ctx = ctxt(req)
        row = get_snapshot(ctx, snapshot_id)
        resp.media = {"snapshot": view(row, resources.volume_url(self.state, req))}

    def on_put(self, req, resp, snapshot_id: str) -> None:
        ctx = ctxt(req)
        row = get_snapshot(ctx, snapshot_id)
        args = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size),
            UPDATE)["snapshot"]
        values = {}
        for key, column in (("name", "name"), ("display_name", "name"),
                            ("description", "description"),
                            ("display_description", "description"),
                            ("metadata", "metadata")):
            if key in args:
                values[column] = args[key] if key != "metadata" else (args[key] or {})
        if values:
            row = sdb.snapshot_update(row.id, values)
        resp.media = {"snapshot": view(row, resources.volume_url(self.state, req))}

    def on_delete(self, req, resp, snapshot_id: str) -> None:
        ctx = ctxt(req)
        row = get_snapshot(ctx, snapshot_id)
        if row.status not in DELETABLE:
            raise errors.conflict("Invalid snapshot: Snapshot status must be available "
                                  "or error, but current status is: %s." % row.status)
        creating = [v.id for v in vdb.volume_get_all(statuses=(st.VOLUME_CREATING,))
                    if v.snapshot_id == row.id]
        if creating:
            raise errors.bad_request("Invalid snapshot: volume %s is being created from "
                                     "snapshot %s." % (creating[0], row.id))
        try:
            sdb.snapshot_update(row.id, {"status": st.SNAPSHOT_DELETING, "status_deadline":
                                         vdb.deadline(self.state.conf.volume
                                                      .operation_timeout)},
                                expected_status=DELETABLE)
        except sdb.SnapshotStatusConflict as exc:
            raise errors.conflict("Invalid snapshot: %s." % str(exc)) from None
        if not row.path and row.status == st.SNAPSHOT_ERROR and not row.host:
            sdb.snapshot_destroy(row.id, expected_status=st.SNAPSHOT_DELETING)
            resp.status = falcon.HTTP_202
            return
        try:
            self.state.volume.delete_snapshot(ctx, row.host, row.id)
        except exception.MessagingException as exc:
            LOG.error("could not cast delete_snapshot for %s: %s", row.id, exc)
            sdb.snapshot_update(row.id, {"status": st.SNAPSHOT_ERROR_DELETING,
                                         "status_reason": "the volume service could "
                                         "not be reached"})
        resp.status = falcon.HTTP_202

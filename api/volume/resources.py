"""Block Storage v3 resources: discovery, volumes, types, quotas, limits.

Rules (issue 11):

* discovery (``GET /volume``, ``/volume/v3``) needs no token;
* a volume belongs to the project of the token; another project's volume
  is a 404 (an admin sees all, ``all_tenants`` lists them);
* create: ``size`` a whole number of GiB from 1 to [volume] max_size_gb
  (400 naming ``size``), within the project's ``volumes`` and ``gigabytes``
  quotas (413 naming the quota); the volume is recorded ``creating`` on the
  volume host with the most free space that can hold it
  (flotilla.volume_placement; 413 naming the largest free space when none
  can), then the volume service is cast ``create_volume``; with no volume
  service up it is recorded in ``error`` with that reason (as Cinder's
  scheduler leaves it). Backups, consistency groups and groups as
  sources are not supported yet (400);
* create from a snapshot (``snapshot_id``, see :mod:`api.volume.sources`):
  an ``available`` snapshot of the project (404 unknown, 400 naming
  ``snapshot_id`` in another status), the size at least the snapshot's
  (400 naming ``size``; no size means the snapshot's), on the snapshot's
  volume host (413 when it cannot hold the size); from an image (``imageRef``): an active image the project
  may use (404/400 naming ``imageRef``), the size at least its virtual size
  and ``min_disk``; the volume is ``bootable`` and shows the image's
  ``volume_image_metadata``; a clone (``source_volid``): an ``available``
  or ``in-use`` volume of the project (404 unknown, 400 naming
  ``source_volid`` in another status), the size at least the source's,
  on the source's volume host, bootable and image metadata inherited;
  409 while the volume services are capped below RPC 1.4 (an older
  service would make the clone blank);
* delete: only ``available``, ``error`` or ``error_deleting`` volumes with
  no attachment, no snapshot and no clone being made from it (else 400,
  as Cinder); the status becomes
  ``deleting`` by compare-and-swap (which also checks there is no
  snapshot) and the volume service removes it;
* update: name, description, metadata.
"""

from __future__ import annotations

import logging

import falcon

from api import errors, policy, validation
from api.state import APIState, ctxt
from api.volume import sources, views
from flotilla import exception
from flotilla import states as st
from flotilla.conf.quota import VOLUME_RESOURCES
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.volume_placement import (
    NotEnoughSpace,
    check_host_space,
    pick_volume_host,
    space_guard,
)

LOG = logging.getLogger(__name__)

V3 = "/volume/v3"
_TEXT = {"type": ["string", "null"], "maxLength": 255}
_DESCRIPTION = {"type": ["string", "null"], "maxLength": 65535}
_METADATA = {"type": ["object", "null"], "maxProperties": 128,
             "additionalProperties": {"type": "string", "maxLength": 255},
             "propertyNames": {"minLength": 1, "maxLength": 255}}
# Every key the clients send (null when unused).
CREATE = {"type": "object", "required": ["volume"], "additionalProperties": True,
          "properties": {"volume": {
              "type": "object", "additionalProperties": True,
              "properties": {"size": {}, "name": _TEXT, "description": _DESCRIPTION,
                             "display_name": _TEXT, "display_description": _DESCRIPTION,
                             "metadata": _METADATA,
                             "volume_type": {"type": ["string", "null"]},
                             "availability_zone": {"type": ["string", "null"]}}}}}
UPDATE = {"type": "object", "required": ["volume"], "additionalProperties": False,
          "properties": {"volume": {
              "type": "object", "additionalProperties": False,
              "properties": {"name": _TEXT, "description": _DESCRIPTION,
                             "display_name": _TEXT, "display_description": _DESCRIPTION,
                             "metadata": _METADATA}}}}
UNSUPPORTED_SOURCES = ("backup_id", "consistencygroup_id", "group_id")
# Picks of a volume host when other creates took the space meanwhile.
PLACEMENT_ATTEMPTS = 3
DELETABLE = (st.VOLUME_AVAILABLE, st.VOLUME_ERROR, st.VOLUME_ERROR_DELETING,
             st.VOLUME_ERROR_EXTENDING)


def volume_url(state: APIState, req) -> str:
    return state.base_url(req) + V3


def volume_defaults(conf) -> dict[str, int]:
    return {r: getattr(conf.quota, r) for r in VOLUME_RESOURCES}


def get_volume(ctx, volume_id: str):
    try:
        return vdb.volume_get(volume_id, project_id=policy.project_filter(ctx))
    except vdb.VolumeNotFound:
        raise errors.not_found("Volume %s could not be found." % volume_id[:64]) from None


def _body(req, state: APIState, schema: dict) -> dict:
    return validation.validate(
        validation.read_json(req, state.conf.api.max_request_body_size), schema)


def _size(value, conf) -> int:
    # The SDK may send integer strings; booleans and fractions are refused.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise errors.bad_request("Invalid input for field/attribute size. "
                                 "It must be an integer number of GiB.")
    try:
        size = int(value)
    except ValueError:
        raise errors.bad_request("Invalid input for field/attribute size. Value: %s. "
                                 "It must be an integer number of GiB." % str(value)[:32]
                                 ) from None
    if size < 1:
        raise errors.bad_request("Invalid input for field/attribute size. Value: %d. "
                                 "It must be at least 1 (GiB)." % size)
    if size > conf.volume.max_size_gb:
        raise errors.bad_request("Invalid input for field/attribute size. Value: %d. "
                                 "It must be at most %d (GiB, [volume] max_size_gb)."
                                 % (size, conf.volume.max_size_gb))
    return size


def _no_space(exc: NotEnoughSpace) -> errors.APIError:
    # Cinder's scheduler would take the volume and end it in error ("No
    # valid backend was found"); the caller learns it here, with the space.
    return errors.APIError(413, "No valid backend was found. Insufficient free space "
                           "for volume creation: %s" % exc, fault="overLimit")


def _place(conf, source: sources.Source, size: int) -> str | None:
    """The volume host of a new volume (None: no enabled volume service is up);
    413 when none can hold it."""
    try:
        if source.snapshot_id or source.source_volid:
            host = source.host if sources.host_is_up(conf, source.host) else None
            if host:
                check_host_space(conf, host, size)
            return host
        return pick_volume_host(conf, size)
    except NotEnoughSpace as exc:
        raise _no_space(exc) from None


def _checks(*checks):
    """One volume_create ``check`` running every given one (None: none)."""
    given = [c for c in checks if c is not None]
    if not given:
        return None

    def check(session) -> None:
        for one in given:
            one(session)
    return check


def _check_type(value) -> None:
    if value not in (None, "", views.DEFAULT_TYPE_NAME, views.DEFAULT_TYPE_ID):
        raise errors.not_found("Volume type %s could not be found." % str(value)[:64])


def _with_attachments(rows) -> list[tuple]:
    found = vdb.attachments_of_volumes([r.id for r in rows])
    return [(r, found[r.id]) for r in rows]


class Versions:
    policy_rules = {"GET": policy.PUBLIC}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"versions": [views.version_doc(self.state.base_url(req))]}


class Version:
    policy_rules = {"GET": policy.PUBLIC}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"version": views.version_doc(self.state.base_url(req))}


def listed_project(req, ctx) -> str | None:
    """Whose volumes a list shows: the token's project, every project's
    for an admin asking ``all_tenants``."""
    project = policy.project_filter(ctx)
    if project is None and not validation.to_bool(req.get_param("all_tenants") or "0"):
        project = ctx.project_id
    return project


class Summary:
    """``GET /volumes/summary`` (3.12; ``metadata`` 3.36): the count and
    total GiB of the listed volumes (``openstack volume summary``)."""

    policy_rules = {"GET": policy.READER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        rows = vdb.volume_get_all(project_id=listed_project(req, ctxt(req)))
        metadata: dict[str, set[str]] = {}
        for row in rows:
            for key, value in (row.metadata_ or {}).items():
                metadata.setdefault(key, set()).add(value)
        resp.media = {"volume-summary": {
            "total_count": len(rows), "total_size": sum(r.size_gb for r in rows),
            "metadata": {key: sorted(values) for key, values in sorted(metadata.items())}}}


class Volumes:
    policy_rules = {"GET": policy.READER, "POST": policy.MEMBER}

    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    def on_get(self, req, resp) -> None:
        ctx = ctxt(req)
        rows = vdb.volume_get_all(project_id=listed_project(req, ctx))
        name, status = req.get_param("name"), req.get_param("status")
        rows = [r for r in rows if (name is None or r.name == name)
                and (status is None or r.status == status)]
        url = volume_url(self.state, req)
        resp.media = {"volumes": [views.volume(r, a, url, ctx.is_admin, self.detail)
                                  for r, a in _with_attachments(rows)]}

    def on_post(self, req, resp) -> None:
        if self.detail:
            raise errors.APIError(405, "Method not allowed")
        ctx = ctxt(req)
        conf = self.state.conf
        args = _body(req, self.state, CREATE)["volume"]
        for key in UNSUPPORTED_SOURCES:
            if args.get(key) not in (None, ""):
                raise errors.bad_request("Invalid input for field/attribute %s. Volumes "
                                         "from another source are not supported yet; "
                                         "only blank volumes." % key)
        source = sources.resolve(ctx, conf, args)
        if source.source_volid and not self.state.volume.can_clone_volumes():
            raise errors.conflict("Volume clones (source_volid) need every volume "
                                  "service upgraded to RPC 1.4 ([upgrade_levels] "
                                  "volume): an older one would make the volume blank.")
        if args.get("size") is None and source.min_size_gb is None:
            raise errors.bad_request("Invalid input for field/attribute size. "
                                     "'size' is a required property")
        size = _size(args["size"], conf) if args.get("size") is not None \
            else source.min_size_gb
        sources.check_size(source, size)
        _check_type(args.get("volume_type"))
        if args.get("availability_zone") not in (None, "", views.AVAILABILITY_ZONE):
            raise errors.bad_request("Invalid input for field/attribute availability_zone. "
                                     "Availability zone %s is invalid."
                                     % str(args["availability_zone"])[:64])
        values = {**source.columns(),
                  "name": args.get("name") or args.get("display_name"),
                  "description": args.get("description")
                  or args.get("display_description"),
                  "size_gb": size, "project_id": ctx.project_id, "user_id": ctx.user_id,
                  "volume_type": views.DEFAULT_TYPE_NAME,
                  "availability_zone": views.AVAILABILITY_ZONE,
                  "metadata": args.get("metadata") or {}}
        for attempt in range(PLACEMENT_ATTEMPTS):
            host = _place(conf, source, size)
            try:
                row = vdb.volume_create({
                    **values, "host": host,
                    "status": st.VOLUME_CREATING if host else st.VOLUME_ERROR,
                    "status_reason": None if host else "no enabled volume service is up",
                    "status_deadline": vdb.deadline(conf.volume.operation_timeout)
                    if host else None},
                    volume_defaults(conf),
                    check=_checks(space_guard(conf, host, size) if host else None,
                                  sources.source_guard(source)))
                break
            except NotEnoughSpace as exc:
                # Another create took the space between the pick and the
                # insert: pick again (a snapshot's or a source volume's host
                # is the only one).
                if source.host or attempt + 1 == PLACEMENT_ATTEMPTS:
                    raise _no_space(exc) from None
            except vdb.VolumeStatusConflict as exc:
                # The source volume moved on since it was read (source_guard).
                raise errors.bad_request("Invalid input for field/attribute "
                                         "source_volid. %s." % exc) from None
            except vdb.VolumeOverQuota as exc:
                raise errors.APIError(413, "VolumeLimitExceeded: Maximum number of volumes "
                                      "or gigabytes exceeded: %s" % str(exc),
                                      fault="overLimit") from None
        try:
            if host:
                self.state.volume.create_volume(ctx, host, row.id,
                                                from_source=source.is_set,
                                                from_volume=bool(source.source_volid))
        except exception.MessagingException as exc:
            LOG.error("could not cast create_volume for %s: %s", row.id, exc)
            try:
                row = vdb.volume_update(row.id, {"status": st.VOLUME_ERROR,
                                                 "status_reason": "the volume service "
                                                 "could not be reached"},
                                        expected_status=st.VOLUME_CREATING)
            except (vdb.VolumeNotFound, vdb.VolumeStatusConflict) as conflict:
                # Moved on meanwhile (the reaper, a delete): that status stands.
                LOG.warning("volume %s not put in error after the failed cast: %s",
                            row.id, conflict)
        LOG.info("volume %s (%d GiB) %s on %s", row.id, size, row.status, host)
        resp.status = falcon.HTTP_202
        resp.media = {"volume": views.volume(row, [], volume_url(self.state, req),
                                             ctx.is_admin)}


class Volume:
    policy_rules = {"GET": policy.READER, "PUT": policy.MEMBER, "DELETE": policy.MEMBER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, volume_id: str) -> None:
        ctx = ctxt(req)
        row = get_volume(ctx, volume_id)
        resp.media = {"volume": views.volume(row, vdb.attachments_of_volume(row.id),
                                             volume_url(self.state, req), ctx.is_admin)}

    def on_put(self, req, resp, volume_id: str) -> None:
        ctx = ctxt(req)
        row = get_volume(ctx, volume_id)
        args = _body(req, self.state, UPDATE)["volume"]
        values = {}
        for key, column in (("name", "name"), ("display_name", "name"),
                            ("description", "description"),
                            ("display_description", "description"),
                            ("metadata", "metadata")):
            if key in args:
                values[column] = args[key] if key != "metadata" else (args[key] or {})
        if values:
            row = vdb.volume_update(row.id, values)
        resp.media = {"volume": views.volume(row, vdb.attachments_of_volume(row.id),
                                             volume_url(self.state, req), ctx.is_admin)}

    def on_delete(self, req, resp, volume_id: str) -> None:
        ctx = ctxt(req)
        row = get_volume(ctx, volume_id)
        for flag in ("cascade", "force"):
            value = req.get_param(flag)
            if value is not None and validation.to_bool(value):
                raise errors.bad_request("Invalid input for field/attribute %s. "
                                         "Not supported." % flag)
        if vdb.attachments_of_volume(row.id):
            raise errors.bad_request("Invalid volume: Volume %s is attached to a server "
                                     "(status %s): detach it first." % (row.id, row.status))
        if row.status not in DELETABLE:
            raise errors.bad_request("Invalid volume: Volume status must be available "
                                     "or error, but current status is: %s." % row.status)
        cloning = [v.id for v in vdb.volume_get_all(statuses=(st.VOLUME_CREATING,))
                   if v.source_volid == row.id]
        if cloning:
            raise errors.bad_request("Invalid volume: volume %s is being created from "
                                     "volume %s." % (cloning[0], row.id))
        try:
            sdb.volume_delete_begin(row.id, DELETABLE,
                                    vdb.deadline(self.state.conf.volume.operation_timeout))
        except (vdb.VolumeStatusConflict, sdb.VolumeHasSnapshots) as exc:
            raise errors.bad_request("Invalid volume: %s." % str(exc)) from None
        if not row.path:
            # Never made on a volume host (created in error): nothing to remove.
            vdb.volume_destroy(row.id, expected_status=st.VOLUME_DELETING)
            resp.status = falcon.HTTP_202
            return
        try:
            self.state.volume.delete_volume(ctx, row.host, row.id)
        except exception.MessagingException as exc:
            LOG.error("could not cast delete_volume for %s: %s", row.id, exc)
            try:
                vdb.volume_update(row.id, {"status": st.VOLUME_ERROR_DELETING,
                                           "status_reason": "the volume service could "
                                           "not be reached"},
                                  expected_status=st.VOLUME_DELETING)
            except (vdb.VolumeNotFound, vdb.VolumeStatusConflict) as conflict:
                LOG.warning("volume %s not put in error_deleting after the failed "
                            "cast: %s", row.id, conflict)
        resp.status = falcon.HTTP_202


class Types:
    policy_rules = {"GET": policy.READER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"volume_types": [views.default_type()]}


class Type:
    policy_rules = {"GET": policy.READER}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, type_id: str) -> None:
        if type_id == "default":
            type_id = views.DEFAULT_TYPE_ID
        _check_type(type_id)
        resp.media = {"volume_type": views.default_type()}

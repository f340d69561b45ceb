"""Live migration through the API: the ``os-migrateLive`` server action,
``GET /servers/{id}/migrations[/{id}]`` (the server's migrations in
progress, with their progress), abort (``DELETE`` of one, 2.24) and
``force_complete`` (its ``action``, 2.22), and ``GET /os-migrations``
(every migration), all admin only, as Nova shows them.

Rules of ``os-migrateLive`` (admin only, as Nova's default policy):

* ``host`` optional (null: the scheduler chooses), ``block_migration``
  true, false or "auto" (always a block migration here: no shared
  storage), ``force`` (2.30-2.67) skips the scheduler's filters for the
  given host but still claims its capacity;
* 400 naming the reason: an unknown host, the server's own host, a
  disabled or down compute service there;
* 409 naming the short resource: a named host (forced or not) without the
  free RAM, VCPUs or disk of the server's flavor (allocation ratios
  applied), before anything is written (:mod:`api.compute.destination`);
* 409: a server that is not ACTIVE or PAUSED or has a task (a second
  migration of a migrating server included), a locked one for non-admins,
  one with a volume being attached or detached (naming the volume);
* the server's task becomes ``migrating`` (compare-and-swap from the
  states table), the migration record is created ``accepted``, the action
  ``live-migration`` recorded, and the conductor's flow started: 202.
"""

from __future__ import annotations

import logging

import falcon

from api import errors, validation
from api.compute import destination, locks, usage
from api.compute.servers import get_server
from api.state import APIState, ctxt, version
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.db import volumes as volumes_db
from flotilla.db.servers import MarkerNotFound
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)

OPERATION = st.operation("live_migrate")
LIVE = "live-migration"
ABORTABLE = (mig_db.ACCEPTED, mig_db.PREPARING, mig_db.RUNNING)

SCHEMA = {"type": "object", "properties": {
    "host": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
    "block_migration": {"oneOf": [{"type": "boolean"},
                                  {"type": "string", "enum": ["auto"]}]},
    "force": {"type": "boolean"},
    "disk_over_commit": {"type": ["boolean", "string"]}},
    "additionalProperties": False}


def _check_host(state: APIState, host: str, inst) -> None:
    if host == inst.host:
        raise errors.bad_request("Invalid input for field/attribute host: the server "
                                 "is on host %s already" % host)
    try:
        service = db.service_get(host, "flotilla-compute")
    except exception.NotFound:
        raise errors.bad_request("Invalid input for field/attribute host: compute host "
                                 "%s could not be found" % host) from None
    if service.disabled:
        raise errors.bad_request("Invalid input for field/attribute host: the compute "
                                 "service of host %s is disabled" % host)
    if not db.service_is_up(service, state.conf.service_down_time):
        raise errors.bad_request("Invalid input for field/attribute host: the compute "
                                 "service of host %s is down" % host)
    # Forced or not, a host that cannot hold the server is refused before
    # any record is written (see api.compute.destination for the 409).
    destination.check_room(host, inst.flavor or {})


def check_volumes_settled(name: str, inst) -> None:
    """409 naming the volume if one of the server's volumes is being
    attached or detached: its volumes move with it (resize, cold and live
    migration, evacuation), with the connection their attachment records,
    and one whose attach or detach is under way has none settled."""
    volume = volumes_db.unsettled_volume(inst.uuid)
    if volume is not None:
        raise errors.conflict("Cannot '%s' instance %s while volume %s is %s"
                              % (name, inst.uuid, volume.id, volume.status))


def live_migrate(state: APIState, req: falcon.Request, resp: falcon.Response, ctx,
                 inst, args: dict) -> None:
    if not ctx.is_admin:
        raise errors.forbidden("Policy doesn't allow os_compute_api:os-migrate-server:"
                               "migrate_live to be performed.")
    args = args or {}
    host = args.get("host")
    force = bool(args.get("force")) and (2, 30) <= version(req) < (2, 68)
    locks.check_not_locked(ctx, inst)
    if inst.vm_state not in OPERATION.from_vm_states or inst.task_state is not None:
        raise errors.conflict("Cannot 'os-migrateLive' instance %s while it is in "
                              "vm_state %s%s" % (inst.uuid, inst.vm_state,
                                                 ", task_state %s" % inst.task_state
                                                 if inst.task_state else ""))
    if not inst.host:
        raise errors.conflict("Cannot 'os-migrateLive' instance %s: it has no host"
                              % inst.uuid)
    check_volumes_settled("os-migrateLive", inst)
    if host:
        _check_host(state, host, inst)
    try:
        db.instance_update(inst.uuid, {"task_state": OPERATION.task_state,
                                       "task_deadline": task_deadline(
                                           state.conf, OPERATION.task_state)},
                           expected_vm_state=OPERATION.from_vm_states,
                           expected_task_state=None)
    except exception.InstanceStateConflict:
        current = db.instance_get(inst.uuid)
        raise errors.conflict("Cannot 'os-migrateLive' instance %s while it is in "
                              "vm_state %s, task_state %s"
                              % (inst.uuid, current.vm_state, current.task_state)) from None
    migration = mig_db.migration_create(inst.uuid, inst.host, None, LIVE)
    db.action_start(inst.uuid, OPERATION.action, ctx.request_id, ctx.user_id,
                    ctx.project_id)
    try:
        state.conductor.live_migrate_instance(ctx, inst.uuid, migration.uuid, host, force)
    except exception.MessagingException as exc:
        LOG.error("Could not cast live_migrate_instance for %s: %s", inst.uuid, exc)
        mig_db.migration_update(migration.uuid, {"status": mig_db.ERROR,
                                                 "error_reason": str(exc)})
        try:
            db.instance_update(inst.uuid, {"task_state": None, "task_deadline": None},
                               expected_task_state=OPERATION.task_state)
        except exception.FlotillaException:
            pass
        db.action_finish(inst.uuid, ctx.request_id, message="Error")
        raise errors.APIError(503, "The conductor could not be reached") from None
    resp.status = falcon.HTTP_202


# --- views --------------------------------------------------------------------------

def _view(migration, ver: tuple[int, int], server: bool) -> dict:
    view = {
        "id": migration.id,
        "status": migration.status,
        "source_compute": migration.source_host,
        "source_node": migration.source_host,
        "dest_compute": migration.dest_host,
        "dest_node": migration.dest_host,
        # Nova shows the destination's address; hosts are known by name here.
        "dest_host": migration.dest_host,
        "created_at": _time(migration.created_at),
        "updated_at": _time(migration.updated_at),
    }
    if server:
        view["server_uuid"] = migration.instance_uuid
        for field in mig_db.PROGRESS_FIELDS:
            view[field + "_bytes"] = getattr(migration, field)
    else:
        old_id, new_id = _flavor_ids(migration)
        view.update(instance_uuid=migration.instance_uuid, old_instance_type_id=old_id,
                    new_instance_type_id=new_id)
        if ver >= (2, 23):
            view["migration_type"] = migration.migration_type
    if ver >= (2, 59):
        view["uuid"] = migration.uuid
    return view


def _flavor_ids(migration) -> tuple[int | None, int | None]:
    """Nova's old and new flavor (integer) ids of a resize or cold
    migration, from its flow's saved state; None where unknown (a live
    migration, a flavor deleted since)."""
    data = migration.flow_data or {}
    if migration.flow != "resize":
        return None, None
    found = []
    for key in ("old_flavor", "new_flavor"):
        flavorid = (data.get(key) or {}).get("flavorid")
        try:
            found.append(db.flavor_get(str(flavorid)).id if flavorid else None)
        except exception.NotFound:
            found.append(None)
    return found[0], found[1]


def _time(value) -> str | None:
    return value.replace(tzinfo=None).isoformat() if value is not None else None


def _require(req: falcon.Request, ver: tuple[int, int]) -> None:
    if version(req) < ver:
        raise errors.not_found("The resource could not be found.")


class ServerMigrations:
    """GET /servers/{server_id}/migrations (2.23): live migrations in progress."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        _require(req, (2, 23))
        ctx = ctxt(req)
        _admin(ctx, "list")
        inst = get_server(ctx, server_id)
        rows = mig_db.migration_list(inst.uuid, migration_type=LIVE, in_progress=True)
        resp.media = {"migrations": [_view(m, version(req), True) for m in rows]}


class ServerMigration:
    """GET /servers/{server_id}/migrations/{migration_id} (2.23)."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response, server_id: str,
               migration_id: str) -> None:
        _require(req, (2, 23))
        ctx = ctxt(req)
        _admin(ctx, "show")
        inst = get_server(ctx, server_id)
        migration = _migration_of(inst.uuid, migration_id)
        if migration.migration_type != LIVE or migration.status in db_ended():
            raise errors.not_found("In-progress live migration %s is not found for "
                                   "server %s." % (migration_id, inst.uuid))
        resp.media = {"migration": _view(migration, version(req), True)}


    def on_delete(self, req: falcon.Request, resp: falcon.Response, server_id: str,
                  migration_id: str) -> None:
        """Abort (2.24): a live migration in progress; 400 for one that
        ended (or any other kind), 404 for none."""
        _require(req, (2, 24))
        ctx = ctxt(req)
        _admin(ctx, "delete")
        inst = get_server(ctx, server_id)
        migration = _migration_of(inst.uuid, migration_id)
        if migration.migration_type != LIVE or migration.status not in ABORTABLE:
            raise errors.bad_request("Migration %s of server %s is %s %s: only a live "
                                     "migration in progress can be aborted"
                                     % (migration.id, inst.uuid, migration.migration_type,
                                        migration.status))
        self.state.conductor.live_migration_abort(ctx, inst.uuid, migration.uuid)
        resp.status = falcon.HTTP_202


class ServerMigrationAction:
    """POST /servers/{id}/migrations/{migration_id}/action with
    ``{"force_complete": null}`` (2.22): a running live migration finishes
    by pausing the guest for the rest of the copy."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response, server_id: str,
                migration_id: str) -> None:
        _require(req, (2, 22))
        body = validation.read_json(req, self.state.conf.api.max_request_body_size)
        if not isinstance(body, dict) or list(body) != ["force_complete"] \
                or body["force_complete"] not in (None, {}):
            raise errors.bad_request("Invalid input for field/attribute force_complete: "
                                     "the body must be {\"force_complete\": null}")
        ctx = ctxt(req)
        _admin(ctx, "force_complete")
        inst = get_server(ctx, server_id)
        migration = _migration_of(inst.uuid, migration_id)
        if migration.migration_type != LIVE or migration.status != mig_db.RUNNING:
            raise errors.bad_request("Migration %s of server %s is %s %s: only a running "
                                     "live migration can be forced to complete"
                                     % (migration.id, inst.uuid, migration.migration_type,
                                        migration.status))
        self.state.conductor.live_migration_force_complete(ctx, inst.uuid, migration.uuid)
        resp.status = falcon.HTTP_202


# Query parameters of GET /os-migrations by microversion (Nova's schemas:
# before 2.59 anything else is ignored, from 2.59 it is a 400).
_FILTERS = ("instance_uuid", "status", "host", "migration_type", "source_compute")
_PARAMS_259 = frozenset(_FILTERS + ("hidden", "limit", "marker", "changes-since"))
_PARAMS_266 = _PARAMS_259 | {"changes-before"}
_PARAMS_280 = _PARAMS_266 | {"user_id", "project_id"}


class Migrations:
    """GET /os-migrations (admin): every migration, newest first, as Nova:
    filtered by instance_uuid, status, host, migration_type, source_compute;
    from 2.59 paged (``limit``, ``marker``: a migration uuid, 400 if none
    such; ``migrations_links`` to the next page) and filtered by
    ``changes-since``, from 2.66 ``changes-before``, from 2.80 ``user_id``
    and ``project_id`` (of whoever started it; shown in each migration).
    From 2.59 an unknown parameter, a malformed time or limit, an unknown
    marker, or changes-since after changes-before is a 400 naming it."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = ctxt(req)
        if not ctx.is_admin:
            raise errors.forbidden("Policy doesn't allow os_compute_api:os-migrations:"
                                   "index to be performed.")
        ver = version(req)
        names = _FILTERS
        since = before = marker = limit = None
        if ver >= (2, 59):
            allowed = _PARAMS_280 if ver >= (2, 80) else \
                _PARAMS_266 if ver >= (2, 66) else _PARAMS_259
            unknown = sorted(set(req.params) - allowed)
            if unknown:
                raise errors.bad_request("Invalid input for query parameters %s: "
                                         "additional properties are not allowed"
                                         % ", ".join(repr(n[:64]) for n in unknown))
            max_limit = self.state.conf.api.max_limit
            limit = validation.query_int(req, "limit", 0)
            limit = max_limit if limit is None else min(limit, max_limit)
            marker = req.get_param("marker")
            since = _time_param(req, "changes-since")
            if ver >= (2, 66):
                before = _time_param(req, "changes-before")
            if since and before and since > before:
                raise errors.bad_request("The value of changes-since must be less than "
                                         "or equal to changes-before.")
            if ver >= (2, 80):
                names = _FILTERS + ("user_id", "project_id")
        filters = {name: req.get_param(name) for name in names}
        try:
            rows = mig_db.migration_page(filters, changes_since=since,
                                         changes_before=before, marker=marker,
                                         limit=limit) if limit != 0 else []
        except MarkerNotFound:
            raise errors.bad_request("Marker %s could not be found." % marker[:64]) \
                from None
        body: dict = {"migrations": [_list_view(m, ver) for m in rows]}
        if limit and len(rows) == limit:
            params = {k: v for k, v in req.params.items() if k != "marker"}
            params["marker"] = rows[-1].uuid
            body["migrations_links"] = [{"rel": "next", "href": "%s/os-migrations%s" % (
                self.state.compute_url(req), falcon.to_query_str(params))}]
        resp.media = body


def _time_param(req: falcon.Request, name: str):
    value = req.get_param(name)
    if value is None:
        return None
    try:
        return usage.parse_time(value, name)
    except errors.APIError:
        raise errors.bad_request("Invalid input for query parameters %s: %r is not a "
                                 "date-time" % (name, value[:64])) from None


def _list_view(migration, ver: tuple[int, int]) -> dict:
    view = _view(migration, ver, False)
    if ver >= (2, 80):
        started_by = (migration.flow_data or {}).get("ctxt") or {}
        view["user_id"] = started_by.get("user_id")
        view["project_id"] = started_by.get("project_id")
    return view


def _admin(ctx, what: str) -> None:
    if not ctx.is_admin:
        raise errors.forbidden("Policy doesn't allow os_compute_api:servers:migrations:"
                               "%s to be performed." % what)


def _migration_of(instance_uuid: str, migration_id: str):
    try:
        return mig_db.migration_get_by_id(instance_uuid, int(migration_id))
    except (ValueError, exception.MigrationNotFound):
        raise errors.not_found("Migration %s could not be found." % migration_id[:64]) \
            from None


def db_ended() -> tuple[str, ...]:
    from flotilla.db.instances import MIGRATION_ENDED
    return MIGRATION_ENDED


def add_routes(app, state: APIState, compute: str) -> None:
    app.add_route(compute + "/servers/{server_id}/migrations", ServerMigrations(state))
    app.add_route(compute + "/servers/{server_id}/migrations/{migration_id}",
                  ServerMigration(state))
    app.add_route(compute + "/servers/{server_id}/migrations/{migration_id}/action",
                  ServerMigrationAction(state))
    app.add_route(compute + "/os-migrations", Migrations(state))

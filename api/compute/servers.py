"""Servers: create, list, list detail, show, update, delete.

Rules:

* a non-admin only ever sees its project's servers: lookups are filtered by
  project, so another project's server is a 404 like a missing one;
* create validates everything (schema, flavor, image, zone, group) before
  writing anything; the quota check and the rows are one transaction
  (:func:`flotilla.db.servers.create_within_quota`); then the conductor is
  cast ``build_instances``; if the bus refuses the cast the new servers go
  to ERROR with a fault and the client gets 503;
* ``key_name`` at create names one of the caller's key pairs (400 when it
  has none of that name); its name and public key are copied onto the
  server;
* update (PUT) changes the name, and from 2.19 the description, of a
  server the caller may see; below 2.75 the answer is Nova's short form;
* delete is 204: task_state becomes ``deleting`` by compare-and-swap and
  the conductor is cast ``delete_instance``; the server stays visible
  (task_state deleting) until the agent has destroyed it, then GET is 404.
  With ``[DEFAULT] reclaim_instance_interval`` set, a server on a host in a
  stable state is soft-deleted instead (its agent powers it off; status
  SOFT_DELETED) and the conductor deletes it once the interval has passed;
  ``restore`` brings it back, ``forceDelete`` or a second delete ends it
  now. A locked server is 409 for non-admins (api.compute.locks);
* create also takes Nova's standard fields: ``adminPass`` (Flotilla has no
  guest agent to set it, so it is not stored; a generated one when absent,
  returned once in the answer, as Nova returns it), ``accessIPv4``/``v6``,
  ``OS-DCF:diskConfig``, ``hostname`` (2.90+; else the name made a host
  name), ``user_data``, ``tags`` (2.52+), and the scheduler hints
  ``group``, ``same_host`` and ``different_host``;
* ``block_device_mapping_v2`` (api.compute.block_devices) may boot the
  server from a volume (a new one made from an image, or an existing one)
  and attach existing volumes at boot; the conductor's build flow makes,
  reserves and exports them (conductor.flows.build_volumes);
* list filters: name (a regular expression, as Nova), status, host
  (admin), flavor, image, ``changes-since`` (deleted servers too, as
  Nova), ``locked`` (2.73+).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import uuid as uuidlib

import falcon

from api import errors, policy, validation
from api.compute import block_devices, flavor_access, locks, schemas, usage, views, zones
from api.state import APIState, ctxt, version
from api.volume import volume_flags
from flotilla import exception, images, objects
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import keypairs as keypairs_db
from flotilla.db import quotas as quotas_db
from flotilla.db import servers as servers_db
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)


def get_server(ctx, server_id: str, read_deleted: bool = False):
    """The server if ``ctx`` may see it, else 404 (never 403: the existence
    of another project's server is not disclosed)."""
    try:
        uuidlib.UUID(server_id)
        inst = db.instance_get(server_id, read_deleted=read_deleted)
    except (ValueError, exception.InstanceNotFound):
        raise errors.not_found("Instance %s could not be found." % server_id[:64]) from None
    project = policy.project_filter(ctx)
    if project is not None and inst.project_id != project:
        raise errors.not_found("Instance %s could not be found." % server_id)
    return inst


def quota_defaults(conf) -> dict[str, int]:
    """The ``[quota]`` defaults (before the quota class ``default``)."""
    return {r: getattr(conf.quota, r) for r in quotas_db.RESOURCES}


def quota_limits(conf, project_id: str, session=None, user_id: str | None = None) -> dict:
    """The effective limits of a project (of a user in it, with ``user_id``)."""
    return quotas_db.get_limits(project_id, quota_defaults(conf), session=session,
                                user_id=user_id)


class Servers:
    """/servers and /servers/detail."""

    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    # --- list ------------------------------------------------------------------

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = ctxt(req)
        conf = self.state.conf
        limit = validation.query_int(req, "limit", 0)
        limit = conf.api.max_limit if limit is None else min(limit, conf.api.max_limit)
        marker = req.get_param("marker")
        project = ctx.project_id
        host = None
        if ctx.is_admin:
            if validation.query_bool(req, "all_tenants") or req.get_param("all_tenants") == "":
                project = req.get_param("project_id") or req.get_param("tenant_id")
            host = req.get_param("host")
        vm_states = task_states = None
        status = req.get_param("status")
        if status:
            if status.upper() not in views.STATUS_FILTERS:
                # Nova answers an unknown status with an empty list.
                self._respond(req, resp, [], limit)
                return
            vm_states, task_states = views.STATUS_FILTERS[status.upper()]
        if validation.query_bool(req, "deleted"):
            self._respond(req, resp, [], limit)
            return
        locked = None
        if version(req) >= (2, 73) and req.get_param("locked") is not None:
            locked = _strict_bool(req, "locked")
        name = req.get_param("name")
        if name:
            try:
                re.compile(name)
            except re.error:
                raise errors.bad_request("Invalid filter name: %r is not a regular "
                                         "expression" % name[:64]) from None
        since = usage.parse_time(req.get_param("changes-since"), "changes-since")
        before = usage.parse_time(req.get_param("changes-before"), "changes-before") \
            if version(req) >= (2, 66) else None
        if since and before and since > before:
            raise errors.bad_request("The value of changes-since must be less than or "
                                     "equal to changes-before.")
        flavor, image = req.get_param("flavor"), req.get_param("image")
        rows = servers_db.instance_page(
            project, name=name, vm_states=vm_states,
            task_states=task_states, host=host, locked=locked,
            flavor_id=flavor.rstrip("/").rsplit("/", 1)[-1] if flavor else None,
            image_ref=image.rstrip("/").rsplit("/", 1)[-1] if image else None,
            changes_since=since, changes_before=before,
            reservation_id=req.get_param("reservation_id"), marker=marker,
            limit=limit) if limit > 0 else []
        self._respond(req, resp, rows, limit)

    def _respond(self, req, resp, rows, limit: int) -> None:
        url = self.state.compute_url(req)
        ctx = ctxt(req)
        ver = version(req)
        if self.detail:
            faults = servers_db.latest_faults(
                [r.uuid for r in rows if r.vm_state == st.ERROR])
            hosts = zones.HostFacts(self.state.conf)
            servers = [views.server_detail(r, ctx, ver, url, hosts, faults.get(r.uuid),
                                           listing=True) for r in rows]
        else:
            servers = [views.server_brief(r, url) for r in rows]
        body = {"servers": servers}
        if rows and len(rows) == limit:
            params = {k: v for k, v in req.params.items() if k != "marker"}
            params["marker"] = rows[-1].uuid
            query = falcon.to_query_str(params)
            path = "detail" if self.detail else ""
            body["servers_links"] = [{"rel": "next", "href": "%s/servers%s%s" % (
                url, "/" + path if path else "", query)}]
        resp.media = body

    # --- create ----------------------------------------------------------------

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.detail:
            raise errors.APIError(405, "Method not allowed")
        conf = self.state.conf
        ctx = ctxt(req)
        body = validation.validate(
            validation.read_json(req, conf.api.max_request_body_size),
            schemas.SERVER_CREATE)
        spec = body["server"]
        min_count = int(spec.get("min_count", 1))
        max_count = int(spec.get("max_count", min_count))
        if max_count < min_count:
            raise errors.bad_request("min_count must be <= max_count")
        if isinstance(spec.get("networks"), list):
            raise errors.bad_request("Networks are not supported: use "
                                     "networks 'none' or 'auto'")
        flavor = flavor_access.usable_flavor(ctx, spec["flavorRef"])
        # Which disk boots, and the volumes at boot (api.compute.block_devices).
        disks = block_devices.parse(
            ctx, conf, spec, flavor.memory_mb, max_count,
            lambda c, image_id, memory_mb: bootable_image(c, image_id, memory_mb, 0))
        if disks.volumes and not self.state.conductor.can_build_volumes(
                blank=any(b.source_type == "blank" for b in disks.volumes),
                snapshot=any(b.source_type == "snapshot" for b in disks.volumes)):
            raise errors.conflict("Volumes at server create need every conductor "
                                  "upgraded ([upgrade_levels] conductor)")
        # A read-only volume needs agents that plug it read-only (409).
        volume_flags.check_read_only_build(self.state, disks.volumes)
        if disks.volume_backed:
            image, root_gb = disks.volume_image, 0   # no local root disk
        else:
            image = self._image(ctx, disks.image_id, flavor)
            root_gb = flavor_access.root_disk_gb(ctx, conf, flavor, image)
        zone = spec.get("availability_zone")
        if zone is not None and zone not in zones.zone_names(conf):
            raise errors.bad_request("The requested availability zone is not available")
        hints = body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}
        group = None
        if hints.get("group"):
            try:
                group = db.server_group_get(hints["group"], policy.project_filter(ctx))
            except exception.NotFound:
                raise errors.bad_request("Server group %s could not be found."
                                         % hints["group"]) from None
        metadata = spec.get("metadata") or {}
        ver = version(req)
        if "hostname" in spec and ver < (2, 90):
            raise errors.bad_request("Invalid input for field/attribute server. "
                                     "Additional properties are not allowed (hostname)")
        if "hostname" in spec and max_count > 1:
            raise errors.bad_request("Invalid input for field/attribute hostname: "
                                     "one host name cannot name several servers")
        if "tags" in spec and ver < (2, 52):
            raise errors.bad_request("Invalid input for field/attribute server. "
                                     "Additional properties are not allowed (tags)")
        key = self._key_pair(ctx, spec.get("key_name"))
        limits = quota_limits(conf, ctx.project_id, user_id=ctx.user_id)
        if 0 <= limits["metadata_items"] < len(metadata):
            raise exception.OverQuota(resources="metadata_items",
                                      detail="limit %d" % limits["metadata_items"])
        # What the compute agents need to fetch the image: made before any
        # write, so a failure here leaves nothing behind.
        image_ref = images.compute_image_ref(conf, image.id) \
            if not disks.volume_backed else None
        snapshot = views.flavor_snapshot(flavor)
        deadline = task_deadline(conf, st.SCHEDULING)

        reservation = "r-" + secrets.token_hex(4)

        def records(count: int) -> list[dict]:
            result = []
            for index in range(count):
                name = spec["name"] if count == 1 else "%s-%d" % (spec["name"], index + 1)
                result.append({
                    "uuid": str(uuidlib.uuid4()), "name": name,
                    "display_description": spec.get("description"),
                    "project_id": ctx.project_id, "user_id": ctx.user_id,
                    "flavor": snapshot, "flavor_id": flavor.flavorid,
                    "vcpus": flavor.vcpus, "memory_mb": flavor.memory_mb,
                    "root_gb": root_gb, "ephemeral_gb": flavor.ephemeral_gb,
                    "image_ref": "" if disks.volume_backed else image.id,
                    "availability_zone": zone,
                    "vm_state": st.BUILDING, "task_state": st.SCHEDULING,
                    "task_deadline": deadline, "metadata": dict(metadata),
                    "server_group_id": group.uuid if group else None,
                    "key_name": key.name if key else None,
                    "key_data": key.public_key if key else None,
                    "access_ip_v4": normalized_ip(spec.get("accessIPv4")),
                    "access_ip_v6": normalized_ip(spec.get("accessIPv6")),
                    "disk_config": spec.get("OS-DCF:diskConfig") or "MANUAL",
                    "hostname": spec.get("hostname") or sanitize_hostname(name),
                    "user_data": spec.get("user_data"),
                    "tags": list(dict.fromkeys(spec.get("tags") or [])),
                    "reservation_id": reservation})
            return result

        def create(count: int):
            return servers_db.create_within_quota(
                ctx.project_id, records(count),
                lambda session: quota_limits(conf, ctx.project_id, session),
                group.uuid if group else None, ctx.request_id, ctx.user_id)

        try:
            rows = create(max_count)
        except exception.OverQuota:
            if min_count == max_count:
                raise
            rows = create(min_count)
        uuids = [r.uuid for r in rows]
        request_spec = objects.RequestSpec(
            # The claim covers what the root disk can grow to.
            flavor=objects.Flavor.from_record(dict(snapshot, root_gb=root_gb)),
            image=_request_image(image, disks),
            project_id=ctx.project_id or "", user_id=ctx.user_id or "",
            availability_zone=zone, group=group.uuid if group else None,
            num_instances=len(uuids),
            scheduler_hints={k: v for k, v in hints.items()
                             if k in ("same_host", "different_host")})
        try:
            self.state.conductor.build_instances(
                ctx, uuids, request_spec,
                objects.ImageMeta.from_record(image_ref) if image_ref else None,
                block_device_mapping=disks.volumes)
        except exception.MessagingException as exc:
            LOG.error("Could not cast build_instances for %s: %s", uuids, exc)
            for uuid in uuids:
                _to_error(uuid, "Could not reach the conductor: %s" % exc)
            raise errors.APIError(503, "The conductor could not be reached; "
                                  "the server is in ERROR") from None
        url = self.state.compute_url(req)
        first = rows[0]
        resp.status = falcon.HTTP_202
        resp.set_header("Location", "%s/servers/%s" % (url, first.uuid))
        if str(spec.get("return_reservation_id", "")).lower() == "true":
            resp.media = {"reservation_id": reservation}
            return
        resp.media = {"server": {"id": first.uuid, "links": views.server_brief(first, url)["links"],
                                 "OS-DCF:diskConfig": first.disk_config or "MANUAL",
                                 "security_groups": [{"name": "default"}],
                                 "adminPass": spec.get("adminPass")
                                 or secrets.token_urlsafe(9)}}

    @staticmethod
    def _key_pair(ctx, name: str | None):
        if name is None:
            return None
        try:
            return keypairs_db.key_pair_get(ctx.user_id, name)
        except exception.KeypairNotFound:
            raise errors.bad_request("Invalid key_name provided.") from None

    def _image(self, ctx, image_id: str, flavor):
        # The root disk is checked (and sized) by flavor_access.root_disk_gb.
        return bootable_image(ctx, image_id, flavor.memory_mb, 0)


def bootable_image(ctx, image_id: str, memory_mb: int, root_gb: int):
    """The image a server of ``ctx``'s project with this much memory and
    root disk (0: not checked here) may boot (or be rebuilt) from; 400
    saying why not. The image's virtual size is what its disk grows to."""
    try:
        image = images.check_image_usable(ctx, image_id)
    except exception.ImageNotActive:
        raise errors.bad_request("Image %s is not active." % image_id) from None
    except exception.NotFound:
        raise errors.bad_request("Can not find requested image") from None
    except exception.FlotillaException as exc:
        if exc.code >= 500:
            raise
        raise errors.bad_request("Image %s cannot be booted: %s" % (image_id, exc)) from None
    if (image.min_ram or 0) > memory_mb:
        raise errors.bad_request("Flavor's memory is too small for requested image.")
    image_bytes = int(getattr(image, "virtual_size", None) or image.size or 0)
    if root_gb and ((image.min_disk or 0) > root_gb or image_bytes > root_gb * 1024 ** 3):
        raise errors.bad_request("Flavor's disk is too small for requested image.")
    return image


def _request_image(image, disks: block_devices.BootDisks) -> objects.ImageMeta:
    """The image facts the scheduler reads: the image's, or for a server
    that boots from an existing volume, what the volume kept of its image."""
    if image is not None:
        return objects.ImageMeta(id=image.id, properties=dict(image.properties or {}),
                                 min_ram_mb=image.min_ram or 0,
                                 min_disk_gb=image.min_disk or 0)
    meta = disks.image_meta
    return objects.ImageMeta(id=meta.get("image_id") or "",
                             min_ram_mb=int(meta.get("min_ram") or 0))


def normalized_ip(value: str | None) -> str | None:
    """An address in its canonical text form (Nova keeps
    ``::babe:dc0c:1602`` for ``0:0:0:0:0:babe:220.12.22.2``)."""
    return str(ipaddress.ip_address(value)) if value else value


def sanitize_hostname(name: str) -> str:
    """A server name made a host name, as Nova makes it."""
    hostname = name.encode("latin-1", "ignore").decode("latin-1")[:63]
    hostname = re.sub(r"[ _.]", "-", hostname)
    hostname = re.sub(r"[^\w.-]+", "", hostname, flags=re.ASCII)
    return hostname.lower().strip(".-") or "server"


def _strict_bool(req, name: str) -> bool:
    """A boolean query parameter that must be one (Nova's strict filters)."""
    value = validation.query_bool(req, name)
    if value is None:
        raise errors.bad_request("Invalid filter value for %s: %r is not a boolean"
                                 % (name, req.get_param(name)[:64]))
    return value


def _to_error(uuid: str, message: str) -> None:
    try:
        db.instance_update(uuid, {"vm_state": st.ERROR, "task_state": None,
                                  "task_deadline": None})
        db.instance_fault_create(uuid, 503, message)
    except exception.FlotillaException:
        LOG.exception("Could not put %s in ERROR", uuid)


class Server:
    """/servers/{server_id}: show, update and delete."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, server_id: str) -> None:
        ctx = ctxt(req)
        resp.media = {"server": self._view(req, ctx, get_server(ctx, server_id))}

    def _view(self, req, ctx, inst, full: bool = True) -> dict:
        fault = None
        if inst.vm_state == st.ERROR:
            faults = db.instance_fault_get_all(inst.uuid)
            fault = faults[0] if faults else None
        groups = servers_db.group_uuids_for([inst.uuid])
        return views.server_detail(inst, ctx, version(req), self.state.compute_url(req),
                                   zones.HostFacts(self.state.conf), fault, groups.get(inst.uuid),
                                   full=full)

    def on_put(self, req, resp, server_id: str) -> None:
        ctx = ctxt(req)
        ver = version(req)
        schema = schemas.SERVER_UPDATE_V290 if ver >= (2, 90) else \
            schemas.SERVER_UPDATE_V219 if ver >= (2, 19) else schemas.SERVER_UPDATE
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size), schema)
        inst = get_server(ctx, server_id)
        spec = body["server"]
        values = {}
        for key, column in (("name", "name"), ("description", "display_description"),
                            ("accessIPv4", "access_ip_v4"), ("accessIPv6", "access_ip_v6"),
                            ("OS-DCF:diskConfig", "disk_config"), ("hostname", "hostname")):
            if key in spec:
                values[column] = normalized_ip(spec[key]) if key.startswith("accessIP") \
                    else spec[key]
        if values:
            try:
                inst = db.instance_update(inst.uuid, values)
            except exception.InstanceNotFound:
                raise errors.not_found("Instance %s could not be found."
                                       % server_id) from None
        resp.media = {"server": self._view(req, ctx, inst, full=ver >= (2, 75))}

    def on_delete(self, req, resp, server_id: str, force: bool = False) -> None:
        ctx = ctxt(req)
        inst = get_server(ctx, server_id)
        locks.check_not_locked(ctx, inst)
        if not force and self.state.conf.reclaim_instance_interval > 0 and inst.host \
                and inst.vm_state in st.STABLE and inst.task_state is None:
            self._soft_delete(ctx, inst)
            resp.status = falcon.HTTP_204
            return
        busy = [t for t in st.TASK_STATES if t != st.DELETING] + [None]
        try:
            db.instance_update(inst.uuid, {"task_state": st.DELETING,
                                           "task_deadline": task_deadline(
                                               self.state.conf, st.DELETING)},
                               expected_task_state=busy)
        except exception.InstanceStateConflict:
            # Already being deleted: deleting again is the same request.
            resp.status = falcon.HTTP_204
            return
        except exception.InstanceNotFound:
            raise errors.not_found("Instance %s could not be found." % server_id) from None
        db.action_start(inst.uuid, st.operation("delete").action, ctx.request_id,
                        ctx.user_id, ctx.project_id)
        try:
            self.state.conductor.delete_instance(ctx, inst.uuid)
        except exception.MessagingException as exc:
            LOG.error("Could not cast delete_instance for %s: %s", inst.uuid, exc)
            try:
                db.instance_update(inst.uuid, {"task_state": inst.task_state,
                                               "task_deadline": inst.task_deadline},
                                   expected_task_state=st.DELETING)
            except exception.FlotillaException:
                pass
            db.action_finish(inst.uuid, ctx.request_id, message="Error")
            raise errors.APIError(503, "The conductor could not be reached") from None
        resp.status = falcon.HTTP_204

    def _soft_delete(self, ctx, inst) -> None:
        op = st.operation("soft_delete")
        try:
            db.instance_update(inst.uuid, {"task_state": op.task_state,
                                           "task_deadline": task_deadline(
                                               self.state.conf, op.task_state)},
                               expected_vm_state=op.from_vm_states, expected_task_state=None)
        except exception.InstanceStateConflict:
            raise errors.conflict("Cannot delete instance %s now: it is busy"
                                  % inst.uuid) from None
        db.action_start(inst.uuid, op.action, ctx.request_id, ctx.user_id, ctx.project_id)
        try:
            self.state.compute.soft_delete_instance(ctx, inst.host, inst.uuid)
        except exception.MessagingException as exc:
            LOG.error("Could not cast soft_delete_instance to %s: %s", inst.host, exc)
            db.instance_update(inst.uuid, {"task_state": None, "task_deadline": None},
                               expected_task_state=op.task_state)
            db.action_finish(inst.uuid, ctx.request_id, message="Error")
            raise errors.APIError(503, "The compute host %s of this server is "
                                  "unavailable" % inst.host) from None

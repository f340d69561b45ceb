"""A server's sub-resources: metadata, tags (2.26+), ips, diagnostics
(admin), os-server-password.

Rules (Nova's):

* metadata: POST merges, PUT replaces all, ``metadata/{key}`` reads,
  sets (the body's one key must be the URL's) or deletes one item; the
  project's ``metadata_items`` limit applies per server (403 overLimit);
  tags: at most 50 per server, each 1-60 characters without ``,`` or ``/``;
  PUT of one tag is 201 when new, 204 when present;
* changing metadata or tags needs the server in active, paused, suspended
  or shutoff with no task (409 otherwise) and not locked (409 for
  non-admins); reading needs only to see the server;
* ips: addresses by network; Flotilla has no network API, so a server has
  none and ``ips/{network}`` is 404;
* diagnostics come from the server's compute host; from 2.48 in Nova's
  standard form;
* os-server-password: what a guest posted (empty until then); DELETE
  clears it.
"""

from __future__ import annotations

import falcon

from api import errors, validation
from api.compute import locks, schemas
from api.compute.servers import get_server, quota_limits
from api.state import APIState, ctxt, version
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db

_CHANGEABLE = (st.ACTIVE, st.PAUSED, st.SUSPENDED, st.STOPPED)
METADATA_BODY = {"type": "object", "properties": {"metadata": schemas.SERVER_METADATA},
                 "required": ["metadata"], "additionalProperties": False}
META_BODY = {"type": "object", "properties": {"meta": dict(
    schemas.SERVER_METADATA, minProperties=1, maxProperties=1)},
    "required": ["meta"], "additionalProperties": False}
TAGS_BODY = {"type": "object", "properties": {"tags": schemas.TAGS},
             "required": ["tags"], "additionalProperties": False}
MAX_TAGS = 50


def _changeable(req, what: str):
    """The server, if the caller may change its ``what`` now."""
    ctx = ctxt(req)
    inst = get_server(ctx, req.context.server_id)
    locks.check_not_locked(ctx, inst)
    if inst.vm_state not in _CHANGEABLE or inst.task_state is not None:
        raise errors.conflict("Cannot change the %s of instance %s while it is in "
                              "vm_state %s, task_state %s"
                              % (what, inst.uuid, inst.vm_state, inst.task_state))
    return inst


def _body(req, state: APIState, schema: dict) -> dict:
    return validation.validate(
        validation.read_json(req, state.conf.api.max_request_body_size), schema)


def _save_metadata(state: APIState, req, inst, metadata: dict) -> dict:
    limits = quota_limits(state.conf, inst.project_id)
    if 0 <= limits["metadata_items"] < len(metadata):
        raise exception.OverQuota(resources="metadata_items",
                                  detail="limit %d" % limits["metadata_items"])
    try:
        return dict(db.instance_update(inst.uuid, {"metadata": metadata}).metadata_ or {})
    except exception.InstanceNotFound:
        raise errors.not_found("Instance %s could not be found." % inst.uuid) from None


class _ServerScoped:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, server_id: str, **kwargs) -> None:
        req.context.server_id = server_id
        self.get(req, resp, get_server(ctxt(req), server_id), **kwargs)


class Metadata(_ServerScoped):
    def get(self, req, resp, inst) -> None:
        resp.media = {"metadata": dict(inst.metadata_ or {})}

    def on_post(self, req, resp, server_id: str) -> None:
        req.context.server_id = server_id
        updates = _body(req, self.state, METADATA_BODY)["metadata"]
        inst = _changeable(req, "metadata")
        merged = dict(inst.metadata_ or {}, **updates)
        resp.media = {"metadata": _save_metadata(self.state, req, inst, merged)}

    def on_put(self, req, resp, server_id: str) -> None:
        req.context.server_id = server_id
        metadata = _body(req, self.state, METADATA_BODY)["metadata"]
        inst = _changeable(req, "metadata")
        resp.media = {"metadata": _save_metadata(self.state, req, inst, dict(metadata))}


class MetadataItem(_ServerScoped):
    def get(self, req, resp, inst, key: str) -> None:
        metadata = inst.metadata_ or {}
        if key not in metadata:
            raise errors.not_found("Metadata item was not found")
        resp.media = {"meta": {key: metadata[key]}}

    def on_put(self, req, resp, server_id: str, key: str) -> None:
        req.context.server_id = server_id
        meta = _body(req, self.state, META_BODY)["meta"]
        if key not in meta:
            raise errors.bad_request("Request body and URI mismatch")
        inst = _changeable(req, "metadata")
        merged = dict(inst.metadata_ or {}, **meta)
        _save_metadata(self.state, req, inst, merged)
        resp.media = {"meta": meta}

    def on_delete(self, req, resp, server_id: str, key: str) -> None:
        req.context.server_id = server_id
        inst = _changeable(req, "metadata")
        metadata = dict(inst.metadata_ or {})
        if key not in metadata:
            raise errors.not_found("Metadata item was not found")
        del metadata[key]
        _save_metadata(self.state, req, inst, metadata)
        resp.status = falcon.HTTP_204


def _check_tags_version(req) -> None:
    if version(req) < (2, 26):
        raise errors.not_found("The resource could not be found.")


def _save_tags(inst, tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise errors.bad_request("The number of tags exceeded the per-server limit %d"
                                 % MAX_TAGS)
    try:
        return list(db.instance_update(inst.uuid, {"tags": tags}).tags or [])
    except exception.InstanceNotFound:
        raise errors.not_found("Instance %s could not be found." % inst.uuid) from None


class Tags(_ServerScoped):
    def get(self, req, resp, inst) -> None:
        _check_tags_version(req)
        resp.media = {"tags": list(inst.tags or [])}

    def on_put(self, req, resp, server_id: str) -> None:
        _check_tags_version(req)
        req.context.server_id = server_id
        tags = _body(req, self.state, TAGS_BODY)["tags"]
        inst = _changeable(req, "tags")
        resp.media = {"tags": _save_tags(inst, list(dict.fromkeys(tags)))}

    def on_delete(self, req, resp, server_id: str) -> None:
        _check_tags_version(req)
        req.context.server_id = server_id
        _save_tags(_changeable(req, "tags"), [])
        resp.status = falcon.HTTP_204


class Tag(_ServerScoped):
    def get(self, req, resp, inst, tag: str) -> None:
        _check_tags_version(req)
        if tag not in (inst.tags or []):
            raise errors.not_found("Tag %s could not be found." % tag[:64])
        resp.status = falcon.HTTP_204

    def on_put(self, req, resp, server_id: str, tag: str) -> None:
        _check_tags_version(req)
        validation.validate(tag, schemas.TAG)
        req.context.server_id = server_id
        inst = _changeable(req, "tags")
        tags = list(inst.tags or [])
        if tag in tags:
            resp.status = falcon.HTTP_204
            return
        _save_tags(inst, tags + [tag])
        resp.status = falcon.HTTP_201
        resp.set_header("Location", "%s/servers/%s/tags/%s"
                        % (self.state.compute_url(req), inst.uuid, tag))

    def on_delete(self, req, resp, server_id: str, tag: str) -> None:
        _check_tags_version(req)
        req.context.server_id = server_id
        inst = _changeable(req, "tags")
        tags = list(inst.tags or [])
        if tag not in tags:
            raise errors.not_found("Tag %s could not be found." % tag[:64])
        tags.remove(tag)
        _save_tags(inst, tags)
        resp.status = falcon.HTTP_204


class Ips(_ServerScoped):
    def get(self, req, resp, inst) -> None:
        resp.media = {"addresses": {}}


class IpsNetwork(_ServerScoped):
    def get(self, req, resp, inst, network: str) -> None:
        raise errors.not_found("Network %s could not be found." % network[:64])


def diagnostics_v248(raw: dict, inst) -> dict:
    """The driver's counters in Nova's standard form (2.48)."""
    memory = raw.get("memory") or {}
    return {
        "state": raw.get("state", "pending"), "driver": "libvirt",
        "hypervisor": "qemu", "hypervisor_os": "linux", "uptime": None,
        "config_drive": False, "num_cpus": raw.get("vcpus", inst.vcpus),
        "num_nics": len(raw.get("interfaces") or {}),
        "num_disks": len(raw.get("disks") or {}),
        "cpu_details": [], "memory_details": {
            "maximum": (raw.get("memory_kb") or 0) // 1024,
            "used": (memory.get("rss") or 0) // 1024},
        "disk_details": [{"read_bytes": d.get("read_bytes", 0),
                          "read_requests": d.get("read_requests", 0),
                          "write_bytes": d.get("write_bytes", 0),
                          "write_requests": d.get("write_requests", 0),
                          "errors_count": d.get("errors", 0)}
                         for d in (raw.get("disks") or {}).values()],
        "nic_details": [{"mac_address": None, "rx_octets": n.get("rx_bytes", 0),
                         "rx_errors": n.get("rx_errs", 0),
                         "rx_drop": n.get("rx_drop", 0),
                         "rx_packets": n.get("rx_packets", 0), "rx_rate": None,
                         "tx_octets": n.get("tx_bytes", 0),
                         "tx_errors": n.get("tx_errs", 0),
                         "tx_drop": n.get("tx_drop", 0),
                         "tx_packets": n.get("tx_packets", 0), "tx_rate": None}
                        for n in (raw.get("interfaces") or {}).values()],
    }


def diagnostics_legacy(raw: dict) -> dict:
    """Before 2.48: the driver's own flat keys, as Nova's libvirt driver."""
    result: dict = {"cpu0_time": raw.get("cpu_time_ns", 0),
                    "memory": raw.get("memory_kb", 0)}
    for dev, stats in (raw.get("disks") or {}).items():
        for key in ("read_bytes", "read_requests", "write_bytes", "write_requests",
                    "errors"):
            result["%s_%s" % (dev, key.replace("_bytes", "").replace("_requests", "_req")
                              if key != "errors" else key)] = stats.get(key, 0)
    for dev, stats in (raw.get("interfaces") or {}).items():
        for key, value in stats.items():
            result["%s_%s" % (dev, key)] = value
    for key, value in (raw.get("memory") or {}).items():
        result["memory-%s" % key] = value
    return result


class Diagnostics(_ServerScoped):
    def get(self, req, resp, inst) -> None:
        if not ctxt(req).is_admin:
            raise errors.forbidden("Policy doesn't allow os_compute_api:"
                                   "os-server-diagnostics to be performed.")
        if not inst.host or inst.vm_state in (st.BUILDING, st.ERROR):
            raise errors.conflict("Cannot get diagnostics of instance %s in vm_state %s"
                                  % (inst.uuid, inst.vm_state))
        try:
            raw = self.state.compute.get_diagnostics(ctxt(req), inst.host, inst.uuid)
        except exception.MessagingException as exc:
            raise errors.APIError(503, "The compute host %s is unavailable: %s"
                                  % (inst.host, exc)) from None
        except exception.NotFound:
            raise errors.conflict("Instance %s is not on its host" % inst.uuid) from None
        resp.media = diagnostics_v248(raw, inst) if version(req) >= (2, 48) \
            else diagnostics_legacy(raw)


class Password(_ServerScoped):
    def get(self, req, resp, inst) -> None:
        resp.media = {"password": inst.password or ""}

    def on_delete(self, req, resp, server_id: str) -> None:
        inst = get_server(ctxt(req), server_id)
        db.instance_update(inst.uuid, {"password": None})
        resp.status = falcon.HTTP_204


def add_routes(app, state: APIState, compute: str) -> None:
    add = app.add_route
    base = compute + "/servers/{server_id}"
    add(base + "/metadata", Metadata(state))
    add(base + "/metadata/{key}", MetadataItem(state))
    add(base + "/tags", Tags(state))
    add(base + "/tags/{tag}", Tag(state))
    add(base + "/ips", Ips(state))
    add(base + "/ips/{network}", IpsNetwork(state))
    add(base + "/diagnostics", Diagnostics(state))
    add(base + "/os-server-password", Password(state))

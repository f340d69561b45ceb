"""How servers and flavors look in the compute API, per microversion.

Status rule (as Nova): the vm_state gives the status, except that an
operation with a status of its own (flotilla.states: REBOOT, HARD_REBOOT,
REBUILD, ...) shows it while the vm_state is one it names (active, and for
a rebuild also stopped and error); building is BUILD, stopped SHUTOFF, and error
shows the latest fault.
"""

from __future__ import annotations

import hashlib
from typing import Any

from api.compute.zones import HostFacts
from api.state import isotime
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import volumes as vdb

_STATUS = {st.BUILDING: "BUILD", st.ACTIVE: "ACTIVE", st.STOPPED: "SHUTOFF",
           st.PAUSED: "PAUSED", st.SUSPENDED: "SUSPENDED", st.ERROR: "ERROR",
           st.DELETED: "DELETED", st.SOFT_DELETED: "SOFT_DELETED",
           st.RESIZED: "VERIFY_RESIZE"}


def _status_filters() -> dict[str, tuple[list[str], list[str | None] | None]]:
    """status query value -> (vm_states, task_states or None for any)."""
    filters: dict[str, tuple[list, list | None]] = {
        name: ([vm_state], None) for vm_state, name in _STATUS.items()}
    by_status: dict[str, tuple[list[str], list[str | None]]] = {}
    quiet: list[str | None] = [None]
    for op in st.OPERATIONS.values():
        for task in op.task_states:
            if op.status:
                vm_states, tasks = by_status.setdefault(
                    op.status, (list(op.status_vm_states), []))
                tasks.append(task)
            else:
                quiet.append(task)
    filters["ACTIVE"] = ([st.ACTIVE], quiet)
    for name, (vm_states, tasks) in by_status.items():
        filters[name] = (vm_states, tasks)
    return filters


STATUS_FILTERS = _status_filters()


def status(vm_state: str, task_state: str | None) -> str:
    return st.task_status(vm_state, task_state) or _STATUS.get(vm_state, "UNKNOWN")


def host_id(project_id: str | None, host: str | None) -> str:
    """Nova's opaque per-project host id (same host, same project: same id)."""
    if not host:
        return ""
    return hashlib.sha224(((project_id or "") + host).encode()).hexdigest()


def _link(url: str, kind: str, ident: str) -> list[dict]:
    base = url.rsplit("/v2.1", 1)[0]
    return [{"rel": "self", "href": "%s/%s/%s" % (url, kind, ident)},
            {"rel": "bookmark", "href": "%s/%s/%s" % (base, kind, ident)}]


def server_brief(inst, url: str) -> dict:
    return {"id": inst.uuid, "name": inst.name, "links": _link(url, "servers", inst.uuid)}


def embedded_flavor(snapshot: dict, version, url: str) -> dict:
    if version < (2, 47):
        flavorid = str(snapshot.get("flavorid", ""))
        return {"id": flavorid, "links": [{"rel": "bookmark", "href": "%s/flavors/%s"
                                           % (url.rsplit("/v2.1", 1)[0], flavorid)}]}
    result = {"vcpus": snapshot.get("vcpus", 0), "ram": snapshot.get("memory_mb", 0),
              "disk": snapshot.get("root_gb", 0),
              "ephemeral": snapshot.get("ephemeral_gb", 0),
              "swap": snapshot.get("swap", 0) or 0,
              "original_name": snapshot.get("name", "")}
    result["extra_specs"] = dict(snapshot.get("extra_specs") or {})
    return result


def embedded_image(image_id: str, url: str) -> dict:
    """A server's image as the server views embed it."""
    base = url.rsplit("/v2.1", 1)[0]
    return {"id": image_id, "links": [
        {"rel": "bookmark", "href": "%s/images/%s" % (base, image_id)}]}


def server_detail(inst, ctxt: RequestContext, version, url: str, hosts: HostFacts,
                  fault=None, group_ids: list[str] | None = None,
                  full: bool = True, listing: bool = False,
                  rebuild: bool = False) -> dict:
    """The full server representation (show, list detail); ``full=False``
    is Nova's short form that PUT and rebuild answer with below 2.75 (no
    zone, key, usage, extended status or attributes, volumes); rebuild's
    names the key pair from 2.54 and, in either form, the user data from
    2.57. A ``listing`` (list detail) never shows ``server_groups``, as
    Nova."""
    flavor = inst.flavor or {}
    image: Any = embedded_image(inst.image_ref, url) if inst.image_ref else ""
    task_state = inst.task_state
    server: dict[str, Any] = {
        "id": inst.uuid, "name": inst.name,
        "status": status(inst.vm_state, task_state),
        "tenant_id": inst.project_id, "user_id": inst.user_id,
        "metadata": dict(inst.metadata_ or {}),
        "hostId": host_id(inst.project_id, inst.host),
        "image": image, "flavor": embedded_flavor(flavor, version, url),
        "created": isotime(inst.created_at),
        "updated": isotime(inst.updated_at or inst.created_at),
        "addresses": {}, "accessIPv4": inst.access_ip_v4 or "",
        "accessIPv6": inst.access_ip_v6 or "",
        "links": _link(url, "servers", inst.uuid),
        "progress": 0, "OS-DCF:diskConfig": inst.disk_config or "MANUAL",
    }
    if full:
        server.update({
            "key_name": inst.key_name, "config_drive": "",
            "OS-EXT-AZ:availability_zone": hosts.zone(inst),
            "OS-EXT-STS:power_state": inst.power_state or 0,
            "OS-EXT-STS:vm_state": inst.vm_state,
            "OS-EXT-STS:task_state": task_state,
            "OS-SRV-USG:launched_at": isotime(inst.launched_at, micro=True),
            "OS-SRV-USG:terminated_at": isotime(inst.terminated_at, micro=True),
            "os-extended-volumes:volumes_attached": [
                # delete_on_termination is shown from 2.3, as Nova.
                {"id": a.volume_id, **({"delete_on_termination": bool(
                    a.delete_on_termination)} if version >= (2, 3) else {})}
                for a in vdb.attachments_of_instance(inst.uuid)],
        })
    if full and ctxt.is_admin:
        server["OS-EXT-SRV-ATTR:host"] = inst.host
        server["OS-EXT-SRV-ATTR:hypervisor_hostname"] = inst.node or inst.host
        server["OS-EXT-SRV-ATTR:instance_name"] = "instance-%08x" % (inst.id or 0)
    if full and version >= (2, 3) and ctxt.is_admin:
        server.update({"OS-EXT-SRV-ATTR:hostname": inst.hostname or inst.name,
                       "OS-EXT-SRV-ATTR:reservation_id": inst.reservation_id or "",
                       "OS-EXT-SRV-ATTR:launch_index": 0,
                       "OS-EXT-SRV-ATTR:kernel_id": "",
                       "OS-EXT-SRV-ATTR:ramdisk_id": "",
                       "OS-EXT-SRV-ATTR:root_device_name": None,
                       "OS-EXT-SRV-ATTR:user_data": inst.user_data})
    if full and version >= (2, 90):
        # Every user sees the host name from 2.90.
        server["OS-EXT-SRV-ATTR:hostname"] = inst.hostname or inst.name
    if version >= (2, 9):
        server["locked"] = bool(inst.locked)
    if full and version >= (2, 16) and ctxt.is_admin:
        server["host_status"] = hosts.status(inst.host)
    if version >= (2, 19):
        server["description"] = inst.display_description
    if version >= (2, 26):
        server["tags"] = list(inst.tags or [])
    if version >= (2, 63):
        server["trusted_image_certificates"] = None
    if version >= (2, 71) and not listing:
        server["server_groups"] = list(group_ids or [])
    if rebuild and version >= (2, 54) and not full:
        server["key_name"] = inst.key_name
    if rebuild and version >= (2, 57):
        # In its own key; never also as the extended attribute (Nova).
        server["user_data"] = inst.user_data
        server.pop("OS-EXT-SRV-ATTR:user_data", None)
    if version >= (2, 73):
        server["locked_reason"] = inst.locked_reason
    if version >= (2, 96):
        server["pinned_availability_zone"] = inst.availability_zone
    if version >= (2, 100):
        server["scheduler_hints"] = (
            {"group": group_ids[0]} if group_ids else {})
    if fault is not None and inst.vm_state in (st.ERROR, st.DELETED):
        server["fault"] = {"code": fault.code, "message": fault.message,
                           "created": isotime(fault.created_at)}
        if ctxt.is_admin and fault.details:
            server["fault"]["details"] = fault.details
    return server


def flavor_view(flavor, version, url: str, detail: bool = True) -> dict:
    result: dict[str, Any] = {"id": flavor.flavorid, "name": flavor.name,
                              "links": _link(url, "flavors", flavor.flavorid)}
    if version >= (2, 55):
        result["description"] = flavor.description
    if not detail:
        return result
    result.update({
        "ram": flavor.memory_mb, "vcpus": flavor.vcpus, "disk": flavor.root_gb,
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": flavor.disabled,
        "os-flavor-access:is_public": flavor.is_public,
        "swap": flavor.swap or (0 if version >= (2, 75) else ""),
        "rxtx_factor": 1.0,
    })
    if version >= (2, 61):
        result["extra_specs"] = dict(flavor.extra_specs or {})
    return result


def flavor_snapshot(flavor) -> dict:
    """What an instance keeps of its flavor (editing the flavor later never
    changes a running server)."""
    return {"flavorid": flavor.flavorid, "name": flavor.name,
            "memory_mb": flavor.memory_mb, "vcpus": flavor.vcpus,
            "root_gb": flavor.root_gb, "ephemeral_gb": flavor.ephemeral_gb,
            "swap": flavor.swap or 0, "extra_specs": dict(flavor.extra_specs or {})}

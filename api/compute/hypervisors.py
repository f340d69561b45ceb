"""os-hypervisors (admin): the compute nodes, their state and usage.

``state`` is up/down from the compute service's heartbeat, ``status``
enabled/disabled from the service. From 2.88 the resource figures are no
longer part of the representation (as in Nova). ``cpu_info`` is a JSON
string below 2.28 and an object from 2.28. ``{id}/uptime`` (up to 2.87;
from 2.88 ``uptime`` is in the hypervisor) asks the host's agent for its
uptime(1) line; ``{pattern}/search`` and ``{pattern}/servers`` match host
names (up to 2.52; later the list's ``hypervisor_hostname_pattern`` and
``with_servers`` do it).
"""

from __future__ import annotations

import json
import logging

from api import errors, validation
from api.state import APIState, ctxt, version
from flotilla import binaries, exception
from flotilla.db import api as db

LOG = logging.getLogger(__name__)


def _services() -> dict[str, object]:
    return {s.host: s for s in db.service_get_all(binary=binaries.COMPUTE)}


def view(node, service, conf, ver, detail: bool) -> dict:
    up = service is not None and db.service_is_up(service, conf.service_down_time)
    result = {"id": str(node.id) if ver >= (2, 53) else node.id,
              "hypervisor_hostname": node.hypervisor_hostname or node.host,
              "state": "up" if up else "down",
              "status": "disabled" if service is not None and service.disabled
              else "enabled"}
    if not detail:
        return result
    result.update({
        "hypervisor_type": node.hypervisor_type or "QEMU",
        "hypervisor_version": node.hypervisor_version or 0,
        "host_ip": "127.0.0.1",
        "service": {"host": node.host, "id": getattr(service, "id", None),
                    "disabled_reason": getattr(service, "disabled_reason", None)},
    })
    if ver < (2, 88):
        result.update({
            "vcpus": node.vcpus, "vcpus_used": node.vcpus_used,
            "memory_mb": node.memory_mb, "memory_mb_used": node.memory_mb_used,
            "local_gb": node.disk_gb, "local_gb_used": node.disk_gb_used,
            "free_ram_mb": node.memory_mb - node.memory_mb_used,
            "free_disk_gb": node.disk_gb - node.disk_gb_used,
            "running_vms": node.running_vms, "current_workload": 0,
            "disk_available_least": node.disk_gb - node.disk_gb_used,
        })
        info = {"arch": node.cpu_arch or "", "vendor": "", "model": "",
                "topology": {"cells": 1, "sockets": 1, "cores": node.vcpus, "threads": 1},
                "features": []}
        result["cpu_info"] = info if ver >= (2, 28) else json.dumps(info)
    return result


def uptime(state: APIState, req, node) -> str | None:
    """The node's host's uptime line; None when its agent cannot say (a
    host whose service is down is not asked: the call would only time
    out)."""
    service = _services().get(node.host)
    if service is None or not db.service_is_up(service, state.conf.service_down_time):
        return None
    try:
        return state.compute.get_host_uptime(ctxt(req), node.host)
    except exception.FlotillaException as exc:
        LOG.info("No uptime from %s: %s", node.host, exc)
        return None


def servers_of(host: str) -> list[dict]:
    return [{"name": "instance-%08x" % inst.id, "uuid": inst.uuid}
            for inst in db.instance_get_all_by_host(host)]


def _matching(pattern: str) -> list:
    return [n for n in db.compute_node_get_all()
            if pattern in (n.hypervisor_hostname or n.host)]


class Hypervisors:
    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    def on_get(self, req, resp) -> None:
        services = _services()
        pattern = req.get_param("hypervisor_hostname_pattern")
        nodes = [n for n in db.compute_node_get_all()
                 if not pattern or pattern in (n.hypervisor_hostname or n.host)]
        limit = validation.query_int(req, "limit") or self.state.conf.api.max_limit
        ver = version(req)
        with_servers = ver >= (2, 53) and validation.query_bool(req, "with_servers")
        result = []
        for node in nodes[:limit]:
            entry = view(node, services.get(node.host), self.state.conf, ver, self.detail)
            if self.detail and ver >= (2, 88):
                entry["uptime"] = uptime(self.state, req, node)
            if with_servers:
                entry["servers"] = servers_of(node.host)
            result.append(entry)
        if pattern and not result and ver >= (2, 53):
            raise errors.not_found("No hypervisor matching '%s' could be found."
                                   % pattern[:64])
        resp.media = {"hypervisors": result}


class Hypervisor:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, hypervisor_id: str) -> None:
        node = find(hypervisor_id)
        ver = version(req)
        result = view(node, _services().get(node.host), self.state.conf, ver, True)
        if ver >= (2, 88):
            result["uptime"] = uptime(self.state, req, node)
        if ver >= (2, 53) and validation.query_bool(req, "with_servers"):
            result["servers"] = servers_of(node.host)
        resp.media = {"hypervisor": result}


def find(hypervisor_id: str):
    for node in db.compute_node_get_all():
        if str(node.id) == hypervisor_id:
            return node
    raise errors.not_found("Hypervisor with ID %s could not be found."
                           % hypervisor_id[:64])


class Uptime:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, hypervisor_id: str) -> None:
        if version(req) >= (2, 88):
            raise errors.not_found("The os-hypervisors/{id}/uptime API was removed in "
                                   "microversion 2.88.")
        node = find(hypervisor_id)
        result = view(node, _services().get(node.host), self.state.conf, version(req),
                      False)
        result["uptime"] = uptime(self.state, req, node)
        if result["uptime"] is None:
            raise errors.APIError(501, "The host %s cannot report its uptime." % node.host)
        resp.media = {"hypervisor": result}


class Search:
    """GET /os-hypervisors/{pattern}/search and /{pattern}/servers."""

    def __init__(self, state: APIState, servers: bool = False) -> None:
        self.state = state
        self.servers = servers

    def on_get(self, req, resp, hypervisor_id: str) -> None:
        pattern = hypervisor_id     # the route's one name for this path level
        ver = version(req)
        if ver >= (2, 53):
            raise errors.not_found("Removed in microversion 2.53: use "
                                   "hypervisor_hostname_pattern.")
        nodes = _matching(pattern)
        if not nodes:
            raise errors.not_found("No hypervisor matching '%s' could be found."
                                   % pattern[:64])
        services = _services()
        result = []
        for node in nodes:
            entry = view(node, services.get(node.host), self.state.conf, ver, False)
            if self.servers:
                found = servers_of(node.host)
                if found:
                    entry["servers"] = found
            result.append(entry)
        resp.media = {"hypervisors": result}


class Statistics:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        if version(req) >= (2, 88):
            raise errors.not_found("The os-hypervisors/statistics API was removed "
                                   "in microversion 2.88.")
        nodes = db.compute_node_get_all()
        total = {k: sum(getattr(n, a) for n in nodes) for k, a in (
            ("vcpus", "vcpus"), ("vcpus_used", "vcpus_used"),
            ("memory_mb", "memory_mb"), ("memory_mb_used", "memory_mb_used"),
            ("local_gb", "disk_gb"), ("local_gb_used", "disk_gb_used"),
            ("running_vms", "running_vms"))}
        total.update(count=len(nodes), current_workload=0,
                     free_ram_mb=total["memory_mb"] - total["memory_mb_used"],
                     free_disk_gb=total["local_gb"] - total["local_gb_used"],
                     disk_available_least=total["local_gb"] - total["local_gb_used"])
        resp.media = {"hypervisor_statistics": total}

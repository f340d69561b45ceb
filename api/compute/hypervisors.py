"""os-hypervisors (admin): the compute nodes, their state and usage.

``state`` is up/down from the compute service's heartbeat, ``status``
enabled/disabled from the service. From 2.88 the resource figures are no
longer part of the representation (as in Nova).
"""

from __future__ import annotations

from api import errors, validation
from api.state import APIState, version
from flotilla import binaries
from flotilla.db import api as db


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
            "cpu_info": "{}",
        })
    else:
        result["uptime"] = None
    return result


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
        resp.media = {"hypervisors": [
            view(n, services.get(n.host), self.state.conf, ver, self.detail)
            for n in nodes[:limit]]}


class Hypervisor:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, hypervisor_id: str) -> None:
        for node in db.compute_node_get_all():
            if str(node.id) == hypervisor_id:
                resp.media = {"hypervisor": view(node, _services().get(node.host),
                                                 self.state.conf, version(req), True)}
                return
        raise errors.not_found("Hypervisor with ID %s could not be found."
                               % hypervisor_id[:64])


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

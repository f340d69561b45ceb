"""os-hosts (admin, up to 2.42 as Nova): the hosts of the services, a
compute host's resources, enabling and disabling its compute service.

Rules (Nova's with the libvirt driver):

* ``GET /os-hosts`` lists every service's host with its service kind and
  zone (``?zone=`` filters); ``GET /os-hosts/{host}`` shows a compute
  host's total, used now and used max resources and each project's use;
  a host without a compute service is 404;
* ``PUT`` takes ``status`` (enable/disable: the compute service) and
  ``maintenance_mode``; maintenance mode and the power actions
  (startup/shutdown/reboot) are not done by this driver: 501, as Nova's
  libvirt driver answers;
* from 2.43 the API is gone: 404.
"""

from __future__ import annotations

from api import errors, validation
from api.compute import zones
from api.state import APIState, version
from flotilla import binaries, exception
from flotilla.db import api as db

UPDATE = {"type": "object", "properties": {
    "status": {"type": "string", "enum": ["enable", "disable", "Enable", "Disable",
                                          "ENABLE", "DISABLE"]},
    "maintenance_mode": {"type": "string", "enum": ["enable", "disable", "Enable",
                                                    "Disable", "ENABLE", "DISABLE"]}},
    "minProperties": 1, "additionalProperties": False}

_KIND = {binaries.COMPUTE: "compute", binaries.CONDUCTOR: "conductor",
         binaries.SCHEDULER: "scheduler"}


def _check_version(req) -> None:
    if version(req) >= (2, 43):
        raise errors.not_found("The os-hosts API was removed in microversion 2.43.")


def _compute_host(host: str):
    """The compute node of ``host``, or 404."""
    services = [s for s in db.service_get_all(binary=binaries.COMPUTE) if s.host == host]
    if not services:
        raise errors.not_found("Compute host %s could not be found." % host[:64])
    try:
        return db.compute_node_get(host)
    except exception.NotFound:
        raise errors.not_found("Compute host %s could not be found." % host[:64]) from None


class Hosts:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        _check_version(req)
        conf = self.state.conf
        host_zones = zones.host_zones(conf)
        wanted = req.get_param("zone")
        hosts = []
        for service in db.service_get_all():
            if service.binary not in _KIND:
                continue          # the volume service is Block Storage's, as in os-services
            zone = zones.service_zone(conf, service, host_zones)
            if wanted and zone != wanted:
                continue
            hosts.append({"host_name": service.host,
                          "service": _KIND[service.binary],
                          "zone": zone})
        resp.media = {"hosts": hosts}


def _resource(host: str, project: str, cpu: int, memory_mb: int, disk_gb: int) -> dict:
    return {"resource": {"host": host, "project": project, "cpu": cpu,
                         "memory_mb": memory_mb, "disk_gb": disk_gb}}


class Host:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, host: str) -> None:
        _check_version(req)
        node = _compute_host(host)
        instances = db.instance_get_all_by_host(host)
        per_project: dict[str, list[int]] = {}
        for inst in instances:
            used = per_project.setdefault(inst.project_id or "", [0, 0, 0])
            used[0] += inst.vcpus
            used[1] += inst.memory_mb
            used[2] += inst.root_gb + inst.ephemeral_gb
        used_max = [sum(u[i] for u in per_project.values()) for i in range(3)]
        resp.media = {"host": [
            _resource(host, "(total)", node.vcpus, node.memory_mb, node.disk_gb),
            _resource(host, "(used_now)", node.vcpus_used, node.memory_mb_used,
                      node.disk_gb_used),
            _resource(host, "(used_max)", *used_max),
        ] + [_resource(host, project, *used) for project, used in sorted(per_project.items())]}

    def on_put(self, req, resp, host: str) -> None:
        _check_version(req)
        body = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), UPDATE)
        _compute_host(host)
        if "maintenance_mode" in body:
            raise errors.APIError(501, "Maintenance mode is not supported by the "
                                  "libvirt driver.")
        disabled = body["status"].lower() == "disable"
        db.service_set_disabled(host, binaries.COMPUTE, disabled,
                                "disabled through os-hosts" if disabled else None)
        resp.media = {"host": host, "status": "disabled" if disabled else "enabled"}


class HostPowerAction:
    """GET /os-hosts/{host}/startup|shutdown|reboot."""

    def __init__(self, state: APIState, action: str) -> None:
        self.state = state
        self.action = action

    def on_get(self, req, resp, host: str) -> None:
        _check_version(req)
        _compute_host(host)
        raise errors.APIError(501, "Host power actions (%s) are not supported by the "
                              "libvirt driver." % self.action)

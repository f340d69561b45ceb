"""Availability zones, derived from the compute nodes and services.

A compute host belongs to the zone an aggregate puts it in (os-aggregates),
else the zone its node reports, else ``[api] default_availability_zone``; a zone is available while at least one of its
compute services is up and enabled. Other services are in zone
``internal``, as in Nova.
"""

from __future__ import annotations

from api.state import APIState, isotime
from flotilla import binaries
from flotilla.db import aggregates as agg_db
from flotilla.db import api as db

INTERNAL = "internal"


def host_zones(conf) -> dict[str, str]:
    """compute host -> its zone."""
    default = conf.api.default_availability_zone
    by_aggregate = agg_db.host_zones()
    return {node.host: by_aggregate.get(node.host) or node.availability_zone or default
            for node in db.compute_node_get_all()}


def zone_names(conf) -> set[str]:
    return set(host_zones(conf).values()) | {conf.api.default_availability_zone}


def service_zone(conf, service, zones: dict[str, str]) -> str:
    if service.binary == binaries.COMPUTE:
        return zones.get(service.host, conf.api.default_availability_zone)
    return INTERNAL


class HostFacts:
    """What a server's view says of the host it is on, read once per
    request: its zone (every user sees it, as Nova's
    ``OS-EXT-AZ:availability_zone``: the host's zone once the server has
    one, else the zone it asked for) and, for admins from 2.16, its compute
    service's status (``host_status``, Nova's rules)."""

    def __init__(self, conf) -> None:
        self.conf = conf
        self._zones: dict[str, str] | None = None
        self._services: dict | None = None

    def zone(self, inst) -> str:
        if not inst.host:
            return inst.availability_zone or ""
        if self._zones is None:
            self._zones = host_zones(self.conf)
        return self._zones.get(inst.host, self.conf.api.default_availability_zone)

    def status(self, host: str | None) -> str:
        """UP, DOWN (forced down), MAINTENANCE (disabled), UNKNOWN (no
        heartbeat lately), or "" when there is no host or no such service."""
        if not host:
            return ""
        if self._services is None:
            self._services = {s.host: s for s in db.service_get_all(binary=binaries.COMPUTE)}
        service = self._services.get(host)
        if service is None:
            return ""
        if service.forced_down:
            return "DOWN"
        if service.disabled:
            return "MAINTENANCE"
        return "UP" if db.service_is_up(service, self.conf.service_down_time) \
            else "UNKNOWN"


class AvailabilityZones:
    """GET /os-availability-zone and (admin) /os-availability-zone/detail."""

    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    def on_get(self, req, resp) -> None:
        conf = self.state.conf
        zones = host_zones(conf)
        result: dict[str, dict] = {}
        for service in db.service_get_all():
            zone = service_zone(conf, service, zones)
            if zone == INTERNAL and not self.detail:
                continue
            up = db.service_is_up(service, conf.service_down_time)
            entry = result.setdefault(zone, {"available": False, "hosts": {}})
            entry["available"] = entry["available"] or (up and not service.disabled)
            entry["hosts"].setdefault(service.host, {})[binaries.api_name(service.binary)] = {
                "available": up, "active": not service.disabled,
                "updated_at": isotime(service.last_seen_at, micro=True)}
        for zone in set(zones.values()):
            result.setdefault(zone, {"available": False, "hosts": {}})
        resp.media = {"availabilityZoneInfo": [
            {"zoneName": zone, "zoneState": {"available": entry["available"]},
             "hosts": entry["hosts"] if self.detail else None}
            for zone, entry in sorted(result.items())]}

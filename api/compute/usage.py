"""os-simple-tenant-usage and os-instance_usage_audit_log.

Usage (Nova's rules): over ``start``..``end`` (default: the last day up
to now), the servers launched before ``end`` and not terminated before
``start``, deleted ones included; each counts the hours it ran inside
the period, and its vCPUs, MiB of RAM and GiB of disk times those hours.
The list (admin) is one entry per project, ``detailed=1`` adds each
server; ``{project}`` is readable by that project's readers and admins.
From 2.40 lists page with ``limit`` and ``marker`` (over servers).

Audit log: Nova's periodic usage audit writes a task log per compute host;
Flotilla runs no such audit, so every compute host is reported as not run
for the period (0 instances, 0 errors), which is what Nova reports before
its first audit.
"""

from __future__ import annotations

import datetime

from api import errors, validation
from api.state import APIState, ctxt, isotime, version
from flotilla import binaries
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db.types import utcnow

_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
            "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


def parse_time(value: str | None, name: str) -> datetime.datetime | None:
    if value is None:
        return None
    text = value.strip().rstrip("Z")
    if len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        text = text[:-6]
    for fmt in _FORMATS:
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    raise errors.bad_request("Invalid %s value %r: not a timestamp" % (name, value[:64]))


def _period(req) -> tuple[datetime.datetime, datetime.datetime]:
    now = utcnow()
    end = parse_time(req.get_param("end"), "end") or now
    start = parse_time(req.get_param("start"), "start") or end - datetime.timedelta(days=1)
    if start > end:
        raise errors.bad_request("Invalid start time: start is after end.")
    return start, min(end, now) if end > now else end


def _server_usage(inst, start, end, now) -> dict | None:
    launched = inst.launched_at
    if launched is None or launched >= end:
        return None
    terminated = inst.terminated_at or (inst.deleted_at if inst.deleted else None)
    if terminated is not None and terminated < start:
        return None
    begin = max(launched, start)
    stop = min(terminated or now, end)
    hours = max((stop - begin).total_seconds(), 0) / 3600.0
    flavor = inst.flavor or {}
    state = "terminated" if inst.deleted or inst.vm_state == st.DELETED else inst.vm_state
    return {"instance_id": inst.uuid, "name": inst.name, "hours": hours,
            "memory_mb": inst.memory_mb, "local_gb": inst.root_gb + inst.ephemeral_gb,
            "vcpus": inst.vcpus, "tenant_id": inst.project_id,
            "flavor": flavor.get("name", ""), "started_at": isotime(launched, micro=True),
            "ended_at": isotime(terminated, micro=True), "state": state,
            "uptime": int((stop - launched).total_seconds())}


def _usages(project: str | None, start, end) -> dict[str, list[dict]]:
    now = utcnow()
    result: dict[str, list[dict]] = {}
    for inst in db.instance_get_all(project_id=project, read_deleted=True):
        usage = _server_usage(inst, start, end, now)
        if usage is not None:
            result.setdefault(inst.project_id or "", []).append(usage)
    return result


def _summary(project: str, servers: list[dict], start, end, detailed: bool) -> dict:
    result = {"tenant_id": project,
              "total_local_gb_usage": sum(s["local_gb"] * s["hours"] for s in servers),
              "total_vcpus_usage": sum(s["vcpus"] * s["hours"] for s in servers),
              "total_memory_mb_usage": sum(s["memory_mb"] * s["hours"] for s in servers),
              "total_hours": sum(s["hours"] for s in servers),
              "start": isotime(start, micro=True), "stop": isotime(end, micro=True)}
    if detailed:
        result["server_usages"] = servers
    return result


def _page(req, state, servers: list[dict]) -> list[dict]:
    if version(req) < (2, 40):
        return servers
    marker = req.get_param("marker")
    if marker is not None:
        ids = [s["instance_id"] for s in servers]
        if marker not in ids:
            raise errors.bad_request("marker [%s] not found" % marker[:64])
        servers = servers[ids.index(marker) + 1:]
    limit = validation.query_int(req, "limit", 0)
    return servers[:state.conf.api.max_limit if limit is None else limit]


class TenantUsages:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        if req.env.get("PATH_INFO", "").endswith("/"):
            # os-simple-tenant-usage/ names a project with an empty id.
            raise errors.not_found("No project has an empty id.")
        if not ctxt(req).is_admin:
            raise errors.forbidden("Policy doesn't allow os_compute_api:"
                                   "os-simple-tenant-usage:list to be performed.")
        start, end = _period(req)
        detailed = validation.query_bool(req, "detailed") or False
        usages = _usages(None, start, end)
        flat = _page(req, self.state, [s for p in sorted(usages) for s in usages[p]])
        kept: dict[str, list[dict]] = {}
        for server in flat:
            kept.setdefault(server["tenant_id"] or "", []).append(server)
        resp.media = {"tenant_usages": [_summary(p, servers, start, end, detailed)
                                        for p, servers in kept.items()]}


class TenantUsage:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, tenant_id: str) -> None:
        ctx = ctxt(req)
        if not ctx.is_admin and ctx.project_id != tenant_id:
            raise errors.forbidden("Policy doesn't allow os_compute_api:"
                                   "os-simple-tenant-usage:show to be performed.")
        start, end = _period(req)
        servers = _page(req, self.state, _usages(tenant_id, start, end).get(tenant_id, []))
        resp.media = {"tenant_usage": _summary(tenant_id, servers, start, end, True)
                      if servers else {}}


def _audit(before: datetime.datetime) -> dict:
    # Nova's period: the month before ``before``.
    end = before.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (end - datetime.timedelta(days=1)).replace(day=1)
    hosts = sorted({s.host for s in db.service_get_all(binary=binaries.COMPUTE)})
    return {"hosts_not_run": hosts, "log": {}, "num_hosts": len(hosts),
            "num_hosts_done": 0, "num_hosts_not_run": len(hosts), "num_hosts_running": 0,
            "overall_status": "0 of %d hosts done. 0 errors." % len(hosts),
            "period_beginning": str(start.replace(tzinfo=None)),
            "period_ending": str(end.replace(tzinfo=None)), "total_errors": 0,
            "total_instances": 0}


class AuditLogs:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"instance_usage_audit_logs": _audit(utcnow())}


class AuditLog:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, before_timestamp: str) -> None:
        resp.media = {"instance_usage_audit_log": _audit(
            parse_time(before_timestamp, "before_timestamp"))}

"""``flotilla host drain HOST``: the drain of flotilla.drain through the
public compute API (admin credentials), so it runs wherever the openstack
tools do. Exit status 1 when a guest could not be moved.

What it sends: ``PUT /os-services/{id}`` (disable with a reason, 2.53),
``GET /servers/detail?all_tenants=1&host=HOST``, ``os-migrateLive`` with
no host (the scheduler chooses) for a running or paused server, ``migrate``
then ``confirmResize`` for a stopped one, ``GET /servers/{id}`` (before
each move, and for its progress with ``GET /servers/{id}/migrations``,
``GET /os-migrations`` for a cold one), ``GET
/os-migrations?source_compute=HOST&status=finished`` for the moves off the
host that wait in VERIFY_RESIZE, and the failed migration's instance
action (2.84: its events' details) for the reason.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from flotilla import binaries
from flotilla.cli import resources
from flotilla.db.instances import MIGRATION_ENDED
from flotilla.drain import Drainer, DrainRefused, Guest, Outcome, format_progress

MICROVERSION = "2.84"
DEFAULT_MAX_CONCURRENT = 2


class DrainFailed(Exception):
    """Some guests are still on the host (the reasons were printed)."""


def _guest(server: dict) -> Guest:
    return Guest(id=server["id"], name=server.get("name") or server["id"],
                 status=server["status"], host=server.get("OS-EXT-SRV-ATTR:host"),
                 task_state=server.get("OS-EXT-STS:task_state"))


def _message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:500] or "HTTP %d" % response.status_code
    if isinstance(body, dict) and len(body) == 1:
        inner = next(iter(body.values()))
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(body)[:500]


class APIBackend:
    """A drain's view of the cloud through the compute API."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.compute = conn.compute

    def _get(self, path: str) -> dict:
        response = self.compute.get(path, microversion=MICROVERSION, raise_exc=False)
        if response.status_code >= 400:
            raise RuntimeError("GET %s: %s" % (path, _message(response)))
        return response.json()

    def disable(self, host: str, reason: str) -> None:
        service = resources._find_service(self.conn, host, binaries.COMPUTE)
        self.compute.disable_service(service, host, binaries.COMPUTE, disabled_reason=reason)

    def guests(self, host: str) -> list[Guest]:
        body = self._get("/servers/detail?all_tenants=1&host=%s" % host)
        return [_guest(s) for s in body.get("servers", [])
                if s.get("OS-EXT-SRV-ATTR:host") == host]

    def guest(self, guest_id: str) -> Guest | None:
        response = self.compute.get("/servers/%s" % guest_id, microversion=MICROVERSION,
                                    raise_exc=False)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RuntimeError("GET /servers/%s: %s" % (guest_id, _message(response)))
        return _guest(response.json()["server"])

    def awaiting_confirmation(self, host: str) -> list[Guest]:
        found: dict[str, Guest] = {}
        path = "/os-migrations?source_compute=%s&status=finished" % host
        page = self._get(path)
        while True:
            for migration in page.get("migrations", []):
                kind = migration.get("migration_type")
                uuid = migration.get("instance_uuid")
                if kind not in ("migration", "resize") or uuid in found:
                    continue
                guest = self.guest(uuid)
                if guest is not None:
                    found[uuid] = dataclasses.replace(guest, awaiting=kind)
            if not page.get("migrations_links") or not page.get("migrations"):
                return list(found.values())
            page = self._get(path + "&marker=%s" % page["migrations"][-1]["uuid"])

    def _action(self, guest: Guest, body: dict) -> None:
        response = self.compute.post("/servers/%s/action" % guest.id, json=body,
                                     microversion=MICROVERSION, raise_exc=False)
        if response.status_code >= 400:
            raise DrainRefused(_message(response))

    def live_migrate(self, guest: Guest) -> None:
        self._action(guest, {"os-migrateLive": {"host": None, "block_migration": "auto"}})

    def cold_migrate(self, guest: Guest) -> None:
        self._action(guest, {"migrate": None})

    def confirm_migration(self, guest: Guest) -> None:
        self._action(guest, {"confirmResize": None})

    def outcome(self, guest: Guest, host: str) -> Outcome:
        server = self._get("/servers/%s" % guest.id)["server"]
        task = server.get("OS-EXT-STS:task_state")
        cold = guest.cold
        if server.get("status") == "VERIFY_RESIZE" and not task:
            return Outcome(done=False, verify=True)
        if task:
            if cold:
                return Outcome(done=False, progress=task)
            migrations = self._get("/servers/%s/migrations" % guest.id).get("migrations", [])
            return Outcome(done=False,
                           progress=format_progress(migrations[0]) if migrations else None)
        now = server.get("OS-EXT-SRV-ATTR:host")
        if now != host:
            return Outcome(done=True, moved=True)
        # The flows clear the task before they end the migration record.
        if cold:
            newest = self._get("/os-migrations?instance_uuid=%s&migration_type=migration"
                               % guest.id).get("migrations", [])[:1]
            if newest and newest[0].get("status") not in MIGRATION_ENDED:
                return Outcome(done=False)
        elif self._get("/servers/%s/migrations" % guest.id).get("migrations"):
            return Outcome(done=False)
        return Outcome(done=True, reason=self._reason(
            guest.id, "migrate" if cold else "live-migration"))

    def _reason(self, server_id: str, action_name: str) -> str:
        """The failed migration's reason, from its instance action."""
        actions = self._get("/servers/%s/os-instance-actions" % server_id)
        for action in actions.get("instanceActions", []):
            if action.get("action") != action_name:
                continue
            detail = self._get("/servers/%s/os-instance-actions/%s"
                               % (server_id, action["request_id"]))["instanceAction"]
            for event in detail.get("events", []):
                if event.get("result") == "Error":
                    why = event.get("details") or (event.get("traceback") or "") \
                        .strip().splitlines()[-1:]
                    if isinstance(why, list):
                        why = why[0] if why else ""
                    return "%s failed%s" % (event.get("event"), ": %s" % why if why else "")
            return "the migration ended in %s" % (action.get("message") or "error")
        return "the migration ended and the server is still on the host"


def host_drain(conn, args) -> None:
    drainer = Drainer(APIBackend(conn), max_concurrent=args.max_concurrent,
                      poll_interval=args.poll_interval, out=sys.stdout)
    result = drainer.drain(args.host, args.reason)
    if not result.ok:
        raise DrainFailed("%d guest(s) could not be moved off %s: %s" % (
            len(result.failed), args.host,
            "; ".join("%s: %s" % (g.name, why) for g, why in result.failed.values())))


def register(host_subparsers) -> None:
    """Add ``drain`` to the ``host`` command's actions."""
    p = host_subparsers.add_parser(
        "drain", help="Disable a host and migrate every guest off it (admin): live "
        "for running ones, cold (then confirmed) for stopped ones")
    p.add_argument("host")
    p.add_argument("--reason", default="drained", help="Why (shown in service list)")
    p.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT,
                   help="Migrations at once (default %d)" % DEFAULT_MAX_CONCURRENT)
    p.set_defaults(func=host_drain)

"""GET /extensions and /extensions/{alias}: Nova's legacy extension list.

Nova keeps this deprecated API for old clients: a fixed list of the v2
extensions its v2.1 API covers. Flotilla lists the ones whose resources it
serves, no others (so a client asking for, say, os-consoles learns it is
absent: 404).
"""

from __future__ import annotations

from api import errors
from api.state import APIState

UPDATED = "2014-12-03T00:00:00Z"

# (name, alias, description)
EXTENSIONS = (
    ("AdminActions", "os-admin-actions", "Enable admin-only server actions."),
    ("Aggregates", "os-aggregates", "Admin-only aggregate administration."),
    ("AvailabilityZone", "os-availability-zone", "1. Add availability_zone to the "
     "Create Server API. 2. Add availability zones describing."),
    ("ConsoleOutput", "os-console-output", "Console log output support."),
    ("DiskConfig", "OS-DCF", "Disk Management Extension."),
    ("ExtendedAvailabilityZone", "OS-EXT-AZ", "Extended Availability Zone support."),
    ("ExtendedServerAttributes", "OS-EXT-SRV-ATTR", "Extended Server Attributes support."),
    ("ExtendedStatus", "OS-EXT-STS", "Extended Status support."),
    ("FlavorExtraSpecs", "os-flavor-extra-specs", "Flavors extra specs support."),
    ("FlavorManage", "os-flavor-manage", "Flavor create/delete API support."),
    ("Hosts", "os-hosts", "Admin-only host administration."),
    ("Hypervisors", "os-hypervisors", "Admin-only hypervisor administration."),
    ("InstanceActions", "os-instance-actions", "View a log of actions and events "
     "taken on an instance."),
    ("InstanceUsageAuditLog", "os-instance-usage-audit-log", "Admin-only Task Log "
     "Monitoring."),
    ("Keypairs", "os-keypairs", "Keypair Support."),
    ("Limits", "limits", "Limits support."),
    ("Lock", "os-lock-server", "Enable lock/unlock server actions."),
    ("PauseServer", "os-pause-server", "Enable pause/unpause server actions."),
    ("QuotaClasses", "os-quota-class-sets", "Quota classes management support."),
    ("Quotas", "os-quota-sets", "Quotas management support."),
    ("ServerDiagnostics", "os-server-diagnostics", "Allow Admins to view server "
     "diagnostics through server action."),
    ("ServerGroups", "os-server-groups", "Server group support."),
    ("ServerPassword", "os-server-password", "Server password support."),
    ("ServerStartStop", "os-server-start-stop", "Start/Stop instance compute API "
     "support."),
    ("Services", "os-services", "Services support."),
    ("SimpleTenantUsage", "os-simple-tenant-usage", "Simple tenant usage extension."),
    ("SuspendServer", "os-suspend-server", "Enable suspend/resume server actions."),
)


def _view(name: str, alias: str, description: str) -> dict:
    return {"name": name, "alias": alias, "description": description,
            "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
            "updated": UPDATED, "links": []}


class Extensions:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"extensions": [_view(*e) for e in EXTENSIONS]}


class Extension:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, alias: str) -> None:
        for extension in EXTENSIONS:
            if extension[1] == alias:
                resp.media = {"extension": _view(*extension)}
                return
        raise errors.not_found("Extension %s could not be found." % alias[:64])

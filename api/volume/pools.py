"""``GET /volume/v3/scheduler-stats/get_pools`` (admin; Cinder's request
behind ``openstack volume backend pool list [--long]``, see
tests/integration/e2e/test_volume_pools.py): each volume host's pool as its last capacity
report shows it (flotilla.db.volume_capacity), in Cinder's form: the name
``<host>@<backend>#<pool>`` and, with ``detail=true``, its capabilities -
total and free GiB as the backend reported them, the GiB provisioned there
(volumes and snapshots, counted now; Cinder's allocated and provisioned
capacity), the over-subscription ratio placement applies, when it reported."""

from __future__ import annotations

from api import policy, validation
from api.state import APIState, isotime
from flotilla.db import volume_capacity as capdb

GIB = 1024 ** 3


def _name(conf, host: str) -> str:
    return "%s@%s#%s" % (host, conf.volume.backend, conf.volume.pool_name)


class Pools:
    policy_rules = {"GET": policy.ADMIN}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        conf = self.state.conf
        reports = capdb.capacity_get_all()
        provisioned = capdb.provisioned_gb(list(reports))
        detail = validation.to_bool(req.get_param("detail") or "false")
        pools = []
        for host in sorted(reports):
            report = reports[host]
            pool = {"name": _name(conf, host)}
            if detail:
                gb = provisioned.get(host, 0)
                pool["capabilities"] = {
                    "pool_name": conf.volume.pool_name,
                    "volume_backend_name": conf.volume.backend,
                    "storage_protocol": "nbd", "vendor_name": "Flotilla",
                    "driver_version": "1.0",
                    "total_capacity_gb": round(report.total_bytes / GIB, 2),
                    "free_capacity_gb": round(report.free_bytes / GIB, 2),
                    "allocated_capacity_gb": gb, "provisioned_capacity_gb": gb,
                    "max_over_subscription_ratio":
                        conf.volume.max_over_subscription_ratio,
                    "reserved_percentage": 0, "thin_provisioning_support": True,
                    "thick_provisioning_support": False,
                    "updated": isotime(report.reported_at)}
            pools.append(pool)
        resp.media = {"pools": pools}

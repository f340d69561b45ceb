"""RPC version caps from ``[upgrade_levels]`` (rolling upgrades).

Rules:

* ``[upgrade_levels] <service>`` unset: no cap; ``X.Y``: that cap;
  ``auto``: the lowest RPC API version the running (up) services of that
  kind reported in their heartbeats, re-read at most every
  :data:`AUTO_REFRESH` seconds, so a finished upgrade lifts the cap
  without a restart.
* A service that reports no version runs a release from before versions
  were reported: it counts as :data:`UNREPORTED` for its kind.
* ``auto`` needs the database. A daemon without database access (a
  compute agent) treats ``auto`` as no cap: the services it calls
  (conductor) are upgraded first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from oslo_config import cfg

from flotilla import binaries
from flotilla.rpc import versioning

AUTO_REFRESH = 60.0

BINARY = {"compute": binaries.COMPUTE, "conductor": binaries.CONDUCTOR,
          "scheduler": binaries.SCHEDULER, "volume": binaries.VOLUME}
# The version each kind spoke before services reported one.
UNREPORTED = {"compute": "1.0", "conductor": "1.1", "scheduler": "1.0", "volume": "1.0"}

VersionCap = str | Callable[[], str | None] | None


def version_cap(conf: cfg.ConfigOpts, service: str, has_database: bool = True) -> VersionCap:
    """The ``version_cap`` for an RPC client of ``service`` (compute,
    conductor, scheduler, volume): a string, None, or for ``auto`` a
    callable the client evaluates before each message."""
    level = getattr(conf.upgrade_levels, service)
    if level != "auto":
        return level
    if not has_database:
        return None
    return _AutoCap(service, conf.service_down_time)


class _AutoCap:
    def __init__(self, service: str, down_time: int) -> None:
        self.service = service
        self.down_time = down_time
        self._lock = threading.Lock()
        self._value: str | None = None
        self._read_at = -AUTO_REFRESH

    def __call__(self) -> str | None:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= AUTO_REFRESH:
                self._value = minimum_version(self.service, self.down_time)
                self._read_at = now
            return self._value

    def __repr__(self) -> str:
        return "auto(%s)" % self.service


def minimum_version(service: str, down_time: int) -> str | None:
    """The lowest version reported by up services of ``service`` (None when
    none is up: nothing to be compatible with)."""
    from flotilla.db import api as db
    versions = [s.rpc_version or UNREPORTED[service]
                for s in db.service_get_all(binary=BINARY[service])
                if db.service_is_up(s, down_time)]
    return min(versions, key=versioning.parse) if versions else None


def compute_host_refusal(host: str, needed: str) -> str | None:
    """None when the compute service of ``host`` serves RPC ``needed`` or
    newer, else why not (no such service, or the older version it serves).
    A service that reports no version counts as :data:`UNREPORTED`."""
    from flotilla import exception
    from flotilla.db import api as db
    try:
        service = db.service_get(host, binaries.COMPUTE)
    except exception.NotFound:
        return "the server's host has no compute service"
    version = service.rpc_version or UNREPORTED["compute"]
    if versioning.parse(version) < versioning.parse(needed):
        return "the compute service of the server's host serves RPC %s (needs %s)" % (
            version, needed)
    return None

"""Room on a named destination host, checked by the API before any write.

A live migration (forced or not) or a cold migration to a named host used
to be answered 202, with a migration record and an action written, and
only then refused by the conductor's claim (or, for a forced live
migration, not refused at all: its claim takes the capacity the caller
decided). The API now reads the host's row (the scheduler's host state:
totals, allocation ratios, usage) and refuses a host that cannot hold the
server's flavor, naming the short resource, before anything changes.

Status 409, not Nova's 400 "No valid host was found": the request is well
formed and the host exists, is enabled and up; what conflicts is the
host's present usage, which a later request may find freed (the same
reasoning as a quota-free 409 for a state conflict). The message says
which resource is short and by how much, as the scheduler's filter reasons
do, rather than Nova's bare "No valid host".

The check is not atomic with the claim (the conductor's claim, made on the
generation it read, is still the decision for the scheduler's path); it
only keeps a migration that cannot fit from being started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api import errors
from flotilla import exception
from flotilla.db import scheduling as sched_db
from flotilla.objects.flavor import Flavor
from scheduler.host_manager import state_from_row


def shortfall(host: str, flavor: Mapping[str, Any]) -> str | None:
    """Why ``host`` cannot hold one more server of ``flavor`` (a flavor
    snapshot, as ``instance.flavor``), or None if it can. Free capacity is
    the scheduler's: ``total * allocation_ratio - used``; the disk is the
    flavor's root + ephemeral + swap, as the scheduler claims it."""
    row = sched_db.host_state_row(host)
    if row is None:
        return ("Host %s has no compute node (it has not reported its resources)"
                % host)
    node = state_from_row(row)
    try:
        need = Flavor.from_record(flavor)
    except (exception.FlotillaException, KeyError, TypeError, ValueError):
        return None     # no flavor snapshot to compare: the claim decides
    free_ram = int(node.free_ram_mb)
    if free_ram < need.memory_mb:
        return ("Host %s has %d MiB of RAM free, server needs %d MiB"
                % (host, max(free_ram, 0), need.memory_mb))
    free_vcpus = node.free_vcpus
    if free_vcpus < need.vcpus:
        return ("Host %s has %s VCPUs free, server needs %d"
                % (host, _number(max(free_vcpus, 0)), need.vcpus))
    free_disk = node.free_disk_gb
    if free_disk < need.disk_gb:
        return ("Host %s has %s GiB of disk free, server needs %d GiB"
                % (host, _number(max(free_disk, 0)), need.disk_gb))
    return None


def check_room(host: str, flavor: Mapping[str, Any]) -> None:
    """409 naming the short resource if ``host`` cannot hold ``flavor``."""
    reason = shortfall(host, flavor)
    if reason is not None:
        raise errors.conflict(reason)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else "%.1f" % value

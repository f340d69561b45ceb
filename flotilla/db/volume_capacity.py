"""What each volume host's backend reports of its space (issue 11), and
what the database says is provisioned there.

Rules:

* the volume service of a host rewrites its row (one upsert) at start and
  every ``[volume] capacity_report_interval``;
* provisioned GiB are counted live from the volumes and snapshots tables
  (every live row on the host, whatever its status: a volume being created
  counts from the moment it is recorded), so placement needs no estimate
  of what was created since the last report.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from flotilla.db import quotas
from flotilla.db.engine import session_scope
from flotilla.db.models import Volume, VolumeCapacity, VolumeSnapshot
from flotilla.db.types import utcnow


def capacity_report(host: str, total_bytes: int, free_bytes: int, allocated_bytes: int,
                    provisioned_gb: int) -> VolumeCapacity:
    """Record what ``host``'s backend has now (insert or replace)."""
    values = {"total_bytes": int(total_bytes), "free_bytes": int(free_bytes),
              "allocated_bytes": int(allocated_bytes),
              "provisioned_gb": int(provisioned_gb), "reported_at": utcnow()}
    with session_scope() as session:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" \
            else sqlite.insert
        session.execute(insert(VolumeCapacity).values(host=host, **values)
                        .on_conflict_do_update(index_elements=[VolumeCapacity.host],
                                               set_=values))
        return session.get(VolumeCapacity, host, populate_existing=True)


def capacity_get_all(hosts: Collection[str] | None = None) -> dict[str, VolumeCapacity]:
    """The last report of each host (of ``hosts`` when given), by host."""
    query = sa.select(VolumeCapacity)
    if hosts is not None:
        query = query.where(VolumeCapacity.host.in_(tuple(hosts)))
    with session_scope() as session:
        return {row.host: row for row in session.scalars(query)}


def lock_host(session, host: str) -> None:
    """Serialise the space-checked inserts on volume host ``host`` until
    the session commits."""
    quotas._lock(session, "volume-host:" + host)


def capacity_get(host: str, session=None) -> VolumeCapacity | None:
    """The last report of ``host``; None when it never reported."""
    return quotas._read(session, lambda sess: sess.get(VolumeCapacity, host))


def provisioned_gb(hosts: Collection[str] | None = None, session=None) -> dict[str, int]:
    """GiB of the live volumes and snapshots on each host (of ``hosts``)."""
    return quotas._read(session, lambda sess: _provisioned(sess, hosts))


def _provisioned(session, hosts: Collection[str] | None) -> dict[str, int]:
    totals: dict[str, int] = {}
    for model in (Volume, VolumeSnapshot):
        query = (sa.select(model.host, sa.func.coalesce(sa.func.sum(model.size_gb), 0))
                 .where(model.deleted.is_(False), model.host.is_not(None))
                 .group_by(model.host))
        if hosts is not None:
            query = query.where(model.host.in_(tuple(hosts)))
        for host, gb in session.execute(query):
            totals[host] = totals.get(host, 0) + int(gb)
    return totals

"""Host aggregates: named groups of compute hosts with metadata.

Rules (as Nova's):

* names are unique; an aggregate's ``availability_zone`` (also shown as
  its metadata key ``availability_zone``) makes its hosts that zone;
* a host may be in several aggregates, but never in two zones: adding it
  to an aggregate whose zone differs from another of its aggregates' is a
  Conflict, and so is renaming the zone of an aggregate whose hosts are in
  another zone;
* a host is added once (Conflict) and must be a compute host
  (:class:`HostNotFound`); an aggregate with hosts cannot be deleted;
* metadata updates merge: a ``None`` value removes the key.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping

import sqlalchemy as sa

from flotilla import binaries, exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Aggregate, AggregateHost, Service

AZ_KEY = "availability_zone"


class AggregateNotFound(exception.NotFound):
    msg_fmt = "Aggregate %(aggregate)s could not be found."


class HostNotFound(exception.NotFound):
    msg_fmt = "Compute host %(host)s could not be found."


class AggregateHostNotFound(exception.NotFound):
    msg_fmt = "Cannot remove host %(host)s in aggregate %(aggregate)s: not found."


class AggregateConflict(exception.Conflict):
    msg_fmt = "%(reason)s"


class AggregateNotEmpty(exception.Invalid):
    msg_fmt = "Cannot delete aggregate %(aggregate)s: it has hosts."


def _hosts(session, aggregate_id: int) -> list[str]:
    return list(session.scalars(sa.select(AggregateHost.host).where(
        AggregateHost.aggregate_id == aggregate_id).order_by(AggregateHost.id)))


def _get(session, aggregate_id: int) -> Aggregate:
    row = session.get(Aggregate, aggregate_id)
    if row is None:
        raise AggregateNotFound(aggregate=aggregate_id)
    return row


def _detached(session, row: Aggregate) -> tuple[Aggregate, list[str]]:
    hosts = _hosts(session, row.id)
    session.flush()
    session.expunge(row)
    return row, hosts


def _zone_conflicts(session, hosts: list[str], zone: str | None,
                    except_aggregate: int | None) -> list[str]:
    """Hosts among ``hosts`` that another aggregate puts in a zone other
    than ``zone``."""
    if not hosts:
        return []
    query = (sa.select(AggregateHost.host, Aggregate.availability_zone)
             .join(Aggregate, Aggregate.id == AggregateHost.aggregate_id)
             .where(AggregateHost.host.in_(hosts), Aggregate.availability_zone.is_not(None)))
    if except_aggregate is not None:
        query = query.where(Aggregate.id != except_aggregate)
    return sorted({h for h, other in session.execute(query) if other != zone})


def aggregate_create(name: str, zone: str | None = None) -> tuple[Aggregate, list[str]]:
    metadata = {AZ_KEY: zone} if zone else {}
    try:
        with session_scope() as session:
            row = Aggregate(uuid=str(uuidlib.uuid4()), name=name, availability_zone=zone,
                            metadata_=metadata)
            session.add(row)
            session.flush()
            return _detached(session, row)
    except sa.exc.IntegrityError:
        raise AggregateConflict(reason="Aggregate %s already exists." % name) from None


def aggregate_get(aggregate_id: int) -> tuple[Aggregate, list[str]]:
    with session_scope() as session:
        return _detached(session, _get(session, aggregate_id))


def aggregate_get_all() -> list[tuple[Aggregate, list[str]]]:
    with session_scope() as session:
        rows = list(session.scalars(sa.select(Aggregate).order_by(Aggregate.id)))
        return [_detached(session, row) for row in rows]


def aggregate_update(aggregate_id: int, name: str | None = None,
                     zone: str | None = None, set_zone: bool = False
                     ) -> tuple[Aggregate, list[str]]:
    """Rename an aggregate and/or set its zone (``set_zone``: ``zone`` is
    the new one, None clears it)."""
    try:
        with session_scope() as session:
            row = _get(session, aggregate_id)
            if name is not None:
                row.name = name
            if set_zone:
                clash = _zone_conflicts(session, _hosts(session, row.id), zone, row.id)
                if clash:
                    raise AggregateConflict(
                        reason="Cannot update aggregate %s: its hosts %s are in another "
                               "availability zone." % (aggregate_id, ", ".join(clash)))
                row.availability_zone = zone
                metadata = dict(row.metadata_ or {})
                metadata.pop(AZ_KEY, None)
                if zone:
                    metadata[AZ_KEY] = zone
                row.metadata_ = metadata
            session.flush()
            return _detached(session, row)
    except sa.exc.IntegrityError:
        raise AggregateConflict(reason="Aggregate %s already exists." % name) from None


def aggregate_delete(aggregate_id: int) -> None:
    with session_scope() as session:
        row = _get(session, aggregate_id)
        if _hosts(session, row.id):
            raise AggregateNotEmpty(aggregate=aggregate_id)
        session.delete(row)


def aggregate_add_host(aggregate_id: int, host: str) -> tuple[Aggregate, list[str]]:
    with session_scope() as session:
        row = _get(session, aggregate_id)
        known = session.scalar(sa.select(Service.id).where(
            Service.host == host, Service.binary == binaries.COMPUTE))
        if known is None:
            raise HostNotFound(host=host)
        if host in _hosts(session, row.id):
            raise AggregateConflict(reason="Aggregate %s already has host %s."
                                    % (aggregate_id, host))
        if row.availability_zone and _zone_conflicts(session, [host],
                                                     row.availability_zone, row.id):
            raise AggregateConflict(
                reason="Cannot add host %s to aggregate %s: the host is in another "
                       "availability zone." % (host, aggregate_id))
        session.add(AggregateHost(aggregate_id=row.id, host=host))
        session.flush()
        return _detached(session, row)


def aggregate_remove_host(aggregate_id: int, host: str) -> tuple[Aggregate, list[str]]:
    with session_scope() as session:
        row = _get(session, aggregate_id)
        result = session.execute(sa.delete(AggregateHost).where(
            AggregateHost.aggregate_id == row.id, AggregateHost.host == host))
        if result.rowcount == 0:
            raise AggregateHostNotFound(host=host, aggregate=aggregate_id)
        return _detached(session, row)


def aggregate_set_metadata(aggregate_id: int, updates: Mapping[str, str | None]
                           ) -> tuple[Aggregate, list[str]]:
    """Merge ``updates`` into the metadata (None removes a key); the
    ``availability_zone`` key sets the zone."""
    if AZ_KEY in updates:
        aggregate_update(aggregate_id, zone=updates[AZ_KEY], set_zone=True)
    with session_scope() as session:
        row = _get(session, aggregate_id)
        metadata = dict(row.metadata_ or {})
        for key, value in updates.items():
            if key == AZ_KEY:
                continue
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        row.metadata_ = metadata
        session.flush()
        return _detached(session, row)


def host_aggregates() -> dict[str, list[tuple[str | None, dict]]]:
    """host -> [(zone, metadata) of each aggregate it is in]."""
    result: dict[str, list[tuple[str | None, dict]]] = {}
    with session_scope() as session:
        rows = session.execute(
            sa.select(AggregateHost.host, Aggregate.availability_zone, Aggregate.metadata_)
            .join(Aggregate, Aggregate.id == AggregateHost.aggregate_id))
        for host, zone, metadata in rows:
            result.setdefault(host, []).append((zone, dict(metadata or {})))
    return result


def host_zones() -> dict[str, str]:
    """host -> the zone an aggregate puts it in (hosts in none: absent)."""
    return {host: zone for host, aggs in host_aggregates().items()
            for zone, _ in aggs if zone}

"""The services table: which daemon runs where, and whether it is alive."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Service
from flotilla.db.types import utcnow


def service_heartbeat(host: str, binary: str, topic: str | None = None,
                      rpc_version: str | None = None) -> Service:
    """Record that ``binary`` on ``host`` is alive now (serving RPC API
    ``rpc_version`` when given); create it if new.

    One atomic upsert (INSERT ... ON CONFLICT (host, binary) DO UPDATE), so
    two copies starting at once cannot both insert. A heartbeat never
    touches ``disabled``: an operator's decision outlives restarts.
    """
    now = utcnow()
    with session_scope() as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(Service).values(
            host=host, binary=binary, topic=topic, last_seen_at=now,
            disabled=False, created_at=now, rpc_version=rpc_version)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Service.host, Service.binary],
            set_={"last_seen_at": now, "topic": topic, "updated_at": now,
                  "rpc_version": rpc_version})
        session.execute(stmt)
        return _get(session, host, binary)


def service_get(host: str, binary: str) -> Service:
    """The service, or ServiceNotFound."""
    with session_scope() as session:
        return _get(session, host, binary)


def service_get_all(binary: str | None = None,
                    include_disabled: bool = True) -> list[Service]:
    """Every service (or every ``binary``), ordered by host then binary."""
    query = sa.select(Service).order_by(Service.host, Service.binary)
    if binary is not None:
        query = query.where(Service.binary == binary)
    if not include_disabled:
        query = query.where(Service.disabled.is_(False))
    with session_scope() as session:
        return list(session.scalars(query))


def service_set_disabled(host: str, binary: str, disabled: bool,
                         reason: str | None = None) -> Service:
    """Disable (with a reason) or enable a service; enabling clears the
    reason. ServiceNotFound if it never reported."""
    values = {"disabled": disabled,
              "disabled_reason": reason if disabled else None,
              "updated_at": utcnow()}
    with session_scope() as session:
        result = session.execute(
            sa.update(Service)
            .where(Service.host == host, Service.binary == binary)
            .values(**values))
        if result.rowcount == 0:
            raise exception.ServiceNotFound(host=host, binary=binary)
        return _get(session, host, binary)


def service_set_forced_down(host: str, binary: str, forced_down: bool) -> Service:
    """Force a service down (it counts as down whatever its heartbeat, so
    its servers may be evacuated) or clear that. ServiceNotFound if it
    never reported."""
    with session_scope() as session:
        result = session.execute(
            sa.update(Service)
            .where(Service.host == host, Service.binary == binary)
            .values(forced_down=bool(forced_down), updated_at=utcnow()))
        if result.rowcount == 0:
            raise exception.ServiceNotFound(host=host, binary=binary)
        return _get(session, host, binary)


def service_destroy(host: str, binary: str) -> None:
    """Forget a service (a host taken out of the cloud)."""
    with session_scope() as session:
        result = session.execute(
            sa.delete(Service).where(Service.host == host,
                                     Service.binary == binary))
        if result.rowcount == 0:
            raise exception.ServiceNotFound(host=host, binary=binary)


def service_is_up(service: Service | Mapping[str, Any], down_time: int,
                  now: datetime.datetime | None = None) -> bool:
    """True if the last heartbeat is at most ``down_time`` seconds old.

    ``service`` may be the ORM object or its ``to_dict()`` (as received over
    RPC). Being disabled does not make a service down; being forced down
    does, whatever the heartbeat says.
    """
    forced = service.get("forced_down") if isinstance(service, Mapping) \
        else getattr(service, "forced_down", False)
    if forced:
        return False
    last = service["last_seen_at"] if isinstance(service, Mapping) \
        else service.last_seen_at
    if last is None:
        return False
    if isinstance(last, str):
        last = datetime.datetime.fromisoformat(last)
    if last.tzinfo is None:
        last = last.replace(tzinfo=datetime.UTC)
    now = now or utcnow()
    return (now - last).total_seconds() <= down_time


def _get(session, host: str, binary: str) -> Service:
    service = session.scalars(
        sa.select(Service).where(Service.host == host,
                                 Service.binary == binary)).one_or_none()
    if service is None:
        raise exception.ServiceNotFound(host=host, binary=binary)
    return service

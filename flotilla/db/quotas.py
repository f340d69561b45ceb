"""Per-project quotas: limits (config defaults plus admin overrides),
usage, and the serialisation of quota checks.

Rules:

* a limit of -1 means unlimited; a project without an override row gets
  the ``[quota]`` default;
* usage is counted from the live rows themselves (instances, their vcpus
  and memory_mb; server groups), never from a separate counter that could
  drift;
* a check and the insert it guards must run in one transaction after
  :func:`lock_project`, which serialises every quota-checked writer of one
  project: on PostgreSQL a transaction-scoped advisory lock keyed on the
  project, on SQLite the database write lock (taken by a first no-op
  UPDATE, since the engine begins transactions DEFERRED and a later
  upgrade from read to write would fail instead of waiting).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Instance, Quota, ServerGroup
from flotilla.db.types import utcnow

# Resources with a limit, and the [quota] option holding each default.
RESOURCES = ("instances", "cores", "ram", "server_groups",
             "server_group_members", "metadata_items")


def lock_project(session, project_id: str) -> None:
    """Serialise quota-checked writes of ``project_id`` until commit."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(("quota:" + project_id).encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        # A write statement takes SQLite's write lock (waiting up to the
        # busy timeout) even when it matches no row.
        session.execute(sa.update(Quota).where(Quota.project_id == project_id)
                        .values(hard_limit=Quota.hard_limit),
                        execution_options={"synchronize_session": False})


def get_limits(project_id: str, defaults: Mapping[str, int],
               session=None) -> dict[str, int]:
    """The effective limit of every resource for ``project_id``."""
    limits = {r: int(defaults[r]) for r in RESOURCES}

    def read(sess):
        for resource, limit in sess.execute(
                sa.select(Quota.resource, Quota.hard_limit)
                .where(Quota.project_id == project_id)):
            if resource in limits:
                limits[resource] = limit

    if session is not None:
        read(session)
    else:
        with session_scope() as sess:
            read(sess)
    return limits


def get_overrides(project_id: str) -> dict[str, int]:
    with session_scope() as session:
        return dict(session.execute(
            sa.select(Quota.resource, Quota.hard_limit)
            .where(Quota.project_id == project_id)).all())


def set_limit(project_id: str, resource: str, limit: int) -> None:
    """Override one limit of a project (-1: unlimited)."""
    if resource not in RESOURCES:
        raise exception.Invalid(reason="unknown quota resource %s (one of %s)"
                                % (resource, ", ".join(RESOURCES)))
    if limit < -1:
        raise exception.Invalid(reason="a limit is -1 (unlimited) or at least 0")
    with session_scope() as session:
        row = session.scalars(sa.select(Quota).where(
            Quota.project_id == project_id, Quota.resource == resource)).one_or_none()
        if row is None:
            session.add(Quota(project_id=project_id, resource=resource,
                              hard_limit=limit))
        else:
            row.hard_limit = limit
            row.updated_at = utcnow()


def delete_overrides(project_id: str, resource: str | None = None) -> int:
    """Return to the defaults (for one resource or all); count removed."""
    query = sa.delete(Quota).where(Quota.project_id == project_id)
    if resource is not None:
        query = query.where(Quota.resource == resource)
    with session_scope() as session:
        return session.execute(query).rowcount


def get_usage(project_id: str, session=None) -> dict[str, int]:
    """What the project uses now: instances, cores, ram, server_groups."""
    def read(sess):
        count, cores, ram = sess.execute(
            sa.select(sa.func.count(Instance.id),
                      sa.func.coalesce(sa.func.sum(Instance.vcpus), 0),
                      sa.func.coalesce(sa.func.sum(Instance.memory_mb), 0))
            .where(Instance.project_id == project_id,
                   Instance.deleted.is_(False))).one()
        groups = sess.scalar(sa.select(sa.func.count(ServerGroup.id)).where(
            ServerGroup.project_id == project_id, ServerGroup.deleted.is_(False)))
        return {"instances": int(count), "cores": int(cores), "ram": int(ram),
                "server_groups": int(groups)}

    if session is not None:
        return read(session)
    with session_scope() as sess:
        return read(sess)


def check(limits: Mapping[str, int], usage: Mapping[str, int],
          deltas: Mapping[str, int]) -> None:
    """Raise OverQuota naming every resource ``deltas`` would overshoot."""
    over = []
    for resource, delta in deltas.items():
        limit = limits.get(resource, -1)
        if limit >= 0 and usage.get(resource, 0) + delta > limit:
            over.append("%s (limit %d, used %d, requested %d)"
                        % (resource, limit, usage.get(resource, 0), delta))
    if over:
        raise exception.OverQuota(
            resources=", ".join(r.split(" ", 1)[0] for r in over),
            detail="; ".join(over))

"""Quotas: limits (defaults, class, project and user overrides), usage, and
the serialisation of quota checks.

Rules:

* a limit of -1 means unlimited. The effective limit of a resource is the
  first of: the user's override in the project (only when a user is
  named), the project's override, the ``default`` quota class's override,
  the ``[quota]`` default (:data:`LEGACY_DEFAULTS` for the limits Nova's
  API still shows below the microversions that removed them);
* usage is counted from the live rows themselves (instances, their vcpus
  and memory_mb; server groups; key pairs), never from a separate counter
  that could drift. Key pairs belong to users, so a project's key pair
  usage is 0 (as Nova reports it) and a user's is its own count;
* a user with overrides is held to them as well as to the project's
  limits (:func:`check_project_and_user`);
* a check and the insert it guards must run in one transaction after
  :func:`lock_project` (or :func:`lock_user` for per-user resources),
  which serialises every quota-checked writer of that scope: on PostgreSQL
  a transaction-scoped advisory lock keyed on the scope, on SQLite the
  database write lock (taken by a first no-op UPDATE, since the engine
  begins transactions DEFERRED and a later upgrade from read to write
  would fail instead of waiting).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Instance, KeyPair, ProjectUserQuota, Quota, QuotaClass, ServerGroup
from flotilla.db.types import utcnow

# Resources Flotilla enforces, each with a [quota] option holding its default.
RESOURCES = ("instances", "cores", "ram", "server_groups",
             "server_group_members", "metadata_items", "key_pairs")
# Limits that Nova's API shows below 2.36/2.50 (nova-network) and 2.57
# (personality files), with Nova's defaults. Flotilla has neither feature:
# they are stored and shown for clients of those versions, never enforced.
LEGACY_DEFAULTS = {"fixed_ips": -1, "floating_ips": -1, "security_groups": -1,
                   "security_group_rules": -1, "injected_files": 5,
                   "injected_file_content_bytes": 10240,
                   "injected_file_path_bytes": 255}
ALL_RESOURCES = RESOURCES + tuple(LEGACY_DEFAULTS)
DEFAULT_CLASS = "default"
# Counted per user when a user is named (the others are per project or,
# like metadata_items, per server).
PER_USER_COUNTED = ("instances", "cores", "ram", "server_groups", "key_pairs")


class QuotaClassNameInvalid(exception.Invalid):
    msg_fmt = "Invalid quota class name %(name)r: 1 to 255 characters"


def _lock(session, key: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(key.encode()).digest()
        lock_id = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
    else:
        # A write statement takes SQLite's write lock (waiting up to the
        # busy timeout) even when it matches no row.
        session.execute(sa.update(Quota).where(Quota.project_id == key)
                        .values(hard_limit=Quota.hard_limit),
                        execution_options={"synchronize_session": False})


def lock_project(session, project_id: str) -> None:
    """Serialise quota-checked writes of ``project_id`` until commit."""
    _lock(session, "quota:" + project_id)


def lock_user(session, user_id: str) -> None:
    """Serialise quota-checked writes of ``user_id``'s own resources (key
    pairs) until commit."""
    _lock(session, "quota-user:" + user_id)


def _read(session, fn):
    if session is not None:
        return fn(session)
    with session_scope() as sess:
        return fn(sess)


def _class_rows(session, class_name: str) -> dict[str, int]:
    return dict(session.execute(
        sa.select(QuotaClass.resource, QuotaClass.hard_limit)
        .where(QuotaClass.class_name == class_name)).all())


def _project_rows(session, project_id: str) -> dict[str, int]:
    return dict(session.execute(
        sa.select(Quota.resource, Quota.hard_limit)
        .where(Quota.project_id == project_id)).all())


def _user_rows(session, project_id: str, user_id: str) -> dict[str, int]:
    return dict(session.execute(
        sa.select(ProjectUserQuota.resource, ProjectUserQuota.hard_limit)
        .where(ProjectUserQuota.project_id == project_id,
               ProjectUserQuota.user_id == user_id)).all())


def _overlay(limits: dict[str, int], rows: Mapping[str, int]) -> dict[str, int]:
    for resource, limit in rows.items():
        if resource in limits:
            limits[resource] = int(limit)
    return limits


def _base(defaults: Mapping[str, int]) -> dict[str, int]:
    limits = {r: int(defaults[r]) for r in RESOURCES}
    limits.update(LEGACY_DEFAULTS)
    return limits


def get_class_limits(class_name: str, defaults: Mapping[str, int],
                     session=None) -> dict[str, int]:
    """Every limit of quota class ``class_name`` (its overrides over the
    ``[quota]`` ``defaults``)."""
    return _read(session, lambda s: _overlay(_base(defaults), _class_rows(s, class_name)))


def get_limits(project_id: str, defaults: Mapping[str, int], session=None,
               user_id: str | None = None) -> dict[str, int]:
    """The effective limit of every resource for ``project_id`` (and
    ``user_id`` when given); ``defaults`` are the ``[quota]`` values."""
    def read(sess):
        limits = _overlay(_base(defaults), _class_rows(sess, DEFAULT_CLASS))
        _overlay(limits, _project_rows(sess, project_id))
        if user_id is not None:
            _overlay(limits, _user_rows(sess, project_id, user_id))
        return limits
    return _read(session, read)


def get_overrides(project_id: str, user_id: str | None = None) -> dict[str, int]:
    """The project's own overrides (or the user's in it, with ``user_id``)."""
    with session_scope() as session:
        if user_id is None:
            return _project_rows(session, project_id)
        return _user_rows(session, project_id, user_id)


def get_user_overrides(project_id: str, session=None) -> dict[str, dict[str, int]]:
    """user id -> its overrides, for every user of ``project_id`` with any."""
    def read(sess):
        result: dict[str, dict[str, int]] = {}
        for user, resource, limit in sess.execute(
                sa.select(ProjectUserQuota.user_id, ProjectUserQuota.resource,
                          ProjectUserQuota.hard_limit)
                .where(ProjectUserQuota.project_id == project_id)):
            result.setdefault(user, {})[resource] = limit
        return result
    return _read(session, read)


def _check_limit(resource: str, limit: int) -> None:
    if resource not in ALL_RESOURCES:
        raise exception.Invalid(reason="unknown quota resource %s (one of %s)"
                                % (resource, ", ".join(ALL_RESOURCES)))
    if limit < -1:
        raise exception.Invalid(reason="a limit is -1 (unlimited) or at least 0")


def _upsert(session, model, keys: dict, limit: int) -> None:
    row = session.scalars(sa.select(model).filter_by(**keys)).one_or_none()
    if row is None:
        session.add(model(hard_limit=limit, **keys))
    else:
        row.hard_limit = limit
        row.updated_at = utcnow()


def set_limits(project_id: str, limits: Mapping[str, int],
               user_id: str | None = None) -> None:
    """Override limits of a project (or of one of its users), all or none."""
    for resource, limit in limits.items():
        _check_limit(resource, limit)
    with session_scope() as session:
        for resource, limit in limits.items():
            if user_id is None:
                _upsert(session, Quota, {"project_id": project_id,
                                         "resource": resource}, limit)
            else:
                _upsert(session, ProjectUserQuota,
                        {"project_id": project_id, "user_id": user_id,
                         "resource": resource}, limit)


def set_limit(project_id: str, resource: str, limit: int) -> None:
    """Override one limit of a project (-1: unlimited)."""
    set_limits(project_id, {resource: limit})


def set_class_limits(class_name: str, limits: Mapping[str, int]) -> None:
    """Override limits of quota class ``class_name``, all or none."""
    if not 1 <= len(class_name) <= 255:
        raise QuotaClassNameInvalid(name=class_name[:64])
    for resource, limit in limits.items():
        _check_limit(resource, limit)
    with session_scope() as session:
        for resource, limit in limits.items():
            _upsert(session, QuotaClass, {"class_name": class_name,
                                          "resource": resource}, limit)


def delete_overrides(project_id: str, resource: str | None = None,
                     user_id: str | None = None) -> int:
    """Return to the defaults; count removed. Without ``user_id`` the
    project's overrides AND its users' go (Nova's revert); with it, only
    that user's."""
    removed = 0
    with session_scope() as session:
        if user_id is None:
            query = sa.delete(Quota).where(Quota.project_id == project_id)
            if resource is not None:
                query = query.where(Quota.resource == resource)
            removed += session.execute(query).rowcount
        query = sa.delete(ProjectUserQuota).where(
            ProjectUserQuota.project_id == project_id)
        if user_id is not None:
            query = query.where(ProjectUserQuota.user_id == user_id)
        if resource is not None:
            query = query.where(ProjectUserQuota.resource == resource)
        removed += session.execute(query).rowcount
    return removed


def count_key_pairs(user_id: str, session=None) -> int:
    return _read(session, lambda s: int(s.scalar(
        sa.select(sa.func.count(KeyPair.id))
        .where(KeyPair.user_id == user_id, KeyPair.deleted == 0))))


def get_usage(project_id: str, session=None, user_id: str | None = None) -> dict[str, int]:
    """What the project (or ``user_id`` in it) uses now: instances, cores,
    ram, server_groups, key_pairs (0 for a project, see the rules)."""
    def read(sess):
        instance_filter = [Instance.project_id == project_id, Instance.deleted.is_(False)]
        group_filter = [ServerGroup.project_id == project_id,
                        ServerGroup.deleted.is_(False)]
        if user_id is not None:
            instance_filter.append(Instance.user_id == user_id)
            group_filter.append(ServerGroup.user_id == user_id)
        count, cores, ram = sess.execute(
            sa.select(sa.func.count(Instance.id),
                      sa.func.coalesce(sa.func.sum(Instance.vcpus), 0),
                      sa.func.coalesce(sa.func.sum(Instance.memory_mb), 0))
            .where(*instance_filter)).one()
        groups = sess.scalar(sa.select(sa.func.count(ServerGroup.id)).where(*group_filter))
        return {"instances": int(count), "cores": int(cores), "ram": int(ram),
                "server_groups": int(groups),
                "key_pairs": count_key_pairs(user_id, sess) if user_id else 0}
    return _read(session, read)


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


def check_project_and_user(project_id: str, user_id: str | None,
                           project_limits: Mapping[str, int],
                           deltas: Mapping[str, int], session=None) -> None:
    """``deltas`` against the project's limits and usage, then, when the
    user has overrides in the project, against the user's."""
    def run(sess):
        check(project_limits, get_usage(project_id, sess), deltas)
        if user_id is None:
            return
        overrides = _user_rows(sess, project_id, user_id)
        if not overrides:
            return      # the user's limits are the project's: already checked
        user_limits = _overlay(dict(project_limits), overrides)
        check(user_limits, get_usage(project_id, sess, user_id),
              {r: d for r, d in deltas.items() if r in PER_USER_COUNTED})
    _read(session, run)

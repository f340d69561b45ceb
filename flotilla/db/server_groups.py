"""Server groups: affinity and anti-affinity between instances.

The scheduler reads a group's policy and the hosts of its live members; the
API creates, lists and deletes groups and adds a server to its group when it
records the server (in the same transaction, so two concurrent boots into an
anti-affinity group both see each other once claimed).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Instance, ServerGroup, ServerGroupMember
from flotilla.db.types import utcnow

POLICIES = ("affinity", "anti-affinity")


class ServerGroupNotFound(exception.NotFound):
    msg_fmt = "Server group %(group_uuid)s could not be found."


def server_group_create(values: Mapping[str, Any]) -> ServerGroup:
    """Create a group: ``name``, ``policy`` (affinity or anti-affinity),
    ``project_id``, ``user_id``; ``uuid`` generated when absent."""
    values = dict(values)
    if values.get("policy") not in POLICIES:
        raise exception.Invalid(reason="policy must be one of %s" % ", ".join(POLICIES))
    values.setdefault("uuid", str(uuidlib.uuid4()))
    group = ServerGroup(**values)
    with session_scope() as session:
        session.add(group)
    return group


def server_group_create_within_quota(
        values: Mapping[str, Any],
        limits_for: Callable[[Any], Mapping[str, int]]) -> ServerGroup:
    """Create a group if its project's ``server_groups`` quota allows it,
    else OverQuota. The check and the insert are one transaction after
    :func:`flotilla.db.quotas.lock_project`, serialised with every other
    quota-checked write of the project (as server creation is), so
    concurrent creates cannot overshoot the limit."""
    from flotilla.db import quotas
    values = dict(values)
    if values.get("policy") not in POLICIES:
        raise exception.Invalid(reason="policy must be one of %s" % ", ".join(POLICIES))
    values.setdefault("uuid", str(uuidlib.uuid4()))
    group = ServerGroup(**values)
    with session_scope() as session:
        quotas.lock_project(session, values["project_id"])
        quotas.check_project_and_user(values["project_id"], values.get("user_id"),
                                      limits_for(session), {"server_groups": 1},
                                      session=session)
        session.add(group)
    return group


def server_group_get(group_uuid: str, project_id: str | None = None) -> ServerGroup:
    """The live group (of ``project_id`` when given), or ServerGroupNotFound."""
    query = sa.select(ServerGroup).where(ServerGroup.uuid == group_uuid,
                                         ServerGroup.deleted.is_(False))
    if project_id is not None:
        query = query.where(ServerGroup.project_id == project_id)
    with session_scope() as session:
        group = session.scalars(query).one_or_none()
    if group is None:
        raise ServerGroupNotFound(group_uuid=group_uuid)
    return group


def server_group_get_all(project_id: str | None = None) -> list[ServerGroup]:
    query = sa.select(ServerGroup).where(ServerGroup.deleted.is_(False))
    if project_id is not None:
        query = query.where(ServerGroup.project_id == project_id)
    with session_scope() as session:
        return list(session.scalars(query.order_by(ServerGroup.id)))


def server_group_destroy(group_uuid: str, project_id: str | None = None) -> None:
    group = server_group_get(group_uuid, project_id)
    now = utcnow()
    with session_scope() as session:
        session.execute(sa.update(ServerGroup).where(ServerGroup.id == group.id)
                        .values(deleted=True, deleted_at=now, updated_at=now))
        session.execute(sa.delete(ServerGroupMember)
                        .where(ServerGroupMember.group_id == group.id))


def server_group_add_members(group_uuid: str, instance_uuids: Iterable[str],
                             session=None) -> None:
    """Add instances to a group (inside the caller's ``session`` if given)."""
    def add(sess):
        group_id = sess.scalar(sa.select(ServerGroup.id).where(
            ServerGroup.uuid == group_uuid, ServerGroup.deleted.is_(False)))
        if group_id is None:
            raise ServerGroupNotFound(group_uuid=group_uuid)
        for instance_uuid in instance_uuids:
            sess.add(ServerGroupMember(group_id=group_id, instance_uuid=instance_uuid))

    if session is not None:
        add(session)
        return
    with session_scope() as sess:
        add(sess)


def server_group_members(group_uuid: str) -> list[str]:
    """UUIDs of the live instances in the group."""
    with session_scope() as session:
        return list(session.scalars(
            sa.select(ServerGroupMember.instance_uuid)
            .join(ServerGroup, ServerGroup.id == ServerGroupMember.group_id)
            .join(Instance, Instance.uuid == ServerGroupMember.instance_uuid)
            .where(ServerGroup.uuid == group_uuid, Instance.deleted.is_(False))
            .order_by(ServerGroupMember.id)))


def server_group_member_hosts(group_uuid: str) -> dict[str, str | None]:
    """instance uuid -> host (None while unscheduled) of the live members."""
    with session_scope() as session:
        rows = session.execute(
            sa.select(Instance.uuid, Instance.host)
            .join(ServerGroupMember, ServerGroupMember.instance_uuid == Instance.uuid)
            .join(ServerGroup, ServerGroup.id == ServerGroupMember.group_id)
            .where(ServerGroup.uuid == group_uuid, Instance.deleted.is_(False)))
        return {uuid: host for uuid, host in rows}


def server_group_get_for_instance(instance_uuid: str) -> ServerGroup | None:
    with session_scope() as session:
        return session.scalars(
            sa.select(ServerGroup)
            .join(ServerGroupMember, ServerGroupMember.group_id == ServerGroup.id)
            .where(ServerGroupMember.instance_uuid == instance_uuid,
                   ServerGroup.deleted.is_(False))).one_or_none()

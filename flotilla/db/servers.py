"""The compute API's reads and writes of servers that flotilla.db.api has
no form for: creation within quota (one transaction), paged listing with
filters, the latest faults of a page of servers.

Creation rule: the quota check, the instance rows, their server group
membership and their "create" actions are ONE transaction begun by
:func:`flotilla.db.quotas.lock_project`, so concurrent creates of one
project are serialised and can never overshoot a limit (the project's, or
the creating user's when an admin gave that user limits of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla import states as st
from flotilla.db import quotas
from flotilla.db.engine import session_scope
from flotilla.db.models import (
    Instance,
    InstanceAction,
    InstanceFault,
    ServerGroup,
    ServerGroupMember,
)
from flotilla.db.server_groups import ServerGroupNotFound

BUILD_ACTION = st.operation("build").action


class MarkerNotFound(exception.Invalid):
    msg_fmt = "marker [%(marker)s] not found"


def create_within_quota(project_id: str, records: Sequence[Mapping[str, Any]],
                        limits_for: Callable[[Any], Mapping[str, int]],
                        group_uuid: str | None, request_id: str,
                        user_id: str | None) -> list[Instance]:
    """Insert ``records`` (instance column values, ``uuid`` included) if the
    project's quota allows them all; else OverQuota and nothing is written.

    ``limits_for(session)`` returns the project's effective limits (read
    inside the locked transaction); ``user_id``'s own limits, if it has
    any, are checked too. With ``group_uuid`` the servers join
    that group (which must be live and have room).
    """
    deltas = {"instances": len(records),
              "cores": sum(int(r.get("vcpus", 0)) for r in records),
              "ram": sum(int(r.get("memory_mb", 0)) for r in records)}
    rows = []
    with session_scope() as session:
        quotas.lock_project(session, project_id)
        limits = limits_for(session)
        quotas.check_project_and_user(project_id, user_id, limits, deltas, session)
        group_id = None
        if group_uuid is not None:
            group_id = session.scalar(sa.select(ServerGroup.id).where(
                ServerGroup.uuid == group_uuid, ServerGroup.deleted.is_(False)))
            if group_id is None:
                raise ServerGroupNotFound(group_uuid=group_uuid)
            members = session.scalar(
                sa.select(sa.func.count(ServerGroupMember.id))
                .join(Instance, Instance.uuid == ServerGroupMember.instance_uuid)
                .where(ServerGroupMember.group_id == group_id,
                       Instance.deleted.is_(False)))
            quotas.check(limits, {"server_group_members": members},
                         {"server_group_members": len(records)})
        for record in records:
            values = dict(record)
            values["metadata_"] = values.pop("metadata", {}) or {}
            row = Instance(**values)
            session.add(row)
            rows.append(row)
        session.flush()
        for row in rows:
            if group_id is not None:
                session.add(ServerGroupMember(group_id=group_id,
                                              instance_uuid=row.uuid))
            session.add(InstanceAction(instance_uuid=row.uuid, action=BUILD_ACTION,
                                       request_id=request_id, user_id=user_id,
                                       project_id=project_id))
    return rows


def instance_page(project_id: str | None = None, *, name: str | None = None,
                  vm_states: Sequence[str] | None = None,
                  task_states: Sequence[str | None] | None = None,
                  host: str | None = None, locked: bool | None = None,
                  flavor_id: str | None = None, image_ref: str | None = None,
                  changes_since: Any = None, changes_before: Any = None,
                  reservation_id: str | None = None,
                  marker: str | None = None, limit: int = 1000) -> list[Instance]:
    """Instances, newest first, after ``marker`` (an instance uuid;
    MarkerNotFound if it is not one of the listed project's). ``name`` is
    a regular expression (as Nova's filter); with ``changes_since`` or
    ``changes_before`` (updated at or after / before) deleted instances are
    listed too, as Nova lists them."""
    query = sa.select(Instance)
    if changes_since is None and changes_before is None:
        query = query.where(Instance.deleted.is_(False))
    updated = sa.func.coalesce(Instance.updated_at, Instance.created_at)
    if changes_since is not None:
        query = query.where(updated >= changes_since)
    if changes_before is not None:
        query = query.where(updated <= changes_before)
    if locked is not None:
        query = query.where(Instance.locked.is_(locked))
    if project_id is not None:
        query = query.where(Instance.project_id == project_id)
    if flavor_id is not None:
        query = query.where(Instance.flavor_id == flavor_id)
    if image_ref is not None:
        query = query.where(Instance.image_ref == image_ref)
    if reservation_id is not None:
        query = query.where(Instance.reservation_id == reservation_id)
    if name:
        query = query.where(Instance.name.regexp_match(name))
    if vm_states is not None:
        query = query.where(Instance.vm_state.in_(list(vm_states)))
    if task_states is not None:
        values = [t for t in task_states if t is not None]
        parts = [Instance.task_state.in_(values)] if values else []
        if None in task_states:
            parts.append(Instance.task_state.is_(None))
        query = query.where(sa.or_(*parts) if parts else sa.false())
    if host is not None:
        query = query.where(Instance.host == host)
    with session_scope() as session:
        if marker is not None:
            mark = session.execute(
                sa.select(Instance.created_at, Instance.id).where(
                    Instance.uuid == marker,
                    *([Instance.project_id == project_id] if project_id else []))
            ).one_or_none()
            if mark is None:
                raise MarkerNotFound(marker=marker)
            query = query.where(sa.or_(
                Instance.created_at < mark.created_at,
                sa.and_(Instance.created_at == mark.created_at,
                        Instance.id < mark.id)))
        query = query.order_by(Instance.created_at.desc(),
                               Instance.id.desc()).limit(limit)
        return list(session.scalars(query))


def latest_faults(instance_uuids: Sequence[str]) -> dict[str, InstanceFault]:
    """The newest fault of each of ``instance_uuids`` that has one."""
    if not instance_uuids:
        return {}
    with session_scope() as session:
        rows = session.scalars(
            sa.select(InstanceFault)
            .where(InstanceFault.instance_uuid.in_(list(instance_uuids)))
            .order_by(InstanceFault.created_at, InstanceFault.id))
        return {row.instance_uuid: row for row in rows}



def group_uuids_for(instance_uuids: Sequence[str]) -> dict[str, list[str]]:
    """instance uuid -> uuids of the live server groups it belongs to."""
    if not instance_uuids:
        return {}
    result: dict[str, list[str]] = {}
    with session_scope() as session:
        rows = session.execute(
            sa.select(ServerGroupMember.instance_uuid, ServerGroup.uuid)
            .join(ServerGroup, ServerGroup.id == ServerGroupMember.group_id)
            .where(ServerGroupMember.instance_uuid.in_(list(instance_uuids)),
                   ServerGroup.deleted.is_(False)))
        for instance_uuid, group_uuid in rows:
            result.setdefault(instance_uuid, []).append(group_uuid)
    return result

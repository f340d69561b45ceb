"""Database reads and writes of the scheduler and the build flow.

Rules:

* :func:`host_state_rows` is the scheduler's ONE query per request: every
  compute node with its service (heartbeat, disabled) and its count of
  allocations, as plain tuples (no ORM objects: at 10,000 hosts building
  objects costs more than the query). No per-host query is ever needed to
  decide; :func:`host_state_row` re-reads one host only after a lost claim.
* Group member hosts come from allocations as well as instance rows: a
  member is "on" a host from the moment its claim is committed, before any
  agent has recorded the host, so a concurrent scheduler that re-checks
  after a generation conflict sees it.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from flotilla import binaries
from flotilla.db.engine import get_engine, session_scope
from flotilla.db.models import (
    Allocation,
    ComputeNode,
    Instance,
    InstanceAction,
    ServerGroup,
    ServerGroupMember,
    Service,
)
from flotilla.db.types import utcnow

COMPUTE_BINARY = binaries.COMPUTE

# Column order of a host state row (see scheduler.host_manager.HostState).
HOST_STATE_COLUMNS = (
    "host", "vcpus", "memory_mb", "disk_gb", "vcpus_used", "memory_mb_used",
    "disk_gb_used", "cpu_allocation_ratio", "ram_allocation_ratio",
    "disk_allocation_ratio", "hypervisor_type", "cpu_arch",
    "availability_zone", "generation", "last_seen_at", "disabled",
    "num_instances", "changed_at")


def _host_state_query() -> sa.Select:
    counts = (sa.select(Allocation.compute_node_id,
                        sa.func.count().label("n"))
              .group_by(Allocation.compute_node_id).subquery())
    return (sa.select(
        ComputeNode.host, ComputeNode.vcpus, ComputeNode.memory_mb,
        ComputeNode.disk_gb, ComputeNode.vcpus_used, ComputeNode.memory_mb_used,
        ComputeNode.disk_gb_used, ComputeNode.cpu_allocation_ratio,
        ComputeNode.ram_allocation_ratio, ComputeNode.disk_allocation_ratio,
        ComputeNode.hypervisor_type, ComputeNode.cpu_arch,
        ComputeNode.availability_zone, ComputeNode.generation,
        Service.last_seen_at, Service.disabled,
        sa.func.coalesce(counts.c.n, 0),
        sa.func.coalesce(ComputeNode.updated_at, ComputeNode.created_at))
        .outerjoin(Service, sa.and_(Service.host == ComputeNode.host,
                                    Service.binary == COMPUTE_BINARY))
        .outerjoin(counts, counts.c.compute_node_id == ComputeNode.id))


def host_state_rows(changed_since: datetime.datetime | None = None) -> list[Any]:
    """Compute nodes as rows in :data:`HOST_STATE_COLUMNS` order: every one,
    or those whose row changed (claim, free, report) after ``changed_since``.

    Core rows, not ORM objects: at 10,000 hosts the ORM's per-row work
    would cost more than the query.
    """
    query = _host_state_query()
    if changed_since is not None:
        query = query.where(sa.or_(ComputeNode.updated_at > changed_since,
                                   ComputeNode.created_at > changed_since))
    with get_engine().connect() as conn:
        return conn.execute(query).all()


def host_state_row(host: str) -> Any | None:
    """One host's row (after a lost claim), or None if it is gone."""
    with get_engine().connect() as conn:
        return conn.execute(_host_state_query().where(ComputeNode.host == host)).first()


def compute_service_liveness() -> list[Any]:
    """(host, last_seen_at, disabled) of every compute service."""
    with get_engine().connect() as conn:
        return conn.execute(sa.select(Service.host, Service.last_seen_at, Service.disabled)
                            .where(Service.binary == COMPUTE_BINARY)).all()


def server_group_policy_and_hosts(
        group_uuid: str, exclude: Collection[str] = ()) -> tuple[str, set[str]] | None:
    """(policy, hosts of the live members) of a live group, None if no such
    group. ``exclude``: instance uuids not to count (the ones being
    scheduled now)."""
    with session_scope() as session:
        policy = session.scalar(sa.select(ServerGroup.policy).where(
            ServerGroup.uuid == group_uuid, ServerGroup.deleted.is_(False)))
        if policy is None:
            return None
        members = (sa.select(ServerGroupMember.instance_uuid)
                   .join(ServerGroup, ServerGroup.id == ServerGroupMember.group_id)
                   .join(Instance, Instance.uuid == ServerGroupMember.instance_uuid)
                   .where(ServerGroup.uuid == group_uuid,
                          Instance.deleted.is_(False)))
        if exclude:
            members = members.where(ServerGroupMember.instance_uuid.not_in(list(exclude)))
        member_ids = members.scalar_subquery()
        hosts = set(session.scalars(sa.select(Allocation.host).where(
            Allocation.consumer_id.in_(member_ids))))
        hosts.update(h for h in session.scalars(sa.select(Instance.host).where(
            Instance.uuid.in_(member_ids), Instance.host.is_not(None))))
        return policy, hosts


def action_reopen(instance_uuid: str, request_id: str) -> None:
    """Mark the latest action of ``request_id`` unfinished again (a build
    that failed on one host and is being tried on another). One UPDATE, so
    it never reads before writing."""
    latest = (sa.select(sa.func.max(InstanceAction.id))
              .where(InstanceAction.instance_uuid == instance_uuid,
                     InstanceAction.request_id == request_id)
              .scalar_subquery())
    with session_scope() as session:
        session.execute(sa.update(InstanceAction)
                        .where(InstanceAction.id == latest)
                        .values(finish_time=None, message=None),
                        execution_options={"synchronize_session": False})


def action_latest_unfinished(instance_uuid: str) -> InstanceAction | None:
    """The newest action of the instance that has not finished (the one a
    stuck task belongs to), or None."""
    with session_scope() as session:
        return session.scalars(
            sa.select(InstanceAction)
            .where(InstanceAction.instance_uuid == instance_uuid,
                   InstanceAction.finish_time.is_(None))
            .order_by(InstanceAction.id.desc()).limit(1)).one_or_none()


def instance_get_tasks_without_deadline() -> list[Instance]:
    """Live instances in a task that carries no deadline (set by a writer
    that did not know the rule); the reaper gives them one."""
    with session_scope() as session:
        return list(session.scalars(
            sa.select(Instance).where(Instance.deleted.is_(False),
                                      Instance.task_state.is_not(None),
                                      Instance.task_deadline.is_(None))))


def instance_set_deadline(instance_uuid: str, task_state: str,
                          deadline: datetime.datetime) -> bool:
    """Give a deadline to a task that has none, if it is still that task."""
    with session_scope() as session:
        result = session.execute(
            sa.update(Instance)
            .where(Instance.uuid == instance_uuid, Instance.deleted.is_(False),
                   Instance.task_state == task_state,
                   Instance.task_deadline.is_(None))
            .values(task_deadline=deadline),
            execution_options={"synchronize_session": False})
        return result.rowcount == 1


def compute_nodes_bulk_create(nodes: list[dict[str, Any]],
                              services: bool = True) -> None:
    """Insert many compute nodes (and their up services) at once: the
    benchmark's and tests' synthetic hosts."""
    now = utcnow()
    with session_scope() as session:
        session.execute(sa.insert(ComputeNode), nodes)
        if services:
            session.execute(sa.insert(Service), [
                {"host": n["host"], "binary": COMPUTE_BINARY,
                 "topic": "compute", "last_seen_at": now, "disabled": False,
                 "created_at": now} for n in nodes])

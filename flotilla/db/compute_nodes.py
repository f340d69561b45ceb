"""Compute nodes (hypervisor inventory) and resource claims on them.

The Placement pattern: a claim is ONE ``UPDATE compute_nodes SET
generation = generation + 1, vcpus_used = vcpus_used + ... WHERE host = ?
AND generation = ?`` plus the allocation rows, in one transaction. A
scheduler that decided on a stale view of the host (another claim or an
inventory change came first) matches no row and gets
ResourceProviderGenerationConflict: it re-reads and decides again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla.db.engine import session_scope
from flotilla.db.models import Allocation, ComputeNode
from flotilla.db.types import utcnow

RESOURCES = ("vcpus", "memory_mb", "disk_gb")
# Inventory fields: changing one invalidates decisions made on the old value.
_INVENTORY = RESOURCES + ("cpu_allocation_ratio", "ram_allocation_ratio",
                          "disk_allocation_ratio")
# Reported by the compute agent; usage and generation belong to claims.
_REPORTABLE = frozenset(_INVENTORY + (
    "hypervisor_type", "hypervisor_version", "hypervisor_hostname",
    "cpu_arch", "availability_zone", "running_vms", "capabilities"))


def compute_node_update(host: str, values: Mapping[str, Any]) -> ComputeNode:
    """Store a compute agent's report about ``host`` (created if new).

    Only inventory and descriptive fields may be reported; the ``*_used``
    columns follow allocations and are never overwritten by a report. The
    generation is bumped when the inventory really changes.
    """
    unknown = set(values) - _REPORTABLE
    if unknown:
        raise exception.Invalid(
            reason="cannot report compute node fields %s" % sorted(unknown))
    now = utcnow()
    changed = sa.or_(sa.false(), *(
        getattr(ComputeNode, k) != values[k] for k in _INVENTORY if k in values))
    with session_scope() as session:
        # UPDATE first: on SQLite it takes the write lock before anything
        # is read, so a concurrent writer waits instead of failing.
        result = session.execute(
            sa.update(ComputeNode).where(ComputeNode.host == host).values(
                generation=sa.case((changed, ComputeNode.generation + 1),
                                   else_=ComputeNode.generation),
                updated_at=now, **values),
            execution_options={"synchronize_session": False})
        if result.rowcount == 0:
            session.add(ComputeNode(host=host, **values))
            session.flush()
        return _get(session, host)


def compute_node_get(host: str) -> ComputeNode:
    """The compute node of ``host``, or ComputeNodeNotFound."""
    with session_scope() as session:
        return _get(session, host)


def compute_node_get_all() -> list[ComputeNode]:
    """Every compute node, by host."""
    with session_scope() as session:
        return list(session.scalars(
            sa.select(ComputeNode).order_by(ComputeNode.host)))


def allocation_claim(host: str, consumer: str, resources: Mapping[str, int],
                     expected_generation: int) -> ComputeNode:
    """Claim ``resources`` (vcpus, memory_mb, disk_gb) on ``host`` for
    ``consumer`` if the node is still at ``expected_generation``.

    Returns the node with its new generation and usage. Raises
    ResourceProviderGenerationConflict if the generation moved,
    ComputeNodeNotFound if there is no such node, Conflict if ``consumer``
    already holds an allocation there. Capacity is the caller's decision
    (made on the generation it read).
    """
    unknown = set(resources) - set(RESOURCES)
    if unknown:
        raise exception.Invalid(reason="unknown resources %s" % sorted(unknown))
    amounts = {r: int(resources.get(r, 0)) for r in RESOURCES}
    with session_scope() as session:
        result = session.execute(
            sa.update(ComputeNode)
            .where(ComputeNode.host == host,
                   ComputeNode.generation == expected_generation)
            .values(generation=ComputeNode.generation + 1, updated_at=utcnow(),
                    **{r + "_used": getattr(ComputeNode, r + "_used") + amounts[r]
                       for r in RESOURCES}),
            execution_options={"synchronize_session": False})
        node = _get(session, host)
        if result.rowcount == 0:
            raise exception.ResourceProviderGenerationConflict(
                host=host, generation=node.generation)
        session.add(Allocation(consumer_id=consumer, compute_node_id=node.id,
                               host=host, **amounts))
        try:
            session.flush()
        except sa.exc.IntegrityError:
            raise exception.Conflict(
                reason="consumer %s already has resources on %s"
                % (consumer, host)) from None
        return node


def allocation_free(consumer: str) -> int:
    """Release every allocation of ``consumer``; return how many there were.

    Each node's usage drops and its generation moves, so claims decided
    before the release are re-checked. Freeing twice is harmless.
    """
    with session_scope() as session:
        # DELETE ... RETURNING first: the write lock is taken before any
        # read, and two concurrent frees cannot both see the same rows.
        freed = session.execute(
            sa.delete(Allocation).where(Allocation.consumer_id == consumer)
            .returning(Allocation.compute_node_id, *(
                getattr(Allocation, r) for r in RESOURCES))).all()
        for row in sorted(freed):
            node_id, amounts = row[0], dict(zip(RESOURCES, row[1:], strict=True))
            session.execute(
                sa.update(ComputeNode)
                .where(ComputeNode.id == node_id)
                .values(generation=ComputeNode.generation + 1,
                        updated_at=utcnow(),
                        **{r + "_used": getattr(ComputeNode, r + "_used")
                           - amounts[r] for r in RESOURCES}),
                execution_options={"synchronize_session": False})
        return len(freed)


def allocation_get_by_consumer(consumer: str) -> list[Allocation]:
    with session_scope() as session:
        return list(session.scalars(
            sa.select(Allocation).where(Allocation.consumer_id == consumer)))


def allocation_get_all_by_host(host: str) -> list[Allocation]:
    with session_scope() as session:
        return list(session.scalars(
            sa.select(Allocation).where(Allocation.host == host)
            .order_by(Allocation.id)))


def _get(session, host: str) -> ComputeNode:
    node = session.scalars(
        sa.select(ComputeNode).where(ComputeNode.host == host)
        .execution_options(populate_existing=True)).one_or_none()
    if node is None:
        raise exception.ComputeNodeNotFound(host=host)
    return node

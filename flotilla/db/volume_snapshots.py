"""Volume snapshots (issue 11).

Rules:

* a snapshot's status changes only by compare-and-swap on the status the
  caller expects (:func:`snapshot_update`); a transitional status
  (flotilla.states.SNAPSHOT_TRANSITIONAL) carries a ``status_deadline``
  the reaper reads;
* a snapshot is created inside its project's quota check (``snapshots``
  and ``gigabytes``, the latter counting volumes and snapshots together),
  serialised per project with the volume quotas, and only while its volume
  is in one of ``volume_statuses`` — checked by an UPDATE of the volume row
  in the same transaction, which also locks the row against a concurrent
  delete;
* a volume with live snapshots cannot be deleted:
  :func:`volume_delete_begin` moves it to ``deleting`` only when none
  exists, in one UPDATE.
"""

from __future__ import annotations

import datetime
import uuid as uuidlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import sqlalchemy as sa

from flotilla import exception
from flotilla import states as st
from flotilla.db import quotas
from flotilla.db import volumes as vdb
from flotilla.db.engine import session_scope
from flotilla.db.models import Volume, VolumeSnapshot
from flotilla.db.types import utcnow


class SnapshotNotFound(exception.NotFound):
    msg_fmt = "Snapshot %(snapshot_id)s could not be found."


class SnapshotStatusConflict(exception.Conflict):
    msg_fmt = "Snapshot %(snapshot_id)s is %(actual)s, not %(expected)s"


class VolumeHasSnapshots(exception.Invalid):
    msg_fmt = "Volume %(volume_id)s has %(count)d snapshot(s): delete them first"


def _expected(expected: str | Collection[str]) -> tuple[str, ...]:
    return (expected,) if isinstance(expected, str) else tuple(expected)


def _live():
    return VolumeSnapshot.deleted.is_(False)


def snapshot_get(snapshot_id: str, project_id: str | None = None) -> VolumeSnapshot:
    """A live snapshot (of ``project_id`` when given); SnapshotNotFound else."""
    with session_scope() as session:
        row = session.get(VolumeSnapshot, snapshot_id)
        if row is None or row.deleted or (project_id is not None
                                           and row.project_id != project_id):
            raise SnapshotNotFound(snapshot_id=snapshot_id)
        return row


def snapshot_get_all(project_id: str | None = None, volume_id: str | None = None,
                     host: str | None = None) -> list[VolumeSnapshot]:
    query = sa.select(VolumeSnapshot).where(_live())
    if project_id is not None:
        query = query.where(VolumeSnapshot.project_id == project_id)
    if volume_id is not None:
        query = query.where(VolumeSnapshot.volume_id == volume_id)
    if host is not None:
        query = query.where(VolumeSnapshot.host == host)
    with session_scope() as session:
        return list(session.scalars(query.order_by(VolumeSnapshot.created_at.desc(),
                                                   VolumeSnapshot.id)))


def snapshot_get_expired(now: datetime.datetime | None = None) -> list[VolumeSnapshot]:
    """Live snapshots whose transitional status is past its deadline."""
    now = now or utcnow()
    with session_scope() as session:
        return list(session.scalars(sa.select(VolumeSnapshot).where(
            _live(), VolumeSnapshot.status.in_(st.SNAPSHOT_TRANSITIONAL),
            VolumeSnapshot.status_deadline.is_not(None),
            VolumeSnapshot.status_deadline < now)))


def snapshot_count(volume_id: str, session=None) -> int:
    def read(sess):
        return int(sess.execute(sa.select(sa.func.count(VolumeSnapshot.id)).where(
            VolumeSnapshot.volume_id == volume_id, _live())).scalar_one())
    return quotas._read(session, read)


def snapshot_create(values: Mapping[str, Any], defaults: Mapping[str, int],
                    volume_statuses: Collection[str],
                    check: Callable[[Any], None] | None = None) -> VolumeSnapshot:
    """Insert a snapshot of ``values["volume_id"]`` (its size, host and
    project taken from the volume) within the project's quota
    (VolumeOverQuota names the resource) while the volume is in one of
    ``volume_statuses`` (VolumeStatusConflict otherwise)."""
    attrs = {("metadata_" if k == "metadata" else k): v for k, v in values.items()}
    attrs.setdefault("id", str(uuidlib.uuid4()))
    volume_id = attrs["volume_id"]
    with session_scope() as session:
        volume = session.get(Volume, volume_id)
        if volume is None or volume.deleted:
            raise vdb.VolumeNotFound(volume_id=volume_id)
        quotas.lock_project(session, volume.project_id)
        # Touch the volume only in an allowed status: a compare-and-swap that
        # also holds the row until commit, so a delete cannot slip between.
        result = session.execute(
            sa.update(Volume).where(Volume.id == volume_id, Volume.deleted.is_(False),
                                    Volume.status.in_(tuple(volume_statuses)))
            .values(updated_at=utcnow()).execution_options(synchronize_session=False))
        session.refresh(volume)
        if result.rowcount != 1:
            raise vdb.VolumeStatusConflict(volume_id=volume_id, actual=volume.status,
                                           expected=" or ".join(volume_statuses))
        limits = vdb.volume_limits(volume.project_id, defaults, session)
        usage = vdb.volume_usage(volume.project_id, session)
        wanted = {"snapshots": 1, "gigabytes": int(volume.size_gb)}
        over = [r for r, n in wanted.items()
                if limits.get(r, -1) >= 0 and usage[r] + n > limits[r]]
        if over:
            raise vdb.VolumeOverQuota(resources=", ".join(over), detail="; ".join(
                "%s: requested %d, in use %d, limit %d"
                % (r, wanted[r], usage[r], limits[r]) for r in over))
        if check is not None:
            check(session)      # e.g. the volume host's space (volume_placement)
        attrs.update(size_gb=int(volume.size_gb), host=volume.host,
                     project_id=volume.project_id)
        row = VolumeSnapshot(**attrs)
        session.add(row)
        session.flush()
        return row


def snapshot_update(snapshot_id: str, values: Mapping[str, Any],
                    expected_status: str | Collection[str] | None = None
                    ) -> VolumeSnapshot:
    """Set ``values`` on a live snapshot whose status is one of
    ``expected_status`` (None: any) in one UPDATE; SnapshotStatusConflict
    names the actual status otherwise."""
    attrs = {("metadata_" if k == "metadata" else k): v for k, v in values.items()}
    attrs.setdefault("updated_at", utcnow())
    if "status" in attrs and attrs["status"] not in st.SNAPSHOT_TRANSITIONAL:
        attrs.setdefault("status_deadline", None)
    with session_scope() as session:
        conditions = [VolumeSnapshot.id == snapshot_id, _live()]
        if expected_status is not None:
            conditions.append(VolumeSnapshot.status.in_(_expected(expected_status)))
        result = session.execute(sa.update(VolumeSnapshot).where(*conditions)
                                 .values(**attrs)
                                 .execution_options(synchronize_session=False))
        row = session.get(VolumeSnapshot, snapshot_id, populate_existing=True)
        if result.rowcount != 1:
            if row is None or row.deleted:
                raise SnapshotNotFound(snapshot_id=snapshot_id)
            raise SnapshotStatusConflict(snapshot_id=snapshot_id, actual=row.status,
                                         expected=" or ".join(_expected(expected_status)))
        return row


def snapshot_destroy(snapshot_id: str, expected_status: str | Collection[str]) -> None:
    """Soft-delete a snapshot in ``expected_status``."""
    snapshot_update(snapshot_id, {"deleted": True, "deleted_at": utcnow(),
                                  "status": "deleted", "status_deadline": None},
                    expected_status)


def volume_delete_begin(volume_id: str, expected_status: Collection[str],
                        deadline_at: datetime.datetime) -> Volume:
    """Volume ``expected_status`` -> deleting, only while it has no live
    snapshot (VolumeHasSnapshots) — one UPDATE, so a snapshot created
    concurrently either exists first or finds the volume deleting."""
    no_snapshot = ~sa.exists().where(VolumeSnapshot.volume_id == Volume.id,
                                     VolumeSnapshot.deleted.is_(False))
    with session_scope() as session:
        result = session.execute(
            sa.update(Volume).where(Volume.id == volume_id, Volume.deleted.is_(False),
                                    Volume.status.in_(tuple(expected_status)), no_snapshot)
            .values(status=st.VOLUME_DELETING, status_deadline=deadline_at,
                    updated_at=utcnow())
            .execution_options(synchronize_session=False))
        row = session.get(Volume, volume_id, populate_existing=True)
        if result.rowcount == 1:
            return row
        if row is None or row.deleted:
            raise vdb.VolumeNotFound(volume_id=volume_id)
        count = snapshot_count(volume_id, session)
        if count:
            raise VolumeHasSnapshots(volume_id=volume_id, count=count)
        raise vdb.VolumeStatusConflict(volume_id=volume_id, actual=row.status,
                                       expected=" or ".join(expected_status))

"""Volumes and their attachments (issue 11).

Rules:

* a volume's status changes only by compare-and-swap on the status the
  caller expects (:func:`volume_update`); a transitional status
  (flotilla.states.VOLUME_TRANSITIONAL) always carries a
  ``status_deadline`` the reaper reads;
* a volume is created inside the project's quota check (volumes and
  gigabytes, the [quota] defaults overlaid with the project's overrides),
  serialised per project as the compute quotas are (quotas.lock_project);
* an attachment row exists from the reservation until the detach is done;
  its ``uuid`` is the attachment id the APIs show.
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
from flotilla.db.engine import session_scope
from flotilla.db.models import Instance, Quota, Volume, VolumeAttachment, VolumeSnapshot
from flotilla.db.types import utcnow


class VolumeNotFound(exception.NotFound):
    msg_fmt = "Volume %(volume_id)s could not be found."


class VolumeStatusConflict(exception.Conflict):
    msg_fmt = ("Volume %(volume_id)s is %(actual)s, not %(expected)s")


class AttachmentNotFound(exception.NotFound):
    msg_fmt = "Volume attachment %(what)s could not be found."


class VolumeOverQuota(exception.OverQuota):
    code = 413


def deadline(seconds: int) -> datetime.datetime:
    return utcnow() + datetime.timedelta(seconds=seconds)


# --- volumes ----------------------------------------------------------------------

def volume_get(volume_id: str, project_id: str | None = None) -> Volume:
    """A live volume (of ``project_id`` when given): VolumeNotFound else."""
    with session_scope() as session:
        row = session.get(Volume, volume_id)
        if row is None or row.deleted or (project_id is not None
                                           and row.project_id != project_id):
            raise VolumeNotFound(volume_id=volume_id)
        return row


def volume_get_all(project_id: str | None = None, host: str | None = None,
                   statuses: Collection[str] | None = None) -> list[Volume]:
    query = sa.select(Volume).where(Volume.deleted.is_(False))
    if project_id is not None:
        query = query.where(Volume.project_id == project_id)
    if host is not None:
        query = query.where(Volume.host == host)
    if statuses is not None:
        query = query.where(Volume.status.in_(tuple(statuses)))
    with session_scope() as session:
        return list(session.scalars(query.order_by(Volume.created_at.desc(), Volume.id)))


def volume_get_expired(now: datetime.datetime | None = None) -> list[Volume]:
    """Live volumes whose transitional status is past its deadline."""
    now = now or utcnow()
    with session_scope() as session:
        return list(session.scalars(sa.select(Volume).where(
            Volume.deleted.is_(False), Volume.status.in_(st.VOLUME_TRANSITIONAL),
            Volume.status_deadline.is_not(None), Volume.status_deadline < now)))


def _expected(expected: str | Collection[str]) -> tuple[str, ...]:
    return (expected,) if isinstance(expected, str) else tuple(expected)


def volume_update(volume_id: str, values: Mapping[str, Any],
                  expected_status: str | Collection[str] | None = None) -> Volume:
    """Set ``values`` on a live volume whose status is one of
    ``expected_status`` (None: any), in one UPDATE; VolumeStatusConflict
    names the actual status otherwise."""
    attrs = {("metadata_" if k == "metadata" else k): v for k, v in values.items()}
    attrs.setdefault("updated_at", utcnow())
    if "status" in attrs and attrs["status"] not in st.VOLUME_TRANSITIONAL:
        attrs.setdefault("status_deadline", None)
    with session_scope() as session:
        conditions = [Volume.id == volume_id, Volume.deleted.is_(False)]
        if expected_status is not None:
            conditions.append(Volume.status.in_(_expected(expected_status)))
        result = session.execute(sa.update(Volume).where(*conditions).values(**attrs)
                                 .execution_options(synchronize_session=False))
        row = session.get(Volume, volume_id, populate_existing=True)
        if result.rowcount != 1:
            if row is None or row.deleted:
                raise VolumeNotFound(volume_id=volume_id)
            raise VolumeStatusConflict(volume_id=volume_id, actual=row.status,
                                       expected=" or ".join(_expected(expected_status)))
        return row


def volume_destroy(volume_id: str, expected_status: str | Collection[str]) -> None:
    """Soft-delete a volume in ``expected_status`` (the row stays, deleted)."""
    now = utcnow()
    volume_update(volume_id, {"deleted": True, "deleted_at": now, "status": "deleted",
                              "status_deadline": None}, expected_status)


# --- quota ----------------------------------------------------------------------

def volume_limits(project_id: str, defaults: Mapping[str, int], session=None
                  ) -> dict[str, int]:
    """The effective volumes/gigabytes limits: the defaults, the default
    quota class's and the project's overrides."""
    def read(sess):
        limits = {k: int(v) for k, v in defaults.items()}
        quotas._overlay(limits, quotas._class_rows(sess, quotas.DEFAULT_CLASS))
        quotas._overlay(limits, quotas._project_rows(sess, project_id))
        return limits
    return quotas._read(session, read)


def set_volume_limits(project_id: str, limits: Mapping[str, int]) -> None:
    with session_scope() as session:
        for resource, limit in limits.items():
            if int(limit) < -1:
                raise exception.Invalid(reason="a limit is -1 (unlimited) or at least 0")
            quotas._upsert(session, Quota, {"project_id": project_id,
                                            "resource": resource}, int(limit))


def volume_usage(project_id: str, session=None) -> dict[str, int]:
    """What the project uses: ``volumes``, ``snapshots`` and ``gigabytes``
    (its live volumes' and snapshots' sizes, as Cinder counts them)."""
    def read(sess):
        count, total = sess.execute(sa.select(
            sa.func.count(Volume.id), sa.func.coalesce(sa.func.sum(Volume.size_gb), 0))
            .where(Volume.project_id == project_id, Volume.deleted.is_(False))).one()
        snaps, snap_total = sess.execute(sa.select(
            sa.func.count(VolumeSnapshot.id),
            sa.func.coalesce(sa.func.sum(VolumeSnapshot.size_gb), 0))
            .where(VolumeSnapshot.project_id == project_id,
                   VolumeSnapshot.deleted.is_(False))).one()
        return {"volumes": int(count), "snapshots": int(snaps),
                "gigabytes": int(total) + int(snap_total)}
    return quotas._read(session, read)


def volume_create(values: Mapping[str, Any], defaults: Mapping[str, int],
                  check: Callable[[Any], None] | None = None) -> Volume:
    """Insert a volume (status creating) within its project's quota;
    VolumeOverQuota (413) names the resource otherwise. ``check`` (given
    the session, after the quota check) may refuse the insert by raising,
    e.g. flotilla.volume_placement.space_guard."""
    attrs = {("metadata_" if k == "metadata" else k): v for k, v in values.items()}
    attrs.setdefault("id", str(uuidlib.uuid4()))
    project_id = attrs["project_id"]
    with session_scope() as session:
        quotas.lock_project(session, project_id)
        limits = volume_limits(project_id, defaults, session)
        usage = volume_usage(project_id, session)
        wanted = {"volumes": 1, "gigabytes": int(attrs["size_gb"])}
        over = [r for r, n in wanted.items()
                if limits.get(r, -1) >= 0 and usage[r] + n > limits[r]]
        if over:
            raise VolumeOverQuota(resources=", ".join(over), detail="; ".join(
                "%s: requested %d, in use %d, limit %d"
                % (r, wanted[r], usage[r], limits[r]) for r in over))
        if check is not None:
            check(session)
        row = Volume(**attrs)
        session.add(row)
        session.flush()
        return row


def volume_extend_begin(volume_id: str, new_size_gb: int, expected_status: str,
                        defaults: Mapping[str, int], deadline_at: datetime.datetime,
                        check: Callable[[Any], None] | None = None) -> int:
    """Reserve an extend: within the project's ``gigabytes`` quota (the
    growth counts; VolumeOverQuota otherwise), status ``expected_status`` ->
    extending and ``size_gb`` -> ``new_size_gb`` in one transaction, so a
    concurrent create or extend sees the gigabytes taken. The old size,
    which a failed extend puts back. VolumeStatusConflict when the status
    moved; Invalid when the size is not larger any more. ``check`` (given
    the session, after the quota check) may refuse by raising, as
    volume_create's (the host's space for the growth)."""
    with session_scope() as session:
        row = session.get(Volume, volume_id)
        if row is None or row.deleted:
            raise VolumeNotFound(volume_id=volume_id)
        quotas.lock_project(session, row.project_id)
        session.refresh(row)
        old = int(row.size_gb)
        if new_size_gb <= old:
            raise exception.Invalid(reason="new_size %d is not larger than the size %d"
                                    % (new_size_gb, old))
        limits = volume_limits(row.project_id, defaults, session)
        usage = volume_usage(row.project_id, session)
        limit = limits.get("gigabytes", -1)
        growth = new_size_gb - old
        if limit >= 0 and usage["gigabytes"] + growth > limit:
            raise VolumeOverQuota(resources="gigabytes", detail=(
                "gigabytes: requested %d, in use %d, limit %d"
                % (growth, usage["gigabytes"], limit)))
        if check is not None:
            check(session)
        result = session.execute(
            sa.update(Volume).where(Volume.id == volume_id, Volume.deleted.is_(False),
                                    Volume.status == expected_status)
            .values(status=st.VOLUME_EXTENDING, size_gb=new_size_gb,
                    status_deadline=deadline_at, status_reason=None, updated_at=utcnow())
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            session.refresh(row)
            raise VolumeStatusConflict(volume_id=volume_id, actual=row.status,
                                       expected=expected_status)
        return old


def volume_extend_failed(volume_id: str, old_size_gb: int, reason: str) -> bool:
    """End a failed extend (the reverse of :func:`volume_extend_begin`):
    extending -> in-use while the volume is attached (it must stay usable:
    detached, extended again, released with its server; nothing resets an
    error_extending volume), else error_extending, with the old size back and
    ``reason``. Whether it moved (False: no longer extending)."""
    attached = bool(attachments_of_volume(volume_id))
    values = {"status": st.VOLUME_IN_USE if attached else st.VOLUME_ERROR_EXTENDING,
              "size_gb": old_size_gb, "status_reason": reason[:1000]}
    try:
        volume_update(volume_id, values, expected_status=st.VOLUME_EXTENDING)
    except (VolumeStatusConflict, VolumeNotFound):
        return False
    return True

# --- attachments ----------------------------------------------------------------

def attachment_create(volume_id: str, instance_uuid: str, host: str | None,
                      delete_on_termination: bool = False,
                      boot_index: int | None = None,
                      tag: str | None = None) -> VolumeAttachment:
    with session_scope() as session:
        row = VolumeAttachment(volume_id=volume_id, instance_uuid=instance_uuid,
                               host=host, status=st.VOLUME_ATTACHING,
                               uuid=str(uuidlib.uuid4()),
                               delete_on_termination=delete_on_termination,
                               boot_index=boot_index, tag=tag)
        session.add(row)
        session.flush()
        return row


def attachment_get(attachment_uuid: str) -> VolumeAttachment:
    with session_scope() as session:
        row = session.scalars(sa.select(VolumeAttachment).where(
            VolumeAttachment.uuid == attachment_uuid)).one_or_none()
        if row is None:
            raise AttachmentNotFound(what=attachment_uuid)
        return row


def attachments_of_volume(volume_id: str) -> list[VolumeAttachment]:
    with session_scope() as session:
        return list(session.scalars(sa.select(VolumeAttachment).where(
            VolumeAttachment.volume_id == volume_id).order_by(VolumeAttachment.id)))


def attachments_of_volumes(volume_ids: Collection[str]) -> dict[str, list[VolumeAttachment]]:
    result: dict[str, list[VolumeAttachment]] = {v: [] for v in volume_ids}
    if not volume_ids:
        return result
    with session_scope() as session:
        for row in session.scalars(sa.select(VolumeAttachment).where(
                VolumeAttachment.volume_id.in_(tuple(volume_ids)))
                .order_by(VolumeAttachment.id)):
            result[row.volume_id].append(row)
    return result


def attachments_of_instance(instance_uuid: str) -> list[VolumeAttachment]:
    with session_scope() as session:
        return list(session.scalars(sa.select(VolumeAttachment).where(
            VolumeAttachment.instance_uuid == instance_uuid).order_by(VolumeAttachment.id)))


def unsettled_volume(instance_uuid: str) -> Volume | None:
    """The first of the server's volumes whose attach or detach is under
    way (its attachment not ``attached`` with a connection, or the volume
    not ``in-use``), else None. A server moving to another host takes its
    volumes with the connections their attachments record: none may be
    unsettled when a move starts."""
    for attachment in attachments_of_instance(instance_uuid):
        volume = volume_get(attachment.volume_id)
        if attachment.status != "attached" or not attachment.connection_info \
                or volume.status != st.VOLUME_IN_USE:
            return volume
    return None


def attachment_update(attachment_uuid: str, values: Mapping[str, Any]) -> None:
    with session_scope() as session:
        session.execute(sa.update(VolumeAttachment).where(
            VolumeAttachment.uuid == attachment_uuid).values(updated_at=utcnow(), **values))


def attachment_release(attachment_uuid: str, volume_id: str, values: Mapping[str, Any],
                       expected_status: str | Collection[str]) -> Volume:
    """In one transaction: set ``values`` on the volume by compare-and-swap
    on ``expected_status`` (VolumeStatusConflict / VolumeNotFound, and
    nothing changes) and remove the attachment, so no reader sees the one
    without the other."""
    attrs = {("metadata_" if k == "metadata" else k): v for k, v in values.items()}
    attrs.setdefault("updated_at", utcnow())
    if "status" in attrs and attrs["status"] not in st.VOLUME_TRANSITIONAL:
        attrs.setdefault("status_deadline", None)
    with session_scope() as session:
        result = session.execute(
            sa.update(Volume).where(Volume.id == volume_id, Volume.deleted.is_(False),
                                    Volume.status.in_(_expected(expected_status)))
            .values(**attrs).execution_options(synchronize_session=False))
        row = session.get(Volume, volume_id, populate_existing=True)
        if result.rowcount != 1:
            if row is None or row.deleted:
                raise VolumeNotFound(volume_id=volume_id)
            raise VolumeStatusConflict(volume_id=volume_id, actual=row.status,
                                       expected=" or ".join(_expected(expected_status)))
        session.execute(sa.delete(VolumeAttachment).where(
            VolumeAttachment.uuid == attachment_uuid))
        return row


def attachment_delete(attachment_uuid: str) -> None:
    with session_scope() as session:
        session.execute(sa.delete(VolumeAttachment).where(
            VolumeAttachment.uuid == attachment_uuid))


def attachments_of_host(host: str) -> dict[str, list[str]]:
    """``{instance uuid: [volume id, ...]}`` of every attachment row naming
    compute host ``host`` or an instance recorded on it (whatever its
    status: a reserved or attaching volume's flow is still in progress; and
    whichever host the row names, so a guest that moved keeps its disks)."""
    result: dict[str, list[str]] = {}
    on_host = sa.select(Instance.uuid).where(Instance.host == host,
                                             Instance.deleted.is_(False))
    with session_scope() as session:
        for instance_uuid, volume_id in session.execute(sa.select(
                VolumeAttachment.instance_uuid, VolumeAttachment.volume_id).where(
                sa.or_(VolumeAttachment.host == host,
                       VolumeAttachment.instance_uuid.in_(on_host)))):
            result.setdefault(instance_uuid, []).append(volume_id)
    return result


def exported_volumes(host: str) -> list[Volume]:
    """Volumes of volume host ``host`` that have an attachment (their NBD
    export must exist while they do)."""
    with session_scope() as session:
        return list(session.scalars(sa.select(Volume).where(
            Volume.deleted.is_(False), Volume.host == host,
            Volume.id.in_(sa.select(VolumeAttachment.volume_id)))))

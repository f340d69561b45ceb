"""Images made from volumes (``os-volume_upload_image``): what the API, the
volume service, the reaper and a restarted volume service share.

Rules:

* the image is created ``queued`` by the API, owned by the volume's
  project, within that project's image quota and property quota
  (flotilla.images.create_snapshot_image); it carries the volume's image
  metadata (``volume_image_metadata``) as properties, except the ones
  Glance keeps in its own fields (Cinder's ``glance_core_properties``), and
  the internal property ``_volume_upload`` naming the volume, by which the
  reaper and a restarted volume service find the image of an upload;
* while the copy runs the volume is ``uploading`` (a transitional status
  with a deadline); it always ends back in ``in-use`` when it has an
  attachment, else ``available`` (as Cinder's
  volume_update_status_based_on_attachment), by compare-and-swap from
  ``uploading``, whatever the upload's outcome. A server deleted meanwhile
  releases its volume (``uploading`` is releasable, conductor.flows.volume:
  what is read is a point-in-time copy, and Cinder lets a detach end an
  upload too); the upload then finds it released and leaves it so;
* the volume records which upload owns it: while ``uploading`` its status
  reason is :func:`owner_reason` (the image id, and whether it was
  ``in-use`` when the upload began, so the volume service takes a
  point-in-time copy even when a release lands before it looks). Whatever
  puts an uploading volume back (the upload's end, the reaper, a restart)
  does so only by compare-and-swap on that owner, so an ended upload can
  never end a later upload of the same volume;
* the deadline is a heartbeat: the volume service sets it ([volume]
  operation_timeout from now) when it starts and again every
  :func:`heartbeat_interval` while it copies (:func:`extend_deadline`, which
  also touches the image's updated_at), so the reaper only ends an upload
  whose service stopped making progress;
* an unfinished image carrying ``_volume_upload`` whose volume is not
  uploading to it (released, reaped, deleted) and that nobody touched for
  the deadline is an orphan (its service died after a release):
  :func:`discard_orphans` (the reaper, and a restarted volume service for
  its own volumes without waiting) discards it;
* an image whose copy failed, timed out or was interrupted is discarded
  (deleted with its data, or ``killed`` with the reason when deleting
  fails: flotilla.images.discard_image). Only images still ``queued`` or
  ``saving`` are discarded: an active one is the user's.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid

import sqlalchemy as sa
from oslo_config import cfg

from flotilla import exception, images
from flotilla import states as st
from flotilla.db import images as db_images
from flotilla.db import volumes as vdb
from flotilla.db.engine import session_scope
from flotilla.db.models import Image, Volume
from flotilla.db.types import utcnow

LOG = logging.getLogger(__name__)

VOLUME_KEY = db_images.VOLUME_UPLOAD_KEY
#: Keys of a volume's image metadata that are fields of the image, not
#: properties (Cinder's default ``glance_core_properties``).
CORE_PROPERTIES = frozenset({"checksum", "container_format", "disk_format", "image_name",
                             "image_id", "min_disk", "min_ram", "name", "size"})
#: Image statuses of an upload not done yet (what a failure discards).
PENDING = ("queued", "saving")
#: The status reason of a volume uploading to an image: who owns it.
OWNER_PREFIX = "uploading to image "
#: Added to the owner reason when the volume was in-use as the upload began.
IN_USE_MARK = " (in-use: read through a point-in-time copy)"


def owner_reason(image_id: str, in_use: bool) -> str:
    """The status reason recording that ``image_id``'s upload owns the volume."""
    return OWNER_PREFIX + image_id + (IN_USE_MARK if in_use else "")


def owner_of(volume) -> str | None:
    """The image whose upload owns ``volume`` (a row), None if none does."""
    reason = volume.status_reason or ""
    if volume.status != st.VOLUME_UPLOADING or not reason.startswith(OWNER_PREFIX):
        return None
    return reason[len(OWNER_PREFIX):].split(" ", 1)[0]


def began_in_use(volume) -> bool:
    """Whether the volume was in-use when its upload began (see owner_reason)."""
    return owner_of(volume) is not None and (volume.status_reason or "").endswith(IN_USE_MARK)


def _owned(image_id: str) -> list:
    """The conditions of a volume the upload to ``image_id`` owns."""
    return [Volume.deleted.is_(False), Volume.status == st.VOLUME_UPLOADING,
            Volume.status_reason.in_([owner_reason(image_id, False),
                                      owner_reason(image_id, True)])]


def image_values(volume, name: str, disk_format: str, container_format: str,
                 visibility: str, protected: bool) -> dict:
    """The row of the image a copy of ``volume`` (a volume row) becomes."""
    properties = {k: v for k, v in (volume.image_metadata or {}).items()
                  if k not in CORE_PROPERTIES and k not in db_images.INTERNAL_PROPERTIES}
    properties.update({db_images.PROTECTED_KEY: bool(protected), db_images.TAGS_KEY: [],
                       db_images.HIDDEN_KEY: False, VOLUME_KEY: volume.id})
    return {"id": str(uuid.uuid4()), "name": name, "owner": volume.project_id,
            "status": "queued", "disk_format": disk_format,
            "container_format": container_format, "visibility": visibility,
            "min_disk": 0, "min_ram": 0, "properties": properties}


def pending_images(volume_id: str) -> list[Image]:
    """The live images of ``volume_id``'s uploads that are not done yet."""
    with session_scope() as session:
        rows = list(session.scalars(sa.select(Image).where(
            Image.deleted.is_(False), Image.status.in_(PENDING))))
    return [i for i in rows if (i.properties or {}).get(VOLUME_KEY) == volume_id]


def discard_pending(conf: cfg.ConfigOpts, volume_id: str, reason: str) -> list[str]:
    """Discard every unfinished image of ``volume_id``'s uploads; their ids."""
    done = []
    for image in pending_images(volume_id):
        what = images.discard_image(conf, image.id, reason)
        LOG.warning("image %s of volume %s %s: %s", image.id, volume_id, what, reason)
        done.append(image.id)
    return done


def settled_status(volume_id: str) -> str:
    """Where an upload leaves the volume: in-use when attached, else available."""
    return st.VOLUME_IN_USE if vdb.attachments_of_volume(volume_id) else st.VOLUME_AVAILABLE


def claim_unowned(volume_id: str, image_id: str, in_use: bool) -> bool:
    """An upload begun by an API that did not record owners (a rolling
    upgrade): the upload to ``image_id`` takes the uploading volume when no
    owner is recorded and no other upload of it is unfinished; whether it did."""
    if [i for i in pending_images(volume_id) if i.id != image_id]:
        return False
    with session_scope() as session:
        return session.execute(sa.update(Volume).where(
            Volume.id == volume_id, Volume.deleted.is_(False),
            Volume.status == st.VOLUME_UPLOADING, Volume.status_reason.is_(None))
            .values(status_reason=owner_reason(image_id, in_use))
            .execution_options(synchronize_session=False)).rowcount == 1


def end_upload(volume_id: str, image_id: str, reason: str | None = None) -> str | None:
    """Put a volume the upload to ``image_id`` owns back (see
    :func:`settled_status`), with ``reason`` as its status reason; the
    status it got, None when that upload no longer owns it (released,
    reaped, ended by a restart, uploading to another image) or it is gone."""
    to = settled_status(volume_id)
    with session_scope() as session:
        done = session.execute(sa.update(Volume).where(Volume.id == volume_id, *_owned(image_id))
                               .values(status=to, status_reason=reason, status_deadline=None,
                                       updated_at=utcnow())
                               .execution_options(synchronize_session=False)).rowcount
    if done != 1:
        LOG.info("volume %s not put back after its upload to image %s: no longer "
                 "uploading to it", volume_id, image_id)
        return None
    return to


def heartbeat_interval(conf: cfg.ConfigOpts) -> float:
    """How often a running upload extends its deadline (well within it)."""
    return max(1.0, conf.volume.operation_timeout / 4.0)


def extend_deadline(conf: cfg.ConfigOpts, volume_id: str, image_id: str) -> bool:
    """The running upload to ``image_id`` is alive: its volume's deadline
    moves to [volume] operation_timeout from now (while it still owns the
    volume) and its unfinished image is touched (see discard_orphans);
    whether it still owns the volume."""
    now = utcnow()
    with session_scope() as session:
        owned = session.execute(
            sa.update(Volume).where(Volume.id == volume_id, *_owned(image_id))
            .values(status_deadline=vdb.deadline(conf.volume.operation_timeout))
            .execution_options(synchronize_session=False)).rowcount == 1
        session.execute(sa.update(Image).where(Image.id == image_id, Image.deleted.is_(False),
                                               Image.status.in_(PENDING))
                        .values(updated_at=now).execution_options(synchronize_session=False))
    return owned


def reap_upload(conf: cfg.ConfigOpts, volume) -> str | None:
    """The reaper: end the upload of ``volume`` (a row read past its
    deadline) if the same upload still owns it and it is still past its
    deadline (a heartbeat or a later upload wins), and discard its image;
    the status the volume got, None when it moved on."""
    to = settled_status(volume.id)
    reason = volume.status_reason
    same = Volume.status_reason.is_(None) if reason is None else Volume.status_reason == reason
    with session_scope() as session:
        done = session.execute(sa.update(Volume).where(
            Volume.id == volume.id, Volume.deleted.is_(False),
            Volume.status == st.VOLUME_UPLOADING, same,
            Volume.status_deadline < utcnow()).values(
                status=to, status_deadline=None, updated_at=utcnow(),
                status_reason="uploading timed out (deadline %s)"
                % volume.status_deadline.isoformat())
            .execution_options(synchronize_session=False)).rowcount
    if done != 1:
        return None
    image_id = owner_of(volume)
    if image_id is None:      # recorded before owners were: every unfinished one
        discard_pending(conf, volume.id, "the upload timed out")
    else:
        with contextlib.suppress(exception.ImageNotFound):
            if db_images.image_get(image_id).status in PENDING:
                LOG.warning("image %s of volume %s %s: the upload timed out", image_id,
                            volume.id, images.discard_image(conf, image_id,
                                                            "the upload timed out"))
    return to


def discard_orphans(conf: cfg.ConfigOpts, older_than: float | None = None,
                    host: str | None = None) -> list[str]:
    """Discard the unfinished images of uploads whose volume is not
    uploading to them and that nobody touched for ``older_than`` seconds
    (None: whatever their age); only of volumes of ``host`` when given (a
    restarted service: none of its uploads runs). Their ids."""
    with session_scope() as session:
        rows = [i for i in session.scalars(sa.select(Image).where(
            Image.deleted.is_(False), Image.status.in_(PENDING)))
            if (i.properties or {}).get(VOLUME_KEY)]
        volumes = {v.id: v for v in session.scalars(sa.select(Volume).where(
            Volume.id.in_({i.properties[VOLUME_KEY] for i in rows})))}
    limit = utcnow() - datetime.timedelta(seconds=older_than or 0)
    done = []
    for image in rows:
        volume = volumes.get(image.properties[VOLUME_KEY])
        if host is not None and (volume is None or volume.host != host):
            continue
        if volume is not None and not volume.deleted and owner_of(volume) == image.id:
            continue      # its upload owns the volume: the reaper ends it
        if volume is not None and not volume.deleted and owner_of(volume) is None \
                and volume.status == st.VOLUME_UPLOADING:
            continue      # an upload recorded before owners were: the reaper's
        if older_than is not None and (image.updated_at or image.created_at) > limit:
            continue      # maybe alive (a released upload still copying)
        reason = "its upload ended without it (the volume service stopped)"
        LOG.warning("image %s of volume %s %s: %s", image.id, image.properties[VOLUME_KEY],
                    images.discard_image(conf, image.id, reason), reason)
        done.append(image.id)
    return done


def forget_volume(image_id: str) -> None:
    """Drop the internal volume property of a finished image (best effort)."""
    try:
        image = db_images.image_get(image_id)
        properties = {k: v for k, v in (image.properties or {}).items() if k != VOLUME_KEY}
        db_images.image_update(image_id, {"properties": properties})
    except exception.FlotillaException as exc:
        LOG.info("image %s keeps its volume property: %s", image_id, exc)

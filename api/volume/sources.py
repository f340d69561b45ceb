"""Where a new volume's first bytes come from: a volume snapshot, another
volume or an image (``snapshot_id`` / ``source_volid`` / ``imageRef`` of a
volume create).

Rules (as Cinder answers the clients):

* at most one source (400 naming the second);
* ``snapshot_id``: a snapshot of the caller's project (404 otherwise),
  ``available`` (400 naming ``snapshot_id``); the volume is made on the
  snapshot's volume host (the file is there); the size defaults to the
  snapshot's and may not be smaller (400 naming ``size``); it is
  ``bootable`` and shows ``volume_image_metadata`` as the snapshot's volume
  does (so a snapshot of a boot volume gives a volume that boots);
* ``imageRef``: an active image the project may use (400 naming
  ``imageRef`` otherwise, as Cinder); ``size`` is required and must hold the
  image: at least its ``min_disk`` and its virtual size, rounded up to GiB
  (400 naming ``size``); the image's metadata is kept on the volume
  (``volume_image_metadata``, string values as Cinder stores them);
* ``source_volid`` (a clone): a volume of the caller's project (404
  otherwise), ``available`` or ``in-use`` (400 naming ``source_volid``;
  Cinder's SRC_VOL_PROCEED_STATUS); made on the source's volume host (the
  volume service copies the file there, point in time); the size defaults
  to the source's and may not be smaller (400 naming ``size``); it is
  ``bootable`` and shows ``volume_image_metadata`` as the source does. The
  source must still be in one of those statuses when the clone is recorded
  (:func:`source_guard`, in the same transaction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from api import errors, policy
from flotilla import binaries, exception, images
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.db.models import Volume
from flotilla.db.types import utcnow
from flotilla.volume_placement import image_metadata

GIB = 1024 ** 3
#: The statuses a volume may be cloned in (Cinder's SRC_VOL_PROCEED_STATUS):
#: a point-in-time copy, as a snapshot, so a snapshot's statuses.
CLONE_SOURCE_STATUSES = st.SNAPSHOT_VOLUME_STATUSES
#: The create's keys naming a source, in the order a conflict names them.
SOURCE_KEYS = ("snapshot_id", "source_volid", "imageRef")


@dataclasses.dataclass
class Source:
    snapshot_id: str | None = None
    source_volid: str | None = None
    image_id: str | None = None
    host: str | None = None
    #: the size a volume gets when the request names none (None: required)
    min_size_gb: int | None = None
    #: the smallest size that holds the source
    needs_gb: int = 0
    image_metadata: dict[str, str] | None = None
    #: a volume from a snapshot (or a clone) boots as its origin did
    bootable: bool = False

    @property
    def is_set(self) -> bool:
        return bool(self.snapshot_id or self.source_volid or self.image_id)

    @property
    def what(self) -> str:
        """What the source is called in messages."""
        return ("snapshot" if self.snapshot_id else
                "source volume" if self.source_volid else "image")

    def columns(self) -> dict[str, Any]:
        """The volume row's columns naming the source."""
        if not self.is_set:
            return {}
        columns = {"snapshot_id": self.snapshot_id, "image_id": self.image_id,
                   "source_volid": self.source_volid,
                   "image_metadata": self.image_metadata}
        if self.snapshot_id or self.source_volid:
            # From an image the volume service sets it once the image is in.
            columns["bootable"] = self.bootable
        return columns


def _given(value) -> bool:
    return value not in (None, "")


def _string(field: str, value) -> str:
    if not isinstance(value, str):
        raise errors.bad_request("Invalid input for field/attribute %s. "
                                 "It must be a string." % field)
    return value


def _source_volume(ctx, source_volid) -> Source:
    source_volid = _string("source_volid", source_volid)
    try:
        origin = vdb.volume_get(source_volid, project_id=policy.project_filter(ctx))
    except vdb.VolumeNotFound:
        raise errors.not_found("Volume %s could not be found." % source_volid[:64]) \
            from None
    if origin.status not in CLONE_SOURCE_STATUSES:
        raise errors.bad_request("Invalid input for field/attribute source_volid. "
                                 "Originating source volume %s status must be one of "
                                 "'%s' values, but current status is: %s."
                                 % (origin.id, ", ".join(CLONE_SOURCE_STATUSES),
                                    origin.status))
    return Source(source_volid=origin.id, host=origin.host, min_size_gb=origin.size_gb,
                  needs_gb=origin.size_gb,
                  image_metadata=dict(origin.image_metadata)
                  if origin.image_metadata else None,
                  bootable=bool(origin.bootable))


def source_guard(source: Source) -> Callable[[Any], None] | None:
    """For flotilla.db.volumes.volume_create's ``check``: the source volume
    is still ``available`` or ``in-use`` when the clone is inserted (a
    compare-and-swap that holds the source's row until commit, so a delete
    cannot begin between; VolumeStatusConflict otherwise). None when the
    source is not a volume."""
    if not source.source_volid:
        return None

    def check(session) -> None:
        result = session.execute(
            sa.update(Volume).where(Volume.id == source.source_volid,
                                    Volume.deleted.is_(False),
                                    Volume.status.in_(CLONE_SOURCE_STATUSES))
            .values(updated_at=utcnow())
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            row = session.get(Volume, source.source_volid)
            raise vdb.VolumeStatusConflict(
                volume_id=source.source_volid,
                actual=row.status if row is not None and not row.deleted else "deleted",
                expected=" or ".join(CLONE_SOURCE_STATUSES))
    return check


def resolve(ctx, conf, args: dict) -> Source:
    given = [key for key in SOURCE_KEYS if _given(args.get(key))]
    if len(given) > 1:
        raise errors.bad_request("Invalid input for field/attribute %s. A volume is "
                                 "made from one source: snapshot_id, source_volid or "
                                 "imageRef." % given[1])
    snapshot_id, image_id = args.get("snapshot_id"), args.get("imageRef")
    if _given(args.get("source_volid")):
        return _source_volume(ctx, args["source_volid"])
    if snapshot_id not in (None, ""):
        snapshot_id = _string("snapshot_id", snapshot_id)
        try:
            snap = sdb.snapshot_get(snapshot_id, project_id=policy.project_filter(ctx))
        except sdb.SnapshotNotFound:
            raise errors.not_found("Snapshot %s could not be found." % snapshot_id[:64]) \
                from None
        if snap.status != "available":
            raise errors.bad_request("Invalid input for field/attribute snapshot_id. "
                                     "Snapshot %s status must be available, but "
                                     "current status is: %s." % (snap.id, snap.status))
        try:
            origin = vdb.volume_get(snap.volume_id)
        except vdb.VolumeNotFound:
            origin = None    # cannot happen while the snapshot lives; be plain
        return Source(snapshot_id=snap.id, host=snap.host, min_size_gb=snap.size_gb,
                      needs_gb=snap.size_gb,
                      image_metadata=dict(origin.image_metadata)
                      if origin is not None and origin.image_metadata else None,
                      bootable=bool(origin is not None and origin.bootable))
    if image_id not in (None, ""):
        image_id = _string("imageRef", image_id)
        try:
            image = images.check_image_usable(ctx, image_id)
        except exception.ImageNotFound as exc:
            raise errors.bad_request("Invalid input for field/attribute imageRef. "
                                     "Invalid image identifier or unable to access "
                                     "requested image: %s" % str(exc)) from None
        virtual = int(image.virtual_size or image.size or 0)
        needs = max(int(image.min_disk or 0), -(-virtual // GIB))
        return Source(image_id=image.id, needs_gb=needs,
                      image_metadata=image_metadata(image))
    return Source()


def check_size(source: Source, size_gb: int) -> None:
    if source.needs_gb and size_gb < source.needs_gb:
        raise errors.bad_request("Invalid input for field/attribute size. Value: %d. "
                                 "Volume size %dGiB cannot be smaller than the %s size "
                                 "%dGiB." % (size_gb, size_gb, source.what,
                                             source.needs_gb))


def host_is_up(conf, host: str | None) -> bool:
    """Whether the volume service of ``host`` is up and enabled."""
    if not host:
        return False
    return any(s.host == host and not s.disabled
               and db.service_is_up(s, conf.service_down_time)
               for s in db.service_get_all(binary=binaries.VOLUME))

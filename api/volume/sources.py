"""Where a new volume's first bytes come from: a volume snapshot or an
image (``snapshot_id`` / ``imageRef`` of a volume create).

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
  (``volume_image_metadata``, string values as Cinder stores them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from api import errors, policy
from flotilla import binaries, exception, images
from flotilla.db import api as db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.volume_placement import image_metadata

GIB = 1024 ** 3


@dataclasses.dataclass
class Source:
    snapshot_id: str | None = None
    image_id: str | None = None
    host: str | None = None
    #: the size a volume gets when the request names none (None: required)
    min_size_gb: int | None = None
    #: the smallest size that holds the source
    needs_gb: int = 0
    image_metadata: dict[str, str] | None = None
    #: a volume from a snapshot boots as the snapshot's volume did
    bootable: bool = False

    @property
    def is_set(self) -> bool:
        return bool(self.snapshot_id or self.image_id)

    def columns(self) -> dict[str, Any]:
        """The volume row's columns naming the source."""
        if not self.is_set:
            return {}
        columns = {"snapshot_id": self.snapshot_id, "image_id": self.image_id,
                   "image_metadata": self.image_metadata}
        if self.snapshot_id:
            # From an image the volume service sets it once the image is in.
            columns["bootable"] = self.bootable
        return columns


def resolve(ctx, conf, args: dict) -> Source:
    snapshot_id, image_id = args.get("snapshot_id"), args.get("imageRef")
    if snapshot_id not in (None, "") and image_id not in (None, ""):
        raise errors.bad_request("Invalid input for field/attribute imageRef. A volume "
                                 "is made from one source: snapshot_id or imageRef.")
    if snapshot_id not in (None, ""):
        if not isinstance(snapshot_id, str):
            raise errors.bad_request("Invalid input for field/attribute snapshot_id. "
                                     "It must be a string.")
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
        if not isinstance(image_id, str):
            raise errors.bad_request("Invalid input for field/attribute imageRef. "
                                     "It must be a string.")
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
        what = "snapshot" if source.snapshot_id else "image"
        raise errors.bad_request("Invalid input for field/attribute size. Value: %d. "
                                 "Volume size %dGiB cannot be smaller than the %s size "
                                 "%dGiB." % (size_gb, size_gb, what, source.needs_gb))


def host_is_up(conf, host: str | None) -> bool:
    """Whether the volume service of ``host`` is up and enabled."""
    if not host:
        return False
    return any(s.host == host and not s.disabled
               and db.service_is_up(s, conf.service_down_time)
               for s in db.service_get_all(binary=binaries.VOLUME))

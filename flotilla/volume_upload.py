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
* an image whose copy failed, timed out or was interrupted is discarded
  (deleted with its data, or ``killed`` with the reason when deleting
  fails: flotilla.images.discard_image). Only images still ``queued`` or
  ``saving`` are discarded: an active one is the user's.
"""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from oslo_config import cfg

from flotilla import exception, images
from flotilla import states as st
from flotilla.db import images as db_images
from flotilla.db import volumes as vdb
from flotilla.db.engine import session_scope
from flotilla.db.models import Image

LOG = logging.getLogger(__name__)

VOLUME_KEY = db_images.VOLUME_UPLOAD_KEY
#: Keys of a volume's image metadata that are fields of the image, not
#: properties (Cinder's default ``glance_core_properties``).
CORE_PROPERTIES = frozenset({"checksum", "container_format", "disk_format", "image_name",
                             "image_id", "min_disk", "min_ram", "name", "size"})
#: Image statuses of an upload not done yet (what a failure discards).
PENDING = ("queued", "saving")


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


def end_upload(volume_id: str, reason: str | None = None) -> str | None:
    """Put an uploading volume back (see :func:`settled_status`), with
    ``reason`` as its status reason; the status it got, None when it was no
    longer uploading (the reaper or a restart ended it already) or is gone."""
    to = settled_status(volume_id)
    try:
        vdb.volume_update(volume_id, {"status": to, "status_reason": reason},
                          expected_status=st.VOLUME_UPLOADING)
    except (vdb.VolumeNotFound, vdb.VolumeStatusConflict) as exc:
        LOG.info("volume %s not put back after its upload: %s", volume_id, exc)
        return None
    return to


def forget_volume(image_id: str) -> None:
    """Drop the internal volume property of a finished image (best effort)."""
    try:
        image = db_images.image_get(image_id)
        properties = {k: v for k, v in (image.properties or {}).items() if k != VOLUME_KEY}
        db_images.image_update(image_id, {"properties": properties})
    except exception.FlotillaException as exc:
        LOG.info("image %s keeps its volume property: %s", image_id, exc)

"""Re-imaging a volume in place: a volume-backed server's rebuild (compute
2.93, Cinder's ``reimage``; volume RPC 1.6).

Rules:

* the conductor's rebuild flow has stopped the guest, removed the volume's
  NBD export (so no block node keeps serving, or caching, the old bytes)
  and moved the volume in-use -> ``downloading`` (with a deadline the
  reaper reads) before it calls; a volume in another status is refused,
  untouched;
* the image is written over the same volume file the way a volume made
  from an image is filled (:func:`volume.images.write_image`: fetched,
  checked, converted with ``qemu-img convert -n``); the volume keeps its
  id, size, file and attachment; an image larger than the volume is
  refused before anything is written;
* the answer says what happened: ``error`` None on success, else the
  reason, and ``written`` whether the volume's bytes may have changed (a
  refusal before the convert leaves them as they were; a failed convert
  may have half written them). The status is the flow's to move on;
* a volume service killed during a re-image leaves it ``downloading``:
  its start-up recovery ends it in ``error`` (volume.recovery).
"""

from __future__ import annotations

import logging
from typing import Any

from compute.virt.libvirt.imagecache import ImageError
from flotilla import diskimage, exception
from flotilla import states as st
from flotilla.db import volumes as vdb
from volume import images
from volume.snapshots import reason

LOG = logging.getLogger(__name__)
GIB = 1024 ** 3
#: Refusals raised before the image is converted into the volume: its
#: bytes are untouched.
BEFORE_WRITE = (images.ImageTooLarge, diskimage.UnsafeImage, exception.NotFound,
                ImageError)


def reimage(conf, backend, volume_id: str, image_id: str) -> dict[str, Any]:
    """Write image ``image_id`` over ``downloading`` volume ``volume_id``;
    ``{"error": reason or None, "written": bool}`` (see the module rules)."""
    try:
        volume = vdb.volume_get(volume_id)
    except vdb.VolumeNotFound:
        return {"error": "volume %s is gone" % volume_id, "written": False}
    if volume.status != st.VOLUME_DOWNLOADING:
        return {"error": "volume %s is %s, not %s" % (volume_id, volume.status,
                                                     st.VOLUME_DOWNLOADING),
                "written": False}
    path = volume.path or backend.path(volume_id)
    if not path:
        return {"error": "volume %s has no file" % volume_id, "written": False}
    try:
        info = images.write_image(conf, image_id, path, volume.size_gb * GIB)
    except Exception as exc:
        written = not isinstance(exc, BEFORE_WRITE)
        LOG.warning("re-image of volume %s from image %s failed (%s): %s", volume_id,
                    image_id, "its bytes may be half written" if written else "untouched",
                    exc)
        return {"error": reason(exc), "written": written}
    LOG.info("volume %s re-imaged from image %s (%s, %d bytes)", volume_id, image_id,
             info.format, info.virtual_size)
    return {"error": None, "written": True}

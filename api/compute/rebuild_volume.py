"""``rebuild`` of a server booted from a volume (its ``image_ref`` is ""),
as Nova answers it (api.compute.rebuild calls :func:`check`).

Rules:

* the root volume (the attachment with boot_index 0) must be ``in-use``:
  409 otherwise (an extend or a re-image under way; a failed re-image leaves
  it ``error``: from 2.93 a rebuild re-images it again, below an
  administrator resets its status first); a root volume
  gone meanwhile is 409 too; from 2.93 a read-only root volume is 409
  "volume is read-only" (a re-image would write it);
* the image is checked as for any rebuild (visible, active, the flavor's
  memory: 400 naming imageRef) and against the root volume instead of the
  flavor's disk: its ``min_disk`` and its (virtual) size must fit the
  volume, else 400;
* below 2.93 the image must be the one the volume was made from (its
  ``volume_image_metadata`` image_id): another one is 400 "Unable to rebuild
  with a different image for a volume-backed server" (Nova's
  ImageUnacceptable); with the same one the guest is defined again and
  restarted, the volume untouched (Nova's behaviour before 2.93);
* from 2.93 the root volume is re-imaged in place from the image (same
  volume id and size; its image metadata becomes the image's), the server
  keeping its uuid, host, flavor, other volumes and ``image_ref`` "";
* conductors and compute agents capped below RPC 1.14, or (2.93) volume
  services below 1.6, refuse it: 409 naming the cap.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from api import errors
from api.compute import servers
from api.state import APIState
from conductor.flows.rebuild_volume import left_by_failed_reimage
from flotilla import states as st
from flotilla.db import volumes as vdb

GIB = 1024 ** 3
#: the microversion from which a volume-backed server's root volume is
#: re-imaged by a rebuild
REIMAGE_VERSION = (2, 93)


@dataclasses.dataclass
class VolumeRebuild:
    image: Any
    reimage: bool


def _refused(reason: str) -> errors.APIError:
    return errors.conflict("Cannot 'rebuild' a server booted from a volume: %s" % reason)


def check(state: APIState, ctx, inst, image_ref: str, ver: tuple[int, int]
          ) -> VolumeRebuild:
    """The image and whether to re-image; the API's 400/409 otherwise."""
    root = next((a for a in vdb.attachments_of_instance(inst.uuid) if a.boot_index == 0),
                None)
    if root is None:
        raise _refused("it has no root volume attached")
    try:
        volume = vdb.volume_get(root.volume_id)
    except vdb.VolumeNotFound:
        raise _refused("its root volume %s is gone" % root.volume_id) from None
    image = servers.bootable_image(ctx, image_ref, inst.memory_mb or 0, 0)
    reimage = ver >= REIMAGE_VERSION
    if not reimage:
        current = (volume.image_metadata or {}).get("image_id") or volume.image_id
        if image.id != current:
            raise errors.bad_request(
                "Invalid input for field/attribute imageRef. Image %s is unacceptable: "
                "Unable to rebuild with a different image for a volume-backed server."
                % image.id)
    min_disk = int(image.min_disk or 0)
    if min_disk > volume.size_gb:
        raise errors.bad_request(
            "Invalid input for field/attribute imageRef. Volume is smaller than the "
            "minimum size specified in image metadata. Volume size is %d bytes, minimum "
            "size is %d bytes." % (volume.size_gb * GIB, min_disk * GIB))
    image_bytes = int(getattr(image, "virtual_size", None) or image.size or 0)
    if image_bytes > volume.size_gb * GIB:
        raise errors.bad_request(
            "Invalid input for field/attribute imageRef. Image %s is %d bytes, larger "
            "than the server's root volume (%d GiB)." % (image.id, image_bytes,
                                                         volume.size_gb))
    if volume.status != st.VOLUME_IN_USE and not (reimage and
                                                  left_by_failed_reimage(volume)):
        raise _refused("its root volume %s is %s" % (volume.id, volume.status))
    if reimage and volume.readonly:
        raise _refused("its root volume %s: volume is read-only" % volume.id)
    if not state.conductor.can_rebuild_volume_backed():
        raise _refused("the conductors are capped below RPC 1.14 ([upgrade_levels] "
                       "conductor)")
    if not state.compute.can_rebuild_volume_backed():
        raise _refused("the compute agents are capped below RPC 1.14 ([upgrade_levels] "
                       "compute)")
    if reimage and not state.volume.can_reimage():
        raise _refused("the volume services are capped below RPC 1.6 ([upgrade_levels] "
                       "volume)")
    return VolumeRebuild(image=image, reimage=reimage)

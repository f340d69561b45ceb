"""The volume service's side of volume snapshots and of volumes made from a
snapshot or an image.

Rules:

* a snapshot is a raw file in the volume host's pool (libvirt storage
  volume ``snapshot-<id>``), written by the host's storage daemon with a
  point-in-time copy (:meth:`volume.nbd.StorageDaemon.backup`): crash
  consistent for a volume in use, exact for one nothing writes to;
* a volume from a snapshot is a libvirt copy of the snapshot file
  (``createXMLFrom``; snapshot files never change, so no care for
  writers), grown to the volume's size;
* a volume from an image is a blank raw volume into which the checked
  image is converted (:mod:`volume.images`); it becomes ``bootable``;
* every end state is a compare-and-swap from the transitional status, so a
  reaper that already gave up on the operation wins.
"""

from __future__ import annotations

import logging

from compute.virt.libvirt.imagecache import ImageError
from flotilla import exception
from flotilla import states as st
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from volume import images
from volume.backend import VolumeBackend

LOG = logging.getLogger(__name__)
GIB = 1024 ** 3


def reason(exc: BaseException) -> str:
    """A status reason that names the failure without leaking paths or
    URLs: our own exceptions' messages, else the exception type."""
    if isinstance(exc, (exception.FlotillaException, ImageError)):
        return str(exc)[:255]
    return type(exc).__name__


def fill_volume(conf, backend: VolumeBackend, volume) -> str:
    """Create ``volume`` from its snapshot or image; its path. The volume
    row is updated with what the source tells (bootable)."""
    if volume.snapshot_id:
        snapshot = sdb.snapshot_get(volume.snapshot_id)
        if snapshot.status != st.SNAPSHOT_AVAILABLE:
            raise exception.Invalid(reason="snapshot %s is %s"
                                    % (snapshot.id, snapshot.status))
        path = backend.create_from_snapshot(volume.id, snapshot.id, volume.size_gb)
        LOG.info("volume %s made from snapshot %s", volume.id, snapshot.id)
        return path
    path = backend.create(volume.id, volume.size_gb)
    try:
        info = images.write_image(conf, volume.image_id, path, volume.size_gb * GIB)
    except Exception:
        backend.delete(volume.id)    # no half-written volume file stays
        raise
    vdb.volume_update(volume.id, {"bootable": True}, expected_status=st.VOLUME_CREATING)
    LOG.info("volume %s made from image %s (%s, %d bytes)", volume.id, volume.image_id,
             info.format, info.virtual_size)
    return path


def create_snapshot(backend: VolumeBackend, daemon, snapshot) -> None:
    try:
        volume = vdb.volume_get(snapshot.volume_id)
        source = volume.path or backend.path(volume.id)
        if not source:
            raise vdb.VolumeNotFound(volume_id=volume.id)
        target = backend.create_snapshot_file(snapshot.id, snapshot.size_gb)
        daemon.backup(volume.id, source, target)
    except Exception as exc:
        LOG.exception("snapshot %s of volume %s failed", snapshot.id, snapshot.volume_id)
        try:
            backend.delete_snapshot(snapshot.id)
        except Exception:
            LOG.exception("could not remove the partial snapshot %s", snapshot.id)
        sdb.snapshot_update(snapshot.id, {"status": st.SNAPSHOT_ERROR,
                                          "status_reason": "create failed: %s"
                                          % reason(exc)},
                            expected_status=st.SNAPSHOT_CREATING)
        return
    sdb.snapshot_update(snapshot.id, {"status": st.SNAPSHOT_AVAILABLE, "path": target,
                                      "status_reason": None},
                        expected_status=st.SNAPSHOT_CREATING)
    LOG.info("snapshot %s of volume %s taken (%d GiB)", snapshot.id, volume.id,
             snapshot.size_gb)


def delete_snapshot(backend: VolumeBackend, snapshot_id: str) -> None:
    try:
        backend.delete_snapshot(snapshot_id)
    except Exception as exc:
        LOG.exception("deleting snapshot %s failed", snapshot_id)
        sdb.snapshot_update(snapshot_id, {"status": st.SNAPSHOT_ERROR_DELETING,
                                          "status_reason": "delete failed: %s"
                                          % reason(exc)},
                            expected_status=st.SNAPSHOT_DELETING)
        return
    sdb.snapshot_destroy(snapshot_id, expected_status=st.SNAPSHOT_DELETING)
    LOG.info("snapshot %s deleted", snapshot_id)

"""The volume service's side of volume snapshots and of volumes made from a
snapshot, another volume (a clone) or an image.

Rules:

* a snapshot is a raw file in the volume host's pool (libvirt storage
  volume ``snapshot-<id>``), written by the host's storage daemon with a
  point-in-time copy (:meth:`volume.nbd.StorageDaemon.backup`): crash
  consistent for a volume in use, exact for one nothing writes to;
* a volume from a snapshot is a libvirt copy of the snapshot file
  (``createXMLFrom``; snapshot files never change, so no care for
  writers), grown to the volume's size;
* a clone (``source_volid``) is a new volume file of the source's size
  into which the storage daemon copies the source, point in time as a
  snapshot is (:func:`copy_volume`, the same path), then grown to the
  clone's size; the source must still be there in a status that keeps its
  size (not being extended), at most the clone's size;
* a volume from an image is a blank raw volume into which the checked
  image is converted (:mod:`volume.images`); it becomes ``bootable``;
* a failed fill leaves no file behind (the manager records ``error`` with
  the reason);
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
#: The statuses of a source volume whose file may be copied: it exists and
#: keeps its size (attach and detach only change who reads it).
CLONE_SOURCE_STATUSES = (st.VOLUME_AVAILABLE, st.VOLUME_IN_USE, st.VOLUME_RESERVED,
                         st.VOLUME_ATTACHING, st.VOLUME_DETACHING)


def reason(exc: BaseException) -> str:
    """A status reason that names the failure without leaking paths or
    URLs: our own exceptions' messages, else the exception type."""
    if isinstance(exc, (exception.FlotillaException, ImageError)):
        return str(exc)[:255]
    return type(exc).__name__


def _discard(backend: VolumeBackend, volume_id: str) -> None:
    """Remove a half-made volume file, keeping the error that brought us here."""
    try:
        backend.delete(volume_id)
    except Exception:
        LOG.exception("could not remove the half-made volume %s", volume_id)


def copy_volume(backend: VolumeBackend, daemon, volume, target: str) -> None:
    """Copy ``volume`` into the raw file ``target`` (as large as the volume),
    point in time: crash consistent while a guest writes to it
    (volume.nbd.StorageDaemon.backup)."""
    source = volume.path or backend.path(volume.id)
    if not source:
        raise vdb.VolumeNotFound(volume_id=volume.id)
    daemon.backup(volume.id, source, target)


def clone_volume(backend: VolumeBackend, daemon, volume) -> str:
    """Fill ``volume`` from its source volume; its path."""
    origin = vdb.volume_get(volume.source_volid)
    if origin.status not in CLONE_SOURCE_STATUSES:
        raise exception.Invalid(reason="source volume %s is %s"
                                % (origin.id, origin.status))
    if origin.size_gb > volume.size_gb:
        # Extended after the clone was accepted: the copy would not fit.
        raise exception.Invalid(reason="source volume %s is now %d GiB, more than "
                                "the clone's %d GiB" % (origin.id, origin.size_gb,
                                                        volume.size_gb))
    # The copy needs a target exactly as large as the source; grown after.
    path = backend.create(volume.id, origin.size_gb)
    try:
        copy_volume(backend, daemon, origin, path)
        if volume.size_gb > origin.size_gb:
            backend.extend(volume.id, volume.size_gb)
    except Exception:
        _discard(backend, volume.id)
        raise
    LOG.info("volume %s cloned from volume %s (%s)", volume.id, origin.id, origin.status)
    return path


def fill_volume(conf, backend: VolumeBackend, volume, daemon) -> str:
    """Create ``volume`` from its snapshot, source volume (through the
    storage ``daemon``) or image; its path. The volume row is updated with
    what the source tells (bootable)."""
    if volume.source_volid:
        return clone_volume(backend, daemon, volume)
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
        _discard(backend, volume.id)    # no half-written volume file stays
        raise
    vdb.volume_update(volume.id, {"bootable": True}, expected_status=st.VOLUME_CREATING)
    LOG.info("volume %s made from image %s (%s, %d bytes)", volume.id, volume.image_id,
             info.format, info.virtual_size)
    return path


def create_snapshot(backend: VolumeBackend, daemon, snapshot) -> None:
    try:
        volume = vdb.volume_get(snapshot.volume_id)
        target = backend.create_snapshot_file(snapshot.id, snapshot.size_gb)
        copy_volume(backend, daemon, volume, target)
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

"""Online extend of an NBD volume disk, and guests paused on its I/O errors.

What QEMU 7.2 and libvirt 9.0 allow (tools/bench/online_extend.py measures
it on a rig host): QEMU's NBD client learns an export's size only when it
connects ("Cannot grow NBD nodes" otherwise), and libvirt cannot give an NBD
disk a ``reconnect-delay``. So the volume host removes the export, grows
its node and adds the export again under the same name
(volume.nbd.StorageDaemon.grow_export); the client connects again on its
next request, and takes the new size then. Here, on the compute host, with
public libvirt calls only (no QMP passthrough, which would taint the
domain):

1. a throwaway block job makes that request instead of the guest: a copy
   of the disk into a scratch file (``virDomainBlockCopy``, a transient
   job, 1 MiB/s), cancelled at once. Its first read (or two) finds the
   connection dropped and fails: the job fails, the guest sees nothing.
   Tried again until a job runs, or ``blockResize`` below succeeds;
2. ``virDomainBlockResize`` of the disk to the new size: the guest's
   virtio disk gets its capacity-change notice (Linux logs it, and
   /sys/block/vdX/size changes).

A request the guest itself makes while the export is away fails too. Volume
disks therefore carry ``error_policy``/``rerror_policy`` ``stop``
(templates/nbd-disk.xml): such a request pauses the guest (libvirt state
paused, reason ioerror) instead of reaching it, and resuming retries it.
Once the job has reconnected, the extend resumes a guest paused so; so does
:func:`resume_after_io_error` (the agent calls it when libvirt reports such
a pause, e.g. while a restarted storage daemon exports the volume again),
which never touches a guest paused for another reason (a user's pause).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import libvirt

from compute.virt.block_device import VolumeUnreachable
from compute.virt.libvirt.guest import Guest
from compute.virt.libvirt.volumes import disk_target, volume_disks
from flotilla import concurrency, exception
from flotilla.objects import Instance

LOG = logging.getLogger(__name__)

#: How long an extend tries to make the guest's NBD client connect again
#: (QEMU's connection thread retries after 1, 2, 4, 8, 16 s).
RECONNECT_TIMEOUT = 60.0
#: How long one probe job may take to say whether it could read.
PROBE_TIMEOUT = 3.0
#: The probe copy's bandwidth (bytes/s): it is cancelled at once anyway.
PROBE_BANDWIDTH = 1 << 20
CANNOT_GROW = "Cannot grow NBD nodes"


def paused_on_io_error(guest: Guest) -> bool:
    state, reason = guest.state()
    return state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_IOERROR


def _scratch(instance_dir: str, volume_id: str) -> str:
    os.makedirs(instance_dir, exist_ok=True)
    return os.path.join(instance_dir, "reconnect-%s.raw" % volume_id)


def probe(guest: Guest, device: str, scratch: str) -> bool:
    """Run one throwaway copy job of ``device`` (see the module's step 1);
    whether it could read (it ran, rather than failed at once)."""
    domain = guest.domain
    destination = ("<disk type='file'><driver type='raw'/><source file='%s'/></disk>"
                   % scratch)
    params = {libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH: PROBE_BANDWIDTH}
    try:
        guest.host.call(domain.blockCopy, device, destination, params,
                        libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    except libvirt.libvirtError as exc:
        LOG.info("reconnect probe of %s not started: %s", device, exc.get_error_message())
        return False
    ran = False
    try:
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            info = guest.host.call(domain.blockJobInfo, device, 0)
            if not info:
                break                   # it failed (its read found no connection)
            if info.get("cur", 0) > 0 or (info.get("end", 0) and
                                           info.get("cur") == info.get("end")):
                ran = True
                break
            concurrency.sleep(0.01)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            guest.host.call(domain.blockJobAbort, device, 0)
        deadline = time.monotonic() + 30
        while guest.host.call(domain.blockJobInfo, device, 0) \
                and time.monotonic() < deadline:
            concurrency.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    return ran


def _device(guest: Guest, instance_uuid: str, volume_id: str) -> str:
    disk = volume_disks(guest.xml()).get(volume_id)
    if disk is None:
        raise exception.VolumeAttachFailed(volume_id=volume_id, instance_uuid=instance_uuid,
                                           reason="not attached to the running guest")
    return disk_target(disk)


def extend(guest: Guest, instance_uuid: str, instance_dir: str, volume_id: str,
           new_size_bytes: int, timeout: float = RECONNECT_TIMEOUT) -> float:
    """Make the running guest see its volume at ``new_size_bytes`` (the
    volume host serves it so already); the seconds it took. See
    ComputeDriver.extend_volume."""
    start = time.monotonic()
    if not guest.is_active():
        # A guest that does not run connects (with the new size) when it starts.
        return 0.0
    device = _device(guest, instance_uuid, volume_id)
    capacity = guest.host.call(guest.domain.blockInfo, device, 0)[0]
    if new_size_bytes < capacity:
        raise exception.Invalid(reason="volume %s is %d bytes in the guest: it cannot "
                                "shrink to %d" % (volume_id, capacity, new_size_bytes))
    scratch = _scratch(instance_dir, volume_id)
    deadline = start + timeout
    jobs = 0
    while new_size_bytes > capacity:
        try:
            guest.host.call(guest.domain.blockResize, device, new_size_bytes,
                            libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            break
        except libvirt.libvirtError as exc:
            message = exc.get_error_message() or ""
            if CANNOT_GROW not in message:
                raise exception.VolumeAttachFailed(
                    volume_id=volume_id, instance_uuid=instance_uuid,
                    reason="blockResize failed: %s" % message) from exc
            if time.monotonic() > deadline:
                raise VolumeUnreachable(
                    volume_id=volume_id, instance_uuid=instance_uuid,
                    reason="its NBD client did not connect again with the new size "
                    "in %d s (%d probe jobs); QEMU: %s" % (timeout, jobs, message)) from exc
        # The client still has the old connection's size: make it connect.
        jobs += 1
        if not probe(guest, device, scratch):
            concurrency.sleep(0.05)
    resumed = _resume_if_io_error(guest)
    LOG.info("volume %s of %s is %d bytes in the guest (%d probe jobs%s, %.3f s)",
             volume_id, instance_uuid, new_size_bytes, jobs,
             ", guest resumed from an I/O error pause" if resumed else "",
             time.monotonic() - start)
    return time.monotonic() - start


def _resume_if_io_error(guest: Guest) -> bool:
    if not paused_on_io_error(guest):
        return False
    try:
        guest.host.call(guest.domain.resume)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
            raise
        return False          # resumed meanwhile
    return True


def resume_after_io_error(guest: Guest, instance_uuid: str, instance_dir: str,
                          timeout: float = PROBE_TIMEOUT * 3) -> bool:
    """See ComputeDriver.resume_after_io_error."""
    if not paused_on_io_error(guest):
        return False
    disks = {vid: disk_target(disk) for vid, disk in volume_disks(guest.xml()).items()
             if disk.get("type") == "network"}
    for volume_id, device in sorted(disks.items()):
        deadline = time.monotonic() + timeout
        while not probe(guest, device, _scratch(instance_dir, volume_id)):
            if time.monotonic() > deadline:
                raise VolumeUnreachable(volume_id=volume_id, instance_uuid=instance_uuid,
                                        reason="its export does not answer yet")
            concurrency.sleep(0.2)
    # Checked again: a user's pause meanwhile (reason user) is left alone.
    resumed = _resume_if_io_error(guest)
    if resumed:
        LOG.warning("instance %s resumed after an I/O error pause (volumes %s reachable)",
                    instance_uuid, ", ".join(sorted(disks)))
    return resumed


class LibvirtVolumeExtendMixin:
    """LibvirtDriver's extend_volume and resume_after_io_error."""

    def extend_volume(self, instance, volume_id: str, new_size_bytes: int) -> None:
        if not self.capabilities.supports_extend_volume:
            self._not_supported("volume extend")
        instance = Instance.coerce(instance)
        guest = self._guest(instance)
        if not guest.is_active():
            # Its next start connects, and sees the size the export has.
            if volume_id not in self.volumes.devices(guest):
                raise exception.VolumeAttachFailed(
                    volume_id=volume_id, instance_uuid=instance.uuid,
                    reason="not attached")
            return
        extend(guest, instance.uuid, self.instance_dir(instance), volume_id,
               int(new_size_bytes))

    def resume_after_io_error(self, instance) -> bool:
        if not self.capabilities.supports_volume_io_error_resume:
            self._not_supported("resume after an I/O error")
        instance = Instance.coerce(instance)
        return resume_after_io_error(self._guest(instance), instance.uuid,
                                     self.instance_dir(instance))

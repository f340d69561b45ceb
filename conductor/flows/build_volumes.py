"""The build flow's volume steps: boot from volume and volumes at boot
(issue 11).

The build's state carries the request's volume disks
(:class:`flotilla.objects.BlockDeviceMapping`, validated by the API:
api.compute.block_devices). Around ``build_on_host`` the build flow runs,
after ``schedule_instance``:

1. ``create_volumes``: for a disk made from an image (``source_type``
   image) or blank, a volume is recorded (creating, within the project's
   volume quotas, on the volume host with the most free space that holds
   it; from an image bootable, its image's metadata kept) and
   flotilla-volume is cast ``create_volume``, which writes the image into
   it (or leaves it blank). For a disk from a volume snapshot (``source_type``
   snapshot) the step first waits for the snapshot to be ``available`` (an
   image of a volume-backed server is active before its snapshots are;
   another status, a snapshot gone or the timeout fails the build), then
   records the volume on the snapshot's volume host (where its file is;
   that host's volume service must be up), bootable and with the image
   metadata as the snapshot's volume, naming the snapshot, and casts
   ``create_volume`` (1.2: a copy of the snapshot). The step waits until
   every such volume is ``available`` (``error``, or ``[volume]
   operation_timeout``, fails the build). Revert: the volumes it created are
   deleted.
2. ``reserve_volumes``: each volume available -> reserved -> attaching
   (the attach flow's Reserve), with an attachment naming the server, its
   host, ``delete_on_termination`` and ``boot_index``. Revert: the attach
   flow's: attachments removed, volumes available again.
3. ``export_volumes``: the volume hosts export each over NBD (the attach
   flow's Export); the connections go to the compute host with the disks.
   Revert: unexported.
4. ``build_on_host`` (build.py) spawns the guest with the disks: the boot
   volume is ``vda`` and there is no local root disk.
5. ``volumes_in_use``: the devices the guest got (compute
   get_volume_devices) recorded, each volume attaching -> in-use (the attach
   flow's InUse).

A failed build reverts these in reverse before it is rescheduled (a new
attempt makes its volume again) or ends in ERROR. A server deleted later
releases its volumes and deletes those marked ``delete_on_termination``
(conductor.flows.volume.VolumeFlow.release_instance).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from oslo_config import cfg

from conductor.flows.runner import Step
from conductor.flows.volume import Export, InUse, Reserve, VolumeState, delete_volume
from flotilla import exception, images
from flotilla import states as st
from flotilla.conf.quota import VOLUME_RESOURCES
from flotilla.db import api as db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.objects import BlockDeviceMapping
from flotilla.volume_placement import (
    NotEnoughSpace,
    image_metadata,
    pick_volume_host,
    space_guard,
    up_volume_hosts,
)

LOG = logging.getLogger(__name__)

#: how often create_volumes reads the status of the volumes it waits for
POLL_INTERVAL = 0.25
#: the NBD volume that boots a guest is its first disk
BOOT_DEVICE = "vda"


class VolumeCreateFailed(exception.FlotillaException):
    msg_fmt = "Volume %(volume_id)s for the server could not be made: %(reason)s"
    public_msg = "A volume for the server could not be created."


def volume_state(state: Any, bdm: BlockDeviceMapping) -> VolumeState:
    """The attach flow's state for one of a build's volumes."""
    volume = vdb.volume_get(bdm.volume_id)
    return VolumeState(state.ctxt, state.instance_uuid, volume_id=bdm.volume_id,
                       attachment_id=bdm.attachment_id or "",
                       volume_host=volume.host or "", host=state.host or "",
                       connection=dict(bdm.connection_info) if bdm.connection_info
                       else None, device=bdm.device_name)


def _replace(state: Any, index: int, **changes: Any) -> None:
    disks = list(state.block_devices)
    disks[index] = disks[index].replace(**changes)
    state.block_devices = disks


class CreateVolumes(Step):
    """Make the volumes that come from an image or a volume snapshot or are
    blank, and wait for them.

    Revert: each volume it made goes (deleting, then flotilla-volume
    removes it; one never made on a host is removed at once).
    """

    name = "create_volumes"

    def __init__(self, conf: cfg.ConfigOpts, volumes) -> None:
        self.conf = conf
        self.volumes = volumes

    def execute(self, state: Any) -> None:
        defaults = {r: getattr(self.conf.quota, r) for r in VOLUME_RESOURCES}
        for index, bdm in enumerate(state.block_devices):
            if not bdm.makes_volume or bdm.volume_id:
                continue
            image = images.check_image_usable(state.ctxt, bdm.image_id) \
                if bdm.source_type == "image" else None
            snapshot = self._wait_snapshot(state, bdm.snapshot_id) \
                if bdm.source_type == "snapshot" else None
            inst = db.instance_get(state.instance_uuid)
            try:
                row = self._create(inst, bdm, image, defaults, snapshot)
            except NotEnoughSpace as exc:
                raise VolumeCreateFailed(volume_id="(none)", reason=str(exc)) from None
            # Recorded before the cast: a revert finds what to remove.
            _replace(state, index, volume_id=row.id)
            state.recorder.save(flow_data=state.to_data())
            self.volumes.create_volume(state.ctxt, row.host, row.id,
                                       from_source=image is not None or snapshot is not None)
        self._wait(state)

    def _wait_snapshot(self, state: Any, snapshot_id: str):
        """The snapshot once ``available`` (VolumeCreateFailed when it ends
        otherwise, goes, or is still being taken at the timeout)."""
        deadline = time.monotonic() + self.conf.volume.operation_timeout
        while True:
            try:
                snap = sdb.snapshot_get(snapshot_id)
            except sdb.SnapshotNotFound:
                raise VolumeCreateFailed(volume_id="(none)", reason="snapshot %s is gone"
                                         % snapshot_id) from None
            if snap.status == st.SNAPSHOT_AVAILABLE:
                return snap
            if snap.status != st.SNAPSHOT_CREATING:
                raise VolumeCreateFailed(volume_id="(none)", reason="snapshot %s is %s"
                                         % (snapshot_id, snap.status))
            if time.monotonic() > deadline:
                raise VolumeCreateFailed(volume_id="(none)", reason="snapshot %s still "
                                         "being taken after %d s" % (
                                             snapshot_id, self.conf.volume.operation_timeout))
            state.check_abort(self.name)
            time.sleep(POLL_INTERVAL)

    def _create(self, inst, bdm, image, defaults: dict, snapshot=None):
        """The volume's row (from ``image``, from ``snapshot`` on its host,
        or blank when both are None) on the volume host with the most free
        space that holds it (NotEnoughSpace when none; VolumeCreateFailed
        when no enabled volume service is up)."""
        source: dict[str, Any] = {"image_id": image.id if image else None,
                                  "image_metadata": image_metadata(image) if image else None}
        if snapshot is not None:
            host = snapshot.host if snapshot.host in up_volume_hosts(self.conf) else None
            origin = vdb.volume_get(snapshot.volume_id)
            source = {"snapshot_id": snapshot.id, "bootable": bool(origin.bootable),
                      "image_metadata": dict(origin.image_metadata)
                      if origin.image_metadata else None}
            what = "snapshot %s's" % snapshot.id
        else:
            host = pick_volume_host(self.conf, bdm.volume_size)
            what = "boot" if bdm.boot_index == 0 else "blank"
        if host is None:
            raise VolumeCreateFailed(volume_id="(none)", reason="no enabled volume service "
                                     "is up%s" % (" on the snapshot's host %s" % snapshot.host
                                                  if snapshot is not None else ""))
        return vdb.volume_create({
            "name": "", "description": "%s volume of server %s" % (what, inst.uuid),
            "size_gb": bdm.volume_size, "host": host, "status": st.VOLUME_CREATING,
            "project_id": inst.project_id, "user_id": inst.user_id, **source,
            "volume_type": "__DEFAULT__", "availability_zone": "nova",
            "metadata": {},
            "status_deadline": vdb.deadline(self.conf.volume.operation_timeout)},
            defaults, check=space_guard(self.conf, host, bdm.volume_size))

    def _wait(self, state: Any) -> None:
        waiting = {b.volume_id for b in state.block_devices if b.makes_volume}
        deadline = time.monotonic() + self.conf.volume.operation_timeout
        while waiting:
            for volume_id in sorted(waiting):
                volume = vdb.volume_get(volume_id)
                if volume.status == st.VOLUME_AVAILABLE:
                    waiting.discard(volume_id)
                elif volume.status != st.VOLUME_CREATING:
                    raise VolumeCreateFailed(volume_id=volume_id, reason="%s (%s)" % (
                        volume.status, volume.status_reason or "no reason given"))
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise VolumeCreateFailed(volume_id=", ".join(sorted(waiting)),
                                         reason="still creating after %d s" %
                                         self.conf.volume.operation_timeout)
            state.check_abort(self.name)
            time.sleep(POLL_INTERVAL)

    def revert(self, state: Any) -> None:
        for index, bdm in enumerate(state.block_devices):
            if not bdm.makes_volume or not bdm.volume_id:
                continue
            delete_volume(self.conf, self.volumes, state.ctxt, bdm.volume_id)
            _replace(state, index, volume_id=None)

    def details(self, state: Any) -> str | None:
        made = [b.volume_id for b in state.block_devices if b.makes_volume]
        return "volumes made: %s" % ", ".join(made) if made else None


class ReserveVolumes(Step):
    """Each volume reserved for the server, an attachment recorded (the
    attach flow's Reserve). Revert: the attach flow's (attachment removed,
    volume available again)."""

    name = "reserve_volumes"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def execute(self, state: Any) -> None:
        for index, bdm in enumerate(state.block_devices):
            if bdm.attachment_id:
                continue
            vdb.volume_update(bdm.volume_id, {
                "status": st.VOLUME_RESERVED,
                "status_deadline": vdb.deadline(self.conf.volume.operation_timeout)},
                expected_status=st.VOLUME_AVAILABLE)
            attachment = vdb.attachment_create(
                bdm.volume_id, state.instance_uuid, state.host,
                delete_on_termination=bdm.delete_on_termination,
                boot_index=bdm.boot_index, tag=bdm.tag)
            _replace(state, index, attachment_id=attachment.uuid)
            # Recorded at once: a conductor that dies here leaves a revert
            # that finds the reservation (the runner saves between steps).
            state.recorder.save(flow_data=state.to_data())
            Reserve(self.conf).execute(volume_state(state, state.block_devices[index]))

    def revert(self, state: Any) -> None:
        for index, bdm in enumerate(state.block_devices):
            if bdm.attachment_id:
                Reserve(self.conf).revert(volume_state(state, bdm))
                _replace(state, index, attachment_id=None)


class ExportVolumes(Step):
    """The volume hosts export each volume (the attach flow's Export).
    Revert: unexported."""

    name = "export_volumes"

    def __init__(self, volumes) -> None:
        self.volumes = volumes

    def execute(self, state: Any) -> None:
        for index, bdm in enumerate(state.block_devices):
            vstate = volume_state(state, bdm)
            Export(self.volumes).execute(vstate)
            _replace(state, index, connection_info=vstate.connection,
                     device_name=BOOT_DEVICE if bdm.boot_index == 0 else None)

    def revert(self, state: Any) -> None:
        for index, bdm in enumerate(state.block_devices):
            if bdm.volume_id:
                Export(self.volumes).revert(volume_state(state, bdm))
                _replace(state, index, connection_info=None)


class VolumesInUse(Step):
    """The guest runs: its volumes' devices recorded, each volume in-use
    (the attach flow's InUse). No revert, and no failure: the guest runs
    with its disks, so a device list the agent cannot give leaves the
    devices unknown (the boot volume is vda), and a volume whose status
    moved on meanwhile (the reaper) is logged and left to the operator."""

    name = "volumes_in_use"

    def __init__(self, compute) -> None:
        self.compute = compute

    def execute(self, state: Any) -> None:
        try:
            devices = self.compute.get_volume_devices(state.ctxt, state.host,
                                                      state.instance_uuid)
        except Exception as exc:
            LOG.warning("devices of %s's volumes unknown: %s", state.instance_uuid, exc)
            devices = {}
        for index, bdm in enumerate(state.block_devices):
            vstate = volume_state(state, bdm)
            vstate.device = devices.get(bdm.volume_id) or bdm.device_name
            try:
                InUse().execute(vstate)
            except exception.FlotillaException as exc:
                LOG.error("volume %s of %s not made in-use: %s", bdm.volume_id,
                          state.instance_uuid, exc)
            _replace(state, index, device_name=vstate.device)

    def details(self, state: Any) -> str | None:
        return ", ".join("%s %s" % (b.volume_id, b.device_name)
                         for b in state.block_devices)


def steps(conf: cfg.ConfigOpts, volumes, compute) -> tuple[list[Step], list[Step]]:
    """(before build_on_host, after it)."""
    return ([CreateVolumes(conf, volumes), ReserveVolumes(conf), ExportVolumes(volumes)],
            [VolumesInUse(compute)])


def reset(disks: list[BlockDeviceMapping]) -> list[BlockDeviceMapping]:
    """The request's disks as a new attempt starts them (nothing made)."""
    return [b.replace(volume_id=None if b.makes_volume else b.volume_id,
                      attachment_id=None, connection_info=None, device_name=None)
            for b in disks]

"""Attaching and detaching volumes on this host (conductor flows call these).

Before an attach the API asks which device the volume will take
(:meth:`VolumeOps.reserve_device`, as Nova's reserve_block_device_name): the
first name free in the guest and not reserved for another volume on its
way; the reservation lasts until that volume's attach, or RESERVATION_TTL.
Attach plugs the export the volume service made into the guest, live and
persistent, under the instance's lock, at the reserved name (the next free
one if it was taken meanwhile). Detach asks the guest to let go,
waits for the driver's DeviceRemovedEvent (libvirt's device-removed event),
asks again every ``retry`` seconds, and gives up at the deadline with
VolumeDetachFailed naming the reason; the disk stays attached then, and the
conductor's flow leaves the volume in error, still exported. At start the
agent detaches every volume disk that has no attachment row
(:meth:`VolumeOps.remove_orphan_disks`).
"""

from __future__ import annotations

import logging
import threading
import time

from compute.lifecycle import Lifecycle
from compute.ops.volume_io import IOErrorResumer
from compute.ops.volume_io import extend as extend_volume
from compute.virt import block_device, events, power_state
from compute.virt.block_device import VolumeConnection
from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.objects import Instance

LOG = logging.getLogger(__name__)

#: Seconds a reserved device name stays set aside for its volume when no
#: attach comes (the attach flow failed before reaching this host).
RESERVATION_TTL = 600.0


class VolumeDetachFailed(exception.FlotillaException):
    msg_fmt = "Detaching volume %(volume_id)s from instance %(instance_uuid)s failed: %(reason)s"
    code = 409


class VolumeOps:
    def __init__(self, lifecycle: Lifecycle, reconciler) -> None:
        self.lifecycle = lifecycle
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor
        self.host = lifecycle.host
        self._removed: dict[tuple[str, str], threading.Event] = {}
        self._guard = threading.Lock()
        # {instance_uuid: {volume_id: (device, expires at)}}, under _reserving.
        self._reserved: dict[str, dict[str, tuple[str, float]]] = {}
        self._reserving = threading.Lock()
        reconciler.device_removed_handler = self.on_device_removed
        # Guests a volume's I/O error paused (see compute/ops/volume_io.py).
        self.io_errors = IOErrorResumer(lifecycle)

    def on_device_removed(self, event: events.Event) -> None:
        """The driver's events other than lifecycle ones (the reconciler
        hands them here)."""
        if isinstance(event, events.VolumeIOErrorEvent):
            self.io_errors.on_event(event)
        if isinstance(event, events.DeviceRemovedEvent):
            with self._guard:
                waiter = self._removed.get((event.instance_uuid, event.volume_id))
            if waiter is not None:
                waiter.set()

    def _instance(self, ctxt: RequestContext, instance_uuid: str) -> Instance:
        record = self.conductor.instance_get(ctxt, instance_uuid)
        if record.get("host") != self.host:
            raise exception.InstanceNotFound(instance_uuid=instance_uuid)
        return Instance.from_record(record)

    def remove_orphan_disks(self, ctxt: RequestContext) -> list[tuple[str, str]]:
        """At start: detach every volume disk of a guest on this host that
        has no attachment row for that guest (an attach flow reverted while
        this agent was down, or a detach whose agent died: the conductor
        removed the row, the disk stayed). A disk whose row exists is left
        alone (its flow, or a user's detach, owns it). One request each, not
        waiting for the guest (the disk is gone from the definition at once,
        from the running guest when it lets go). The (instance, volume)
        pairs asked for; never raises."""
        try:
            attached = self.conductor.volume_attachments_by_host(ctxt, self.host)
            if attached is None:
                return []
            records = self.conductor.instance_get_all_by_host(ctxt, self.host)
        except Exception:
            LOG.exception("volume disks not checked at start")
            return []
        removed = []
        for record in records:
            instance = Instance.from_record(record)
            try:
                with self.lifecycle.locks.hold(instance.uuid):
                    devices = self.driver.get_volume_devices(instance)
                    for volume_id in sorted(set(devices)
                                            - set(attached.get(instance.uuid, ()))):
                        LOG.warning("volume %s is plugged into %s (%s) without an "
                                    "attachment: detaching it", volume_id, instance.uuid,
                                    devices[volume_id])
                        self.driver.detach_volume(instance, volume_id)
                        removed.append((instance.uuid, volume_id))
            except exception.InstanceNotFound:
                continue    # no domain (never spawned, or gone): no disk plugged
            except Exception:
                LOG.exception("volume disks of %s not checked", instance.uuid)
        return removed

    def reserve_device(self, ctxt: RequestContext, instance_uuid: str,
                       volume_id: str) -> str:
        """The device name ``volume_id`` will take in the guest, set aside
        for it until its attach. Not under the instance's lock (a detach
        may hold that for minutes); the disks are read under
        ``_reserving``, which an attach takes to drop its reservation only
        after its disk is in the definition. DeviceNameUnavailable when
        every name is taken."""
        instance = self._instance(ctxt, instance_uuid)
        with self._reserving:
            now = time.monotonic()
            pending = {vid: entry for vid, entry in
                       self._reserved.get(instance_uuid, {}).items() if entry[1] > now}
            attached = self.driver.get_volume_devices(instance).get(volume_id)
            if attached:
                return attached
            if volume_id in pending:
                device = pending[volume_id][0]
            else:
                taken = self.driver.get_disk_devices(instance) | \
                    {entry[0] for entry in pending.values()}
                device = block_device.next_device_name(taken)
            pending[volume_id] = (device, now + RESERVATION_TTL)
            self._reserved[instance_uuid] = pending
        LOG.info("device %s reserved for volume %s on %s", device, volume_id,
                 instance_uuid)
        return device

    def _release_reservation(self, instance_uuid: str, volume_id: str) -> None:
        with self._reserving:
            pending = self._reserved.get(instance_uuid, {})
            pending.pop(volume_id, None)
            if not pending:
                self._reserved.pop(instance_uuid, None)

    def attach(self, ctxt: RequestContext, instance_uuid: str, connection: dict,
               device_name: str | None = None) -> str:
        """The device the volume took: ``device_name`` (its reservation)
        when still free, else the first free name."""
        instance = self._instance(ctxt, instance_uuid)
        connection = VolumeConnection.coerce(connection)
        try:
            with self.lifecycle.locks.hold(instance_uuid):
                try:
                    return self.driver.attach_volume(instance, connection, device_name)
                except exception.DeviceNameUnavailable as exc:
                    if device_name is None:
                        raise
                    LOG.warning("volume %s: %s; taking the next free name",
                                connection.volume_id, exc)
                    return self.driver.attach_volume(instance, connection, None)
        finally:
            self._release_reservation(instance_uuid, connection.volume_id)

    def detach(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
               timeout: float, retry: float = 5.0) -> str | None:
        """Until the guest let go of the volume; the device it had (None:
        it was not attached)."""
        instance = self._instance(ctxt, instance_uuid)
        key = (instance_uuid, volume_id)
        with self.lifecycle.locks.hold(instance_uuid):
            device = self.driver.get_volume_devices(instance).get(volume_id)
            if device is None:
                return None
            removed = threading.Event()
            with self._guard:
                self._removed[key] = removed
            try:
                deadline = time.monotonic() + timeout
                while True:
                    if not self.driver.detach_volume(instance, volume_id):
                        return device
                    removed.wait(max(0.0, min(retry, deadline - time.monotonic())))
                    # The event, or a lost event but the disk gone: done.
                    if removed.is_set() or volume_id not in \
                            self.driver.get_volume_devices(instance):
                        LOG.info("volume %s detached from %s (%s)", volume_id,
                                 instance_uuid, device)
                        return device
                    if time.monotonic() >= deadline:
                        raise VolumeDetachFailed(
                            volume_id=volume_id, instance_uuid=instance_uuid,
                            reason="the guest did not release %s within %ss"
                                   % (device, timeout))
                    LOG.info("volume %s: guest %s still holds %s, asking again",
                             volume_id, instance_uuid, device)
            finally:
                with self._guard:
                    self._removed.pop(key, None)

    def extend(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
               new_size_bytes: int) -> None:
        """The guest sees its volume at ``new_size_bytes`` (compute/ops/volume_io.py)."""
        extend_volume(self.lifecycle, ctxt, instance_uuid, volume_id, new_size_bytes)

    def resume_io_error_paused(self, ctxt: RequestContext) -> list[str]:
        """At start: watch every guest of this host whose server is ACTIVE
        but whose guest is paused (an I/O error event may have come while
        the agent was down); the resumer leaves alone any paused for
        another reason. The uuids watched; never raises."""
        if not self.driver.capabilities.supports_volume_io_error_resume:
            return []
        watched = []
        try:
            for record in self.conductor.instance_get_all_by_host(ctxt, self.host):
                if record["vm_state"] != st.ACTIVE or record["task_state"] is not None:
                    continue
                try:
                    info = self.driver.get_info(Instance.from_record(record))
                except exception.InstanceNotFound:
                    continue
                if info.power_state == power_state.PAUSED \
                        and self.io_errors.watch(record["uuid"]):
                    watched.append(record["uuid"])
        except Exception:
            LOG.exception("paused guests not checked at start")
        return watched

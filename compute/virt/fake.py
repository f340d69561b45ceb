"""The fake virt driver: an in-memory hypervisor (``compute_driver = fake``).

It implements the whole driver contract (compute/virt/driver.py) the way a
well-mannered hypervisor would, so managers and flows can be run and tested
without libvirt: guests move between power states as libvirt's would, and
every change is reported to the registered listener synchronously, on the
caller's thread. Volumes are plugged and unplugged (a DeviceRemovedEvent
follows each detach), snapshots are real qcow2 files holding the guest's
disk, and guests migrate, live or cold, between fake drivers that share a
:class:`FakeFabric` (by default one per process: every fake host of a
process can reach every other by its host name).

What a real hypervisor does by itself is done on request: a guest that
changes state behind the agent's back (:meth:`FakeDriver.external_transition`),
a guest OS that will not let go of a disk (:meth:`FakeDriver.hold_detach`),
a migration that does not converge (:meth:`FakeDriver.hold_migrations`),
and failures (:meth:`FakeDriver.inject_spawn_failure`,
:meth:`FakeDriver.inject_failure`). ``calls`` records every call in order.

Its size comes from ``[fake_driver]`` when the loader builds it, or from
the keyword arguments.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from compute.virt import block_device, events, power_state
from compute.virt.block_device import ROOT_DEVICE, VolumeConnection
from compute.virt.driver import (
    REBOOT_TYPES,
    ComputeDriver,
    DriverCapabilities,
    InstanceInfo,
    SnapshotFile,
)
from compute.virt.fake_migration import FakeFabric, FakeMigrationMixin
from compute.virt.migration import GuestPresence
from compute.virt.qcow2 import write_qcow2
from flotilla import exception
from flotilla.objects import ImageMeta, Instance

GIB = 1024 ** 3
_OFF = (power_state.SHUTDOWN, power_state.SUSPENDED, power_state.CRASHED)


@dataclasses.dataclass
class FakeGuest:
    """One guest. ``disk`` is what its root disk holds (snapshots and
    migrations carry it); ``volumes`` maps volume id to (device,
    connection); ``volume_sizes`` what extend_volume announced."""

    instance: Instance
    power_state: int = power_state.RUNNING
    cpu_time_ns: int = 0
    console: str = ""
    disk: bytes = b""
    volumes: dict[str, tuple[str, VolumeConnection]] = dataclasses.field(
        default_factory=dict)
    volume_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    pending_detach: set[str] = dataclasses.field(default_factory=set)
    migration: str = ""           # migration.OUTGOING while a job runs
    kept_for_revert: bool = False  # a cold migration's source copy
    resume_after_migration: bool = False  # paused by a forced completion
    io_error_paused: bool = False  # paused by a volume's I/O error

    def devices(self) -> dict[str, str]:
        return {vid: dev for vid, (dev, _c) in self.volumes.items()}

    @property
    def root_bytes(self) -> int:
        return (self.instance.flavor.root_gb or 1) * GIB


def fake_disk(image: ImageMeta | None, instance: Instance) -> bytes:
    """What a fresh guest's root disk holds: where it came from."""
    return ("FLOTILLA-FAKE-DISK image=%s instance=%s\n"
            % (image.id if image else "", instance.uuid)).encode()


class FakeDriver(FakeMigrationMixin, ComputeDriver):
    capabilities = DriverCapabilities(
        supports_console_log=True, supports_diagnostics=True,
        supports_attach=True, supports_extend_volume=True,
        supports_volume_io_error_resume=True,
        supports_snapshots=True, supports_live_migration=True,
        supports_cold_migration=True)

    def __init__(self, conf: cfg.ConfigOpts | None = None, *,
                 vcpus: int | None = None, memory_mb: int | None = None,
                 disk_gb: int | None = None, fabric: FakeFabric | None = None,
                 cpu_model: str = "fake-cpu") -> None:
        sizes = getattr(conf, "fake_driver", None)
        self.guests: dict[str, FakeGuest] = {}
        self.calls: list[tuple[str, str | None]] = []
        self.host: str | None = None
        self.resources = {
            "vcpus": vcpus or (sizes.vcpus if sizes else 8),
            "memory_mb": memory_mb or (sizes.memory_mb if sizes else 8192),
            "disk_gb": disk_gb or (sizes.disk_gb if sizes else 100)}
        self.cpu_model = cpu_model
        self._listener: events.EventListener | None = None
        self._spawn_failures: dict[str | None, Exception] = {}
        self._failures: dict[tuple[str, str | None], Exception] = {}
        self._held_detaches: set[str] = set()
        # Volumes whose export does not answer (volume_outage).
        self.unreachable_volumes: set[str] = set()
        self._lock = threading.RLock()
        FakeMigrationMixin.__init__(self, fabric)

    # --- what a hypervisor does by itself, on request --------------------------

    def inject_spawn_failure(self, instance_uuid: str | None = None,
                             exc: Exception | None = None) -> None:
        """Make the next spawn of ``instance_uuid`` (of any instance when
        None) raise ``exc`` (default InstanceDeployFailure); one shot."""
        self._spawn_failures[instance_uuid] = exc or exception.InstanceDeployFailure(
            instance_uuid=instance_uuid or "any", reason="injected failure")

    def inject_failure(self, method: str, exc: Exception,
                       instance_uuid: str | None = None) -> None:
        """Make the next call of ``method`` (for ``instance_uuid`` or any)
        raise ``exc``; one shot."""
        self._failures[(method, instance_uuid)] = exc

    def external_transition(self, instance_uuid: str, transition: str,
                            emit: bool = True) -> None:
        """The guest changes state by itself (its OS powered off, an
        operator used virsh): the power state becomes what ``transition``
        (events.STOPPED, ...) leaves, and the listener hears of it unless
        ``emit`` is False (an event the hypervisor lost)."""
        guest = self._get(instance_uuid)
        guest.power_state = events.POWER_STATE_AFTER[transition]
        if emit:
            self._emit_lifecycle(guest.instance.uuid, transition)

    def hold_detach(self, instance_uuid: str, hold: bool = True) -> None:
        """While held, the guest's OS ignores detach requests: its disks
        stay and no DeviceRemovedEvent comes. Releasing lets go of every
        disk asked for meanwhile."""
        if hold:
            self._held_detaches.add(instance_uuid)
            return
        self._held_detaches.discard(instance_uuid)
        guest = self.guests.get(instance_uuid)
        for volume_id in sorted(guest.pending_detach if guest else ()):
            self._release_volume(guest, volume_id)

    # --- helpers ------------------------------------------------------------------

    def _record(self, method: str, uuid: str | None = None) -> None:
        self.calls.append((method, uuid))
        for key in ((method, uuid), (method, None)):
            if key in self._failures:
                raise self._failures.pop(key)

    def _emit(self, event: events.Event) -> None:
        listener = self._listener
        if listener is not None:
            listener(event)

    def _emit_lifecycle(self, uuid: str, transition: str) -> None:
        self._emit(events.LifecycleEvent(uuid, transition))

    def _get(self, instance: Instance | dict | str) -> FakeGuest:
        uuid = (instance if isinstance(instance, str)
                else Instance.coerce(instance).uuid)
        guest = self.guests.get(uuid)
        if guest is None:
            raise exception.InstanceNotFound(instance_uuid=uuid)
        return guest

    def _set(self, guest: FakeGuest, state: int, transition: str) -> None:
        guest.power_state = state
        self._emit_lifecycle(guest.instance.uuid, transition)

    @staticmethod
    def _require(guest: FakeGuest, states, operation: str) -> None:
        states = states if isinstance(states, tuple) else (states,)
        if guest.power_state not in states:
            raise exception.Conflict(
                reason="cannot %s instance %s in power state %s"
                % (operation, guest.instance.uuid,
                   power_state.name(guest.power_state)))

    def _boot(self, guest: FakeGuest) -> None:
        guest.console += "flotilla fake guest %s booted\n" % guest.instance.uuid
        self._set(guest, power_state.RUNNING, events.STARTED)

    # --- lifecycle --------------------------------------------------------------

    def init_host(self, host: str) -> None:
        self._record("init_host")
        self.host = host
        self.fabric.register(host, self)

    def cleanup_host(self) -> None:
        if self.host is not None:
            self.fabric.unregister(self.host, self)

    def spawn(self, instance, image_meta, network_info=None,
              block_device_info=None) -> None:
        instance = Instance.coerce(instance)
        image = ImageMeta.coerce(image_meta)
        volumes = block_device.spawn_volumes(block_device_info, [ROOT_DEVICE])
        self._record("spawn", instance.uuid)
        with self._lock:
            for key in (instance.uuid, None):
                if key in self._spawn_failures:
                    raise self._spawn_failures.pop(key)
            if instance.uuid in self.guests:
                raise exception.InstanceDeployFailure(
                    instance_uuid=instance.uuid, reason="exists already")
            guest = FakeGuest(instance, power_state=power_state.SHUTDOWN,
                              disk=b"" if block_device.boots_from_volume(block_device_info)
                              else fake_disk(image, instance),
                              volumes={c.volume_id: (d, c) for d, c in volumes})
            self.guests[instance.uuid] = guest
        self._boot(guest)

    def destroy(self, instance) -> None:
        uuid = Instance.coerce(instance).uuid
        self._record("destroy", uuid)
        with self._lock:
            guest = self.guests.pop(uuid, None)
        self._forget_migration_state(uuid)
        if guest is not None and guest.power_state not in _OFF:
            self._emit_lifecycle(uuid, events.STOPPED)

    def reboot(self, instance, reboot_type: str = "SOFT") -> None:
        if reboot_type not in REBOOT_TYPES:
            raise exception.Invalid(reason="reboot type must be SOFT or HARD")
        guest = self._get(instance)
        self._record("reboot", guest.instance.uuid)
        self._boot(guest)

    def power_off(self, instance, timeout=None, retry_interval=None) -> bool:
        guest = self._get(instance)
        self._record("power_off", guest.instance.uuid)
        if guest.power_state in _OFF:
            return False
        self._set(guest, power_state.SHUTDOWN, events.STOPPED)
        return timeout != 0

    def power_on(self, instance) -> None:
        guest = self._get(instance)
        self._record("power_on", guest.instance.uuid)
        if guest.power_state in _OFF:
            self._boot(guest)

    def pause(self, instance) -> None:
        guest = self._get(instance)
        self._record("pause", guest.instance.uuid)
        self._require(guest, power_state.RUNNING, "pause")
        guest.io_error_paused = False
        self._set(guest, power_state.PAUSED, events.PAUSED)

    def unpause(self, instance) -> None:
        guest = self._get(instance)
        self._record("unpause", guest.instance.uuid)
        self._require(guest, power_state.PAUSED, "unpause")
        guest.io_error_paused = False
        self._set(guest, power_state.RUNNING, events.RESUMED)

    def suspend(self, instance) -> None:
        guest = self._get(instance)
        self._record("suspend", guest.instance.uuid)
        if guest.power_state == power_state.SUSPENDED:
            return
        self._require(guest, (power_state.RUNNING, power_state.PAUSED),
                      "suspend")
        self._set(guest, power_state.SUSPENDED, events.SUSPENDED)

    def resume(self, instance) -> None:
        guest = self._get(instance)
        self._record("resume", guest.instance.uuid)
        if guest.power_state != power_state.RUNNING:
            self._set(guest, power_state.RUNNING, events.STARTED)

    # --- inspection --------------------------------------------------------------

    def get_info(self, instance) -> InstanceInfo:
        guest = self._get(instance)
        flavor = guest.instance.flavor
        if guest.power_state == power_state.RUNNING:
            guest.cpu_time_ns += 1_000_000
        return InstanceInfo(power_state=guest.power_state,
                            memory_kb=flavor.memory_mb * 1024,
                            max_memory_kb=flavor.memory_mb * 1024,
                            vcpus=flavor.vcpus, cpu_time_ns=guest.cpu_time_ns)

    def list_instances(self) -> list[str]:
        return list(self.guests)

    def get_console_output(self, instance) -> str:
        return self._get(instance).console

    def get_diagnostics(self, instance) -> dict[str, Any]:
        guest = self._get(instance)
        info = self.get_info(instance)
        zero = {"read_bytes": 0, "write_bytes": 0, "read_requests": 0,
                "write_requests": 0, "errors": 0}
        disks = {dev: dict(zero) for dev in
                 [ROOT_DEVICE, *guest.devices().values()]}
        return {"state": power_state.name(info.power_state),
                "cpu_time_ns": info.cpu_time_ns, "memory_kb": info.memory_kb,
                "vcpus": info.vcpus, "disks": disks,
                "interfaces": {}, "memory": {}}

    def get_available_resource(self) -> dict[str, Any]:
        running = [g.instance.flavor for g in self.guests.values()
                   if g.power_state not in _OFF]
        return dict(self.resources,
                    vcpus_used=sum(f.vcpus for f in running),
                    memory_mb_used=sum(f.memory_mb for f in running),
                    disk_gb_used=sum(g.instance.flavor.root_gb
                                     for g in self.guests.values()),
                    hypervisor_type="fake", hypervisor_version=1,
                    hypervisor_hostname=self.host or "fake-host",
                    cpu_arch="x86_64")

    def register_event_listener(self, callback) -> None:
        self._listener = callback

    def find_guest(self, instance) -> GuestPresence:
        uuid = Instance.coerce(instance).uuid
        guest = self.guests.get(uuid)
        if guest is not None:
            return GuestPresence(True, guest.power_state, guest.migration)
        return self._incoming_presence(uuid)

    # --- volumes ------------------------------------------------------------------

    def attach_volume(self, instance, connection, device_name=None) -> str:
        guest = self._get(instance)
        connection = VolumeConnection.coerce(connection)
        self._record("attach_volume", guest.instance.uuid)
        with self._lock:
            if connection.volume_id in guest.volumes:
                return guest.volumes[connection.volume_id][0]
            in_use = [ROOT_DEVICE, *guest.devices().values()]
            device = (block_device.check_device_name(device_name, in_use)
                      if device_name else block_device.next_device_name(in_use))
            guest.volumes[connection.volume_id] = (device, connection)
        return device

    def detach_volume(self, instance, volume_id: str) -> bool:
        guest = self._get(instance)
        self._record("detach_volume", guest.instance.uuid)
        if volume_id not in guest.volumes:
            return False
        if (guest.instance.uuid in self._held_detaches
                and guest.power_state not in _OFF):
            guest.pending_detach.add(volume_id)
            return True
        self._release_volume(guest, volume_id)
        return True

    def _release_volume(self, guest: FakeGuest, volume_id: str) -> None:
        with self._lock:
            device, _connection = guest.volumes.pop(volume_id, ("", None))
            guest.volume_sizes.pop(volume_id, None)
            guest.pending_detach.discard(volume_id)
        if device:
            self._emit(events.DeviceRemovedEvent(guest.instance.uuid,
                                                 volume_id, device))

    def get_volume_devices(self, instance) -> dict[str, str]:
        return self._get(instance).devices()

    def get_disk_devices(self, instance) -> set[str]:
        return {ROOT_DEVICE, *self._get(instance).devices().values()}

    def extend_volume(self, instance, volume_id: str, new_size_bytes: int) -> None:
        guest = self._get(instance)
        self._record("extend_volume", guest.instance.uuid)
        if volume_id not in guest.volumes:
            raise exception.VolumeAttachFailed(
                volume_id=volume_id, instance_uuid=guest.instance.uuid,
                reason="not attached")
        if new_size_bytes < guest.volume_sizes.get(volume_id, 0):
            raise exception.Invalid(reason="volume %s cannot shrink" % volume_id)
        if volume_id in self.unreachable_volumes:
            raise block_device.VolumeUnreachable(
                volume_id=volume_id, instance_uuid=guest.instance.uuid,
                reason="its export does not answer")
        guest.volume_sizes[volume_id] = int(new_size_bytes)
        # As the libvirt driver: a guest a request paused meanwhile goes on.
        self.resume_after_io_error(guest.instance)

    # What a volume host going away does to the guests of a hypervisor whose
    # volume disks stop on errors (templates/nbd-disk.xml).

    def volume_outage(self, volume_id: str) -> list[str]:
        """The volume's export stops answering; every running guest it is
        attached to makes a request, which pauses it (an I/O error pause,
        with its events). The uuids paused."""
        paused = []
        with self._lock:
            self.unreachable_volumes.add(volume_id)
            guests = [g for g in self.guests.values() if volume_id in g.volumes
                      and g.power_state == power_state.RUNNING]
            for guest in guests:
                guest.io_error_paused = True
                guest.power_state = power_state.PAUSED
                paused.append(guest.instance.uuid)
        for uuid in paused:
            self._emit_lifecycle(uuid, events.PAUSED)
            self._emit(events.VolumeIOErrorEvent(uuid, volume_id))
        return paused

    def volume_back(self, volume_id: str) -> None:
        """The volume's export answers again (nothing resumes by itself)."""
        with self._lock:
            self.unreachable_volumes.discard(volume_id)

    def resume_after_io_error(self, instance) -> bool:
        guest = self._get(instance)
        self._record("resume_after_io_error", guest.instance.uuid)
        with self._lock:
            if not (guest.io_error_paused and guest.power_state == power_state.PAUSED):
                return False
            away = sorted(set(guest.volumes) & self.unreachable_volumes)
            if away:
                raise block_device.VolumeUnreachable(
                    volume_id=away[0], instance_uuid=guest.instance.uuid,
                    reason="its export does not answer")
            guest.io_error_paused = False
        self._set(guest, power_state.RUNNING, events.RESUMED)
        return True

    # --- snapshot ------------------------------------------------------------------

    def snapshot(self, instance, target_path: str, base_image=None,
                 on_copied=None) -> SnapshotFile:
        guest = self._get(instance)
        self._record("snapshot", guest.instance.uuid)
        directory = os.path.dirname(os.path.abspath(target_path))
        if os.path.lexists(target_path) or not os.path.isdir(directory):
            raise exception.Invalid(
                reason="snapshot target %s exists or has no directory"
                % target_path)
        # Written beside the target and renamed: no partial file, ever.
        part = os.path.join(directory, ".%s.part-%s" % (
            os.path.basename(target_path), uuidlib.uuid4().hex))
        try:
            disk = guest.disk
            if on_copied is not None:
                on_copied()
            size = write_qcow2(part, disk, guest.root_bytes)
            os.link(part, target_path)   # fails if the target appeared
        except OSError as exc:
            raise exception.SnapshotFailed(instance_uuid=guest.instance.uuid,
                                           reason=str(exc)) from exc
        finally:
            if os.path.lexists(part):
                os.unlink(part)
        return SnapshotFile(path=target_path, disk_format="qcow2",
                            size_bytes=size, virtual_size_bytes=guest.root_bytes)

    def recover_snapshot(self, instance) -> None:
        # A fake snapshot is one call: nothing outlives it.
        self._record("recover_snapshot", Instance.coerce(instance).uuid)

    # --- plumbing the migration mixin uses ----------------------------------------

    def _plug_volumes(self, guest: FakeGuest,
                      volumes: Sequence[VolumeConnection],
                      devices: dict[str, str]) -> None:
        """Attach ``volumes`` to a guest being defined, keeping the device
        names they had (``devices``) where free."""
        for connection in volumes:
            connection = VolumeConnection.coerce(connection)
            in_use = [ROOT_DEVICE, *guest.devices().values()]
            wanted = devices.get(connection.volume_id)
            device = (wanted if wanted and wanted not in in_use
                      else block_device.next_device_name(in_use))
            guest.volumes[connection.volume_id] = (device, connection)

"""Live and cold migration of the fake driver (compute/virt/fake.py).

Fake hosts reach each other through a :class:`FakeFabric`, by host name, as
libvirt daemons reach each other by URI. A live migration copies in a few
steps whose progress is visible; :meth:`FakeMigrationMixin.hold_migrations`
makes it stop after the first step (a guest that dirties memory faster than
the link copies) until it is aborted, forced to complete (which pauses the
guest, as libvirt does without post-copy) or released.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from compute.virt import events, power_state
from compute.virt.block_device import ROOT_DEVICE, VolumeConnection
from compute.virt.migration import INCOMING, OUTGOING, GuestPresence, MigrateData, MigrationProgress
from flotilla import exception
from flotilla.objects import BlockDeviceMapping, Instance

if TYPE_CHECKING:
    from compute.virt.fake import FakeDriver, FakeGuest

MIB = 1024 ** 2
STEPS = 4
FAKE_ARCH = "x86_64"    # what fake hosts run (they report cpu_arch x86_64)
_OFF = (power_state.SHUTDOWN, power_state.SUSPENDED, power_state.CRASHED)


class FakeFabric:
    """The network between the fake hosts of one process."""

    def __init__(self) -> None:
        self._hosts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def register(self, host: str, driver: Any) -> None:
        with self._lock:
            self._hosts[host] = driver

    def unregister(self, host: str, driver: Any) -> None:
        with self._lock:
            if self._hosts.get(host) is driver:
                del self._hosts[host]

    def get(self, host: str) -> Any | None:
        with self._lock:
            return self._hosts.get(host)

    @staticmethod
    def uri(host: str) -> str:
        return "fake://%s" % host


DEFAULT_FABRIC = FakeFabric()


@dataclasses.dataclass
class _Job:
    """A live migration running on the source."""

    memory_total: int
    disk_total: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    fraction: float = 0.0
    abort: bool = False
    force: bool = False

    def progress(self) -> MigrationProgress:
        memory = int(self.memory_total * self.fraction)
        disk = int(self.disk_total * self.fraction)
        return MigrationProgress(
            memory_total_bytes=self.memory_total, memory_processed_bytes=memory,
            memory_remaining_bytes=self.memory_total - memory,
            disk_total_bytes=self.disk_total, disk_processed_bytes=disk,
            disk_remaining_bytes=self.disk_total - disk,
            elapsed_ms=int((time.monotonic() - self.started) * 1000))


class FakeMigrationMixin:
    """The migration half of FakeDriver; state per host:

    * ``_prepared`` (destination): instances pre_live_migration made ready
      for, with the volumes to plug;
    * ``_incoming`` (destination): instances a live job is bringing here;
    * ``_jobs`` (source): running live migrations;
    * ``_staged`` (destination): guests whose disks a cold migration sent;
    * ``_kept_here`` (a same-host resize): the original guest, out of
      ``guests`` while the resized one is defined, until confirm or revert;
    * ``_leftovers`` (source): files of guests that left, until
      post_live_migration.
    """

    def __init__(self, fabric: FakeFabric | None) -> None:
        self.fabric = fabric or DEFAULT_FABRIC
        self._prepared: dict[str, tuple[Instance, list[VolumeConnection]]] = {}
        self._incoming: set[str] = set()
        self._jobs: dict[str, _Job] = {}
        self._staged: dict[str, FakeGuest] = {}
        self._kept_here: dict[str, FakeGuest] = {}
        self._leftovers: set[str] = set()
        self._migration_cond = threading.Condition()
        self._migrations_held = False

    def hold_migrations(self, hold: bool = True) -> None:
        """While held, live migrations from this host stop after their first
        step until aborted, forced to complete or released."""
        with self._migration_cond:
            self._migrations_held = hold
            self._migration_cond.notify_all()

    # --- helpers ------------------------------------------------------------------

    def _peer(self: FakeDriver, uuid: str, migrate_data: MigrateData) -> FakeDriver:
        peer = self.fabric.get(migrate_data.dest_host)
        if peer is None or peer is self:
            raise exception.MigrationError(
                instance_uuid=uuid, reason="destination host %r cannot be reached"
                % migrate_data.dest_host)
        return peer

    def _forget_migration_state(self, uuid: str) -> None:
        self._prepared.pop(uuid, None)
        self._incoming.discard(uuid)
        self._staged.pop(uuid, None)
        self._leftovers.discard(uuid)

    def _incoming_presence(self, uuid: str) -> GuestPresence:
        if uuid in self._incoming:
            return GuestPresence(True, power_state.PAUSED, INCOMING)
        return GuestPresence(defined=False)

    @staticmethod
    def _copy_guest(guest: FakeGuest, **changes) -> FakeGuest:
        """A copy of ``guest`` as another host defines it: no console
        history, no volumes yet (plugged by the caller), no job."""
        values = dict(console="", volumes={}, volume_sizes=dict(guest.volume_sizes),
                      pending_detach=set(), migration="", kept_for_revert=False,
                      resume_after_migration=False)
        values.update(changes)
        return dataclasses.replace(guest, **values)

    # --- checks -------------------------------------------------------------------

    def check_can_migrate_source(self: FakeDriver, instance, live: bool) -> MigrateData:
        guest = self._get(instance)
        uuid = guest.instance.uuid
        self._record("check_can_migrate_source", uuid)
        if guest.migration or guest.kept_for_revert:
            raise exception.MigrationPreCheckError(
                instance_uuid=uuid, reason="a migration of it is in progress")
        if live and guest.power_state not in (power_state.RUNNING, power_state.PAUSED):
            raise exception.MigrationPreCheckError(
                instance_uuid=uuid, reason="a live migration needs a running or "
                "paused guest, not a %s one" % power_state.name(guest.power_state))
        return MigrateData(live=live, source_host=self.host or "",
                           guest_cpu=self.cpu_model if live else "",
                           local_disks=(ROOT_DEVICE,),
                           volume_ids=tuple(sorted(guest.volumes)),
                           guest={"arch": FAKE_ARCH} if live else {})

    def check_can_migrate_destination(self: FakeDriver, instance,
                                      migrate_data) -> MigrateData:
        uuid = Instance.coerce(instance).uuid
        data = MigrateData.coerce(migrate_data)
        self._record("check_can_migrate_destination", uuid)

        def refuse(reason: str):
            raise exception.MigrationPreCheckError(instance_uuid=uuid, reason=reason)
        if data.source_host == self.host and not (data.same_host and not data.live):
            refuse("the destination is its source host %s" % self.host)
        if (uuid in self.guests and not data.same_host) or uuid in self._prepared \
                or uuid in self._staged or uuid in self._kept_here:
            refuse("host %s holds it already" % self.host)
        if data.live and data.guest.get("arch", FAKE_ARCH) != FAKE_ARCH:
            # As libvirt's check (cpu_compat): an arch this host cannot run.
            refuse("its architecture %s is not one host %s runs (%s)"
                   % (data.guest["arch"], self.host, FAKE_ARCH))
        if data.live and data.guest_cpu != self.cpu_model:
            refuse("its CPU %r cannot run on the CPU %r of host %s"
                   % (data.guest_cpu, self.cpu_model, self.host))
        return dataclasses.replace(data, dest_host=self.host or "",
                                   dest_uri=self.fabric.uri(self.host or ""))

    # --- live -------------------------------------------------------------------------

    def pre_live_migration(self: FakeDriver, instance, image_meta,
                           volumes: Sequence[BlockDeviceMapping],
                           migrate_data) -> MigrateData:
        instance = Instance.coerce(instance)
        data = MigrateData.coerce(migrate_data)
        self._record("pre_live_migration", instance.uuid)
        if instance.uuid in self.guests:
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="it is defined here already")
        self._prepared[instance.uuid] = (instance, [VolumeConnection.coerce(
            v.connection_info if isinstance(v, BlockDeviceMapping) else v) for v in volumes])
        return dataclasses.replace(
            data, dest_config="fake guest %s on %s" % (instance.uuid, self.host))

    def live_migration(self: FakeDriver, instance, migrate_data) -> None:
        guest = self._get(instance)
        uuid = guest.instance.uuid
        data = MigrateData.coerce(migrate_data)
        self._record("live_migration", uuid)
        peer = self._peer(uuid, data)
        if uuid not in peer._prepared:
            raise exception.MigrationError(
                instance_uuid=uuid, reason="the destination was not prepared")
        if guest.power_state not in (power_state.RUNNING, power_state.PAUSED) \
                or guest.migration:
            raise exception.MigrationError(
                instance_uuid=uuid, reason="the guest is %s%s" % (
                    power_state.name(guest.power_state),
                    ", migrating already" if guest.migration else ""))
        job = _Job(memory_total=guest.instance.flavor.memory_mb * MIB,
                   disk_total=len(guest.disk))
        with self._migration_cond:
            self._jobs[uuid] = job
        guest.migration = OUTGOING
        peer._incoming.add(uuid)
        paused_here = False
        try:
            self._copy(job, uuid)
            if job.force and guest.power_state == power_state.RUNNING:
                self._set(guest, power_state.PAUSED, events.PAUSED)
                paused_here = True
            peer._arrive(guest, resume=paused_here)
        except BaseException:
            peer._incoming.discard(uuid)
            if paused_here:
                self._set(guest, power_state.RUNNING, events.RESUMED)
            raise
        finally:
            with self._migration_cond:
                self._jobs.pop(uuid, None)
            guest.migration = ""
        with self._lock:
            self.guests.pop(uuid, None)
        self._leftovers.add(uuid)
        self._emit_lifecycle(uuid, events.STOPPED)

    def live_migration_recover(self: FakeDriver, instance) -> None:
        uuid = Instance.coerce(instance).uuid
        self._record("live_migration_recover", uuid)
        with self._migration_cond:
            while uuid in self._jobs:    # the job goes on without its agent
                self._migration_cond.wait(0.05)
        with self._lock:
            guest = self.guests.get(uuid)
        if guest is not None and guest.power_state in (power_state.RUNNING,
                                                       power_state.PAUSED):
            raise exception.MigrationError(
                instance_uuid=uuid, reason="its migration job is not running; the guest "
                "runs on its source")

    def _copy(self, job: _Job, uuid: str) -> None:
        with self._migration_cond:
            for step in range(1, STEPS + 1):
                while (step > 1 and self._migrations_held
                       and not job.abort and not job.force):
                    self._migration_cond.wait()
                if job.abort:
                    raise exception.MigrationAborted(instance_uuid=uuid)
                if job.force:
                    break
                job.fraction = step / STEPS

    def _arrive(self: FakeDriver, source: FakeGuest, resume: bool) -> None:
        uuid = source.instance.uuid
        instance, volumes = self._prepared[uuid]
        guest = self._copy_guest(source, instance=instance,
                                 resume_after_migration=resume)
        self._plug_volumes(guest, volumes, source.devices())
        with self._lock:
            self.guests[uuid] = guest
        self._incoming.discard(uuid)
        if guest.power_state == power_state.RUNNING:
            self._emit_lifecycle(uuid, events.STARTED)

    def live_migration_progress(self, instance):
        with self._migration_cond:
            job = self._jobs.get(Instance.coerce(instance).uuid)
            return job.progress() if job else None

    def _signal_job(self, instance, what: str) -> None:
        uuid = Instance.coerce(instance).uuid
        with self._migration_cond:
            job = self._jobs.get(uuid)
            if job is None:
                raise exception.NoMigrationInProgress(instance_uuid=uuid)
            setattr(job, what, True)
            self._migration_cond.notify_all()

    def live_migration_abort(self: FakeDriver, instance) -> None:
        self._record("live_migration_abort", Instance.coerce(instance).uuid)
        self._signal_job(instance, "abort")

    def live_migration_force_complete(self: FakeDriver, instance) -> None:
        self._record("live_migration_force_complete", Instance.coerce(instance).uuid)
        self._signal_job(instance, "force")

    def post_live_migration_at_destination(self: FakeDriver, instance,
                                           migrate_data) -> None:
        guest = self._get(instance)
        self._record("post_live_migration_at_destination", guest.instance.uuid)
        self._prepared.pop(guest.instance.uuid, None)
        if guest.resume_after_migration:
            guest.resume_after_migration = False
            self._set(guest, power_state.RUNNING, events.RESUMED)

    def post_live_migration(self: FakeDriver, instance, migrate_data) -> None:
        uuid = Instance.coerce(instance).uuid
        self._record("post_live_migration", uuid)
        guest = self.guests.get(uuid)
        if guest is not None:
            if guest.power_state not in _OFF:
                raise exception.Conflict(reason="instance %s still runs on %s"
                                         % (uuid, self.host))
            with self._lock:
                self.guests.pop(uuid, None)
        self._leftovers.discard(uuid)

    def rollback_live_migration_at_destination(self: FakeDriver, instance,
                                               migrate_data) -> None:
        uuid = Instance.coerce(instance).uuid
        self._record("rollback_live_migration_at_destination", uuid)
        if uuid in self.guests:
            raise exception.Conflict(reason="instance %s arrived on %s; it is "
                                     "not rolled back" % (uuid, self.host))
        self._prepared.pop(uuid, None)
        self._incoming.discard(uuid)

    # --- cold ---------------------------------------------------------------------------

    def migrate_disk_and_power_off(self: FakeDriver, instance, migrate_data,
                                   timeout=None, retry_interval=None) -> MigrateData:
        guest = self._get(instance)
        uuid = guest.instance.uuid
        data = MigrateData.coerce(migrate_data)
        self._record("migrate_disk_and_power_off", uuid)
        peer = self if data.same_host and data.dest_host == self.host \
            else self._peer(uuid, data)
        if guest.power_state in (power_state.RUNNING, power_state.PAUSED):
            self._set(guest, power_state.SHUTDOWN, events.STOPPED)
        guest.power_state = power_state.SHUTDOWN  # a suspend's memory is lost
        guest.kept_for_revert = True
        staged = self._copy_guest(guest)
        staged.volumes = dict(guest.volumes)  # for their device names only
        if peer is self:
            # One uuid, one definition: the original steps aside.
            with self._lock:
                self._kept_here[uuid] = self.guests.pop(uuid)
        peer._staged[uuid] = staged
        return data

    def finish_migration(self: FakeDriver, instance, image_meta,
                         volumes: Sequence[VolumeConnection], migrate_data,
                         power_on: bool = True) -> None:
        instance = Instance.coerce(instance)
        uuid = instance.uuid
        self._record("finish_migration", uuid)
        staged = self._staged.get(uuid)
        if staged is None:
            raise exception.MigrationError(instance_uuid=uuid,
                                           reason="no disk of it arrived here")
        if uuid in self.guests:
            raise exception.Conflict(reason="instance %s is defined on %s already"
                                     % (uuid, self.host))
        if instance.flavor.root_gb < staged.instance.flavor.root_gb:
            raise exception.Invalid(reason="the root disk cannot shrink from %s "
                                    "to %s GB" % (staged.instance.flavor.root_gb,
                                                  instance.flavor.root_gb))
        guest = self._copy_guest(staged, instance=instance,
                                 power_state=power_state.SHUTDOWN)
        self._plug_volumes(guest, _connections(volumes), staged.devices())
        with self._lock:
            self.guests[uuid] = guest
            del self._staged[uuid]
        if power_on:
            self._boot(guest)

    def confirm_migration(self: FakeDriver, instance, migrate_data) -> None:
        uuid = Instance.coerce(instance).uuid
        self._record("confirm_migration", uuid)
        data = MigrateData.coerce(migrate_data)
        if self._kept_here.pop(uuid, None) is not None \
                or (data.same_host and data.dest_host == self.host):
            return      # same host: the guest defined is the resized one
        guest = self.guests.get(uuid)
        if guest is None:
            return
        if not guest.kept_for_revert:
            raise exception.Conflict(reason="instance %s on %s is not a copy kept "
                                     "for a revert" % (uuid, self.host))
        with self._lock:
            self.guests.pop(uuid, None)

    def finish_revert_migration(self: FakeDriver, instance,
                                volumes: Sequence[VolumeConnection],
                                migrate_data, power_on: bool = True) -> None:
        instance = Instance.coerce(instance)
        kept = self._kept_here.pop(instance.uuid, None)
        if kept is not None:
            with self._lock:
                self.guests[instance.uuid] = kept
        guest = self._get(instance)
        self._record("finish_revert_migration", instance.uuid)
        if guest.kept_for_revert:
            devices = guest.devices()
            guest.instance = instance
            guest.volumes = {}
            self._plug_volumes(guest, _connections(volumes), devices)
            guest.kept_for_revert = False
        if power_on and guest.power_state in _OFF:
            self._boot(guest)

    def cleanup_migration_at_destination(self: FakeDriver, instance,
                                         migrate_data) -> None:
        uuid = Instance.coerce(instance).uuid
        data = MigrateData.coerce(migrate_data)
        if data.same_host and data.dest_host == self.host:
            # The guest defined here is the original until it stepped aside.
            self._staged.pop(uuid, None)
            if uuid in self._kept_here:
                with self._lock:
                    self.guests.pop(uuid, None)
            return
        self.destroy(instance)


def _connections(volumes) -> list:
    """The connections of a cold move's volumes (BlockDeviceMapping objects
    since compute RPC 1.10; bare connections before)."""
    return [v.connection_info if isinstance(v, BlockDeviceMapping) else v
            for v in volumes or ()]

"""The virt driver interface: what the compute agent may ask of a hypervisor.

Rules every driver follows:

* Instances are :class:`flotilla.objects.Instance` (or its record form,
  accepted through ``Instance.coerce``); images are ``ImageMeta``; volumes
  are :class:`compute.virt.block_device.VolumeConnection`; a migration's
  facts are :class:`compute.virt.migration.MigrateData` (each also accepted
  as its dict form).
* Methods block until the operation is done and may take seconds (a live
  migration, minutes); the agent calls them from a worker, never from its
  RPC loop. A driver sends every blocking hypervisor call through
  ``flotilla.concurrency.run_blocking``.
* Failures raise :mod:`flotilla.exception` classes: ``InstanceNotFound`` when
  the guest does not exist (except where a method says it is idempotent),
  ``HypervisorUnavailable`` when the hypervisor cannot be reached,
  ``NotSupported`` for what this driver or hypervisor cannot do.
* The core methods (lifecycle, inspection) are abstract: every driver has
  them. The feature methods (volumes, snapshots, migration, resize) are
  concrete here and raise ``NotSupported``; a driver overrides those it can
  do and says so in :attr:`ComputeDriver.capabilities`, which callers read
  first rather than catching the error. Which flag governs which method is
  :data:`CAPABILITY_METHODS`. ``NotSupported`` comes before any other check
  (a missing instance, a bad argument).
* A driver never calls back into a manager or the database; it reports what
  happens to guests through the listener given to
  :meth:`ComputeDriver.register_event_listener`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from compute.virt.block_device import VolumeConnection
from compute.virt.events import EventListener
from compute.virt.migration import GuestPresence, MigrateData, MigrationProgress
from flotilla import exception
from flotilla.objects import BlockDeviceMapping, ImageMeta, Instance

SOFT = "SOFT"
HARD = "HARD"
REBOOT_TYPES = (SOFT, HARD)


@dataclasses.dataclass(frozen=True)
class DriverCapabilities:
    """What a driver can do, so callers ask instead of catching errors.

    The feature flags default to False: a driver that does not say it can
    do something cannot (see CAPABILITY_METHODS).
    """

    supports_pause: bool = True
    supports_suspend: bool = True
    supports_soft_reboot: bool = True
    supports_acpi_shutdown: bool = True
    supports_console_log: bool = False
    supports_diagnostics: bool = False
    supports_image_cache: bool = False
    #: attach_volume, detach_volume, get_volume_devices
    supports_attach: bool = False
    #: extend_volume: a guest sees an attached volume grow while it runs
    supports_extend_volume: bool = False
    #: resume_after_io_error: a guest a volume's I/O error paused (the
    #: volume's server went away) is resumed once the volume answers again
    supports_volume_io_error_resume: bool = False
    #: snapshot of the root disk, the guest running or not
    supports_snapshots: bool = False
    #: the migration checks with live=True and the *live_migration* methods
    supports_live_migration: bool = False
    #: the migration checks with live=False, migrate_disk_and_power_off,
    #: finish_migration, confirm_migration, finish_revert_migration (cold
    #: migration, and resize, which is a cold migration to a new flavor)
    supports_cold_migration: bool = False


#: The methods each feature flag governs: with the flag False every one of
#: them raises NotSupported.
CAPABILITY_METHODS: dict[str, tuple[str, ...]] = {
    "supports_pause": ("pause", "unpause"),
    "supports_suspend": ("suspend", "resume"),
    "supports_console_log": ("get_console_output",),
    "supports_attach": ("attach_volume", "detach_volume", "get_volume_devices"),
    "supports_extend_volume": ("extend_volume",),
    "supports_volume_io_error_resume": ("resume_after_io_error",),
    "supports_snapshots": ("snapshot", "recover_snapshot"),
    "supports_live_migration": (
        "pre_live_migration", "live_migration", "live_migration_progress",
        "live_migration_abort", "live_migration_force_complete",
        "post_live_migration_at_destination", "post_live_migration",
        "rollback_live_migration_at_destination"),
    "supports_cold_migration": (
        "migrate_disk_and_power_off", "finish_migration", "confirm_migration",
        "finish_revert_migration"),
}


def capability_names(capabilities: DriverCapabilities) -> list[str]:
    """The flags a driver has set (what a compute node reports)."""
    return sorted(f.name for f in dataclasses.fields(capabilities)
                  if getattr(capabilities, f.name) is True)


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """A guest's state as the hypervisor reports it right now."""

    power_state: int      # compute.virt.power_state
    memory_kb: int        # current memory
    max_memory_kb: int
    vcpus: int
    cpu_time_ns: int      # CPU time used since the guest started

    @property
    def memory_mb(self) -> int:
        return self.memory_kb // 1024


@dataclasses.dataclass(frozen=True)
class SnapshotFile:
    """What :meth:`ComputeDriver.snapshot` wrote: a standalone image file."""

    path: str
    disk_format: str          # qcow2
    size_bytes: int           # of the file
    virtual_size_bytes: int   # of the disk the guest saw


class ComputeDriver(abc.ABC):
    """A hypervisor as the compute agent drives it."""

    #: Overridden per driver (and per connection: libvirt's test driver can
    #: do less than QEMU).
    capabilities: DriverCapabilities = DriverCapabilities()

    @abc.abstractmethod
    def init_host(self, host: str) -> None:
        """Connect to the hypervisor of ``host`` (the agent's [DEFAULT] host).

        Called once before any other method; raises HypervisorUnavailable
        when the hypervisor cannot be reached.
        """

    def cleanup_host(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads; the driver is not used after."""

    @abc.abstractmethod
    def spawn(self, instance: Instance, image_meta: ImageMeta | None,
              network_info: list | None = None,
              block_device_info: list | None = None) -> None:
        """Create the guest with a root disk from ``image_meta`` and start it.

        ``block_device_info``: BlockDeviceMapping objects of the volumes the
        guest starts with, each with its NBD ``connection_info``; a volume
        with boot_index 0 is the boot disk (vda) and then no local root disk
        is made (``image_meta`` may be None). See
        compute.virt.block_device.spawn_volumes for the device names.

        Returns once the guest runs. All or nothing: on any failure whatever
        was created (disk, definition, directory) is removed and
        InstanceDeployFailure (or ImageChecksumMismatch, with the original
        cause) is raised. A guest of the same uuid that already exists is an
        InstanceDeployFailure, never replaced.
        """

    @abc.abstractmethod
    def destroy(self, instance: Instance) -> None:
        """Stop the guest at once and delete it with its disks and files.

        Idempotent: a guest that does not exist (or only partly exists)
        is not an error, and a second call does nothing.
        """

    @abc.abstractmethod
    def reboot(self, instance: Instance, reboot_type: str = SOFT) -> None:
        """Restart the guest; it runs again when this returns.

        SOFT asks the OS to shut down (ACPI) and starts the guest again once
        it is off, falling back to HARD after [compute] reboot_timeout.
        HARD resets the guest at once. A guest that is shut off is started.
        """

    @abc.abstractmethod
    def power_off(self, instance: Instance, timeout: int | None = None,
                  retry_interval: int | None = None) -> None:
        """Shut the guest off; it exists but does not run when this returns.

        Sends ACPI shutdown requests every ``retry_interval`` seconds and,
        once ``timeout`` seconds passed (defaults: [compute]
        shutdown_timeout and shutdown_retry_interval), pulls the plug.
        ``timeout=0`` pulls the plug at once. A guest already off is fine.
        """

    @abc.abstractmethod
    def power_on(self, instance: Instance) -> None:
        """Start a shut-off guest (restoring a suspended one). A running
        guest is left alone."""

    @abc.abstractmethod
    def pause(self, instance: Instance) -> None:
        """Freeze the guest's vCPUs; its memory stays in the host's RAM."""

    @abc.abstractmethod
    def unpause(self, instance: Instance) -> None:
        """Let a paused guest run again."""

    @abc.abstractmethod
    def suspend(self, instance: Instance) -> None:
        """Save the guest's memory to disk and stop it (power_state
        SUSPENDED); :meth:`resume` brings it back where it was."""

    @abc.abstractmethod
    def resume(self, instance: Instance) -> None:
        """Restore a suspended guest; it runs when this returns."""

    @abc.abstractmethod
    def get_info(self, instance: Instance) -> InstanceInfo:
        """The guest's current power state and size; InstanceNotFound when
        it does not exist."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """UUIDs of the guests this driver manages on this host, running or
        not (guests the operator created by other means are left out)."""

    def list_instance_files(self) -> list[str]:
        """UUIDs of the instances whose files (directory, disks) are on this
        host, with a guest or not; [] for a driver that keeps none. An agent
        starting removes those of instances that are not its own (destroy)."""
        return []

    @abc.abstractmethod
    def get_console_output(self, instance: Instance) -> str:
        """The tail of the guest's serial console (bounded size, decoded
        leniently). NotSupported unless capabilities.supports_console_log."""

    @abc.abstractmethod
    def get_diagnostics(self, instance: Instance) -> dict[str, Any]:
        """Counters of the guest: ``{"state", "cpu_time_ns", "memory_kb",
        "disks": {dev: {read_bytes, write_bytes, read_requests,
        write_requests, errors}}, "interfaces": {dev: {rx_bytes, rx_packets,
        tx_bytes, tx_packets, ...}}, "memory": {...}}``; sections the
        hypervisor cannot report are empty."""

    @abc.abstractmethod
    def get_available_resource(self) -> dict[str, Any]:
        """This host's resources for the resource tracker: ``vcpus``,
        ``memory_mb``, ``disk_gb`` (totals), ``vcpus_used``,
        ``memory_mb_used``, ``disk_gb_used``, ``hypervisor_type``,
        ``hypervisor_version`` (int), ``hypervisor_hostname``,
        ``cpu_arch``."""

    def get_host_uptime(self) -> str:
        """This host's uptime(1) line (``10:01:02 up 3 days, 2:03,  1 user,
        load average: 0.1, 0.2, 0.3``), as Nova's os-hypervisors shows it.
        The agent runs on the hypervisor host, so this reads its own."""
        return host_uptime()

    @abc.abstractmethod
    def register_event_listener(self, callback: EventListener | None) -> None:
        """Send every guest lifecycle event to ``callback`` (None stops).

        The callback runs on a driver thread and must return quickly.
        """

    def manage_image_cache(self) -> list[str]:
        """Remove cached base images no guest uses any more and that are
        older than the configured age; returns what was removed. Drivers
        without an image cache remove nothing."""
        return []

    def find_guest(self, instance: Instance) -> GuestPresence:
        """Whether this host holds the guest and in what state, and whether
        a migration job involves it here.

        Asked of both hosts of an interrupted migration, the answers say
        where the guest actually runs (the one RUNNING and not INCOMING).
        No side effects; never raises InstanceNotFound (``defined`` False).
        This default knows no migrations; drivers that migrate override it.
        """
        try:
            info = self.get_info(instance)
        except exception.InstanceNotFound:
            return GuestPresence(defined=False)
        return GuestPresence(defined=True, power_state=info.power_state)

    # --- volumes (supports_attach, supports_extend_volume) -------------------
    #
    # A volume is a network disk (NBD, see block_device.py): attaching it is
    # plugging an export into the guest; nothing is copied or created here.

    def attach_volume(self, instance: Instance, connection: VolumeConnection,
                      device_name: str | None = None) -> str:
        """Attach the volume to the guest and return its device name.

        Live when the guest runs and persistent in its definition either
        way. ``device_name`` None takes the first free name
        (block_device.next_device_name); a given name must be free, else
        DeviceNameUnavailable (also when all names are taken). Returns once
        the hypervisor accepted the device (the guest OS may list it a
        moment later). Idempotent per volume: a volume already attached
        returns its current device. VolumeAttachFailed when the hypervisor
        refuses; then nothing is attached.
        """
        self._not_supported("volume attach")

    def detach_volume(self, instance: Instance, volume_id: str) -> bool:
        """Ask for the volume's disk to be removed; returns at once.

        True: removal was requested; the disk leaves the persistent
        definition now and the running guest when its OS lets go, which the
        listener learns as a DeviceRemovedEvent (a guest not running lets go
        at once, and the event is sent too). The caller waits for that event
        up to its deadline and may call again (asking again is no error).
        False: the volume is not attached (any more): no event will follow.
        """
        self._not_supported("volume detach")

    def get_volume_devices(self, instance: Instance) -> dict[str, str]:
        """``{volume_id: device name}`` of the volumes attached now (in the
        running guest, or in the definition of a guest that does not run).
        What a detach whose event was lost, or a reconciliation, reads."""
        self._not_supported("volume listing")

    def get_disk_devices(self, instance: Instance) -> set[str]:
        """Every device name the guest's disks take (local disks and
        volumes, in the running guest and in its definition): what a name
        reserved for a coming attach must avoid."""
        self._not_supported("volume listing")

    def extend_volume(self, instance: Instance, volume_id: str,
                      new_size_bytes: int) -> None:
        """Tell the running guest its volume grew to ``new_size_bytes`` (the
        volume service resized it first); the guest sees the new size when
        this returns. Idempotent. VolumeAttachFailed if the volume is not
        attached; Invalid for a size below the current one.

        The volume host serves the new size on a new connection (see
        volume.nbd.StorageDaemon.grow_export): the driver makes the guest's
        disk connect again without the guest noticing, and resumes the
        guest if a request it made meanwhile paused it (volume disks pause
        the guest on an I/O error rather than fail the request)."""
        self._not_supported("volume extend")

    def resume_after_io_error(self, instance: Instance) -> bool:
        """Resume a guest that an I/O error of a volume disk paused, once
        every volume disk of it answers again (its request is then
        retried, the guest never sees the error). False when the guest is
        not paused by an I/O error (running, or paused for another reason,
        e.g. by its user: never resumed here); True when it was resumed.
        Raises VolumeUnreachable (compute.virt.block_device) while a volume
        still does not answer: the caller tries again later."""
        self._not_supported("resume after an I/O error")

    # --- snapshot (supports_snapshots) ---------------------------------------

    def snapshot(self, instance: Instance, target_path: str,
                 base_image: ImageMeta | None = None,
                 on_copied: Callable[[], None] | None = None) -> SnapshotFile:
        """Write the guest's root disk to ``target_path`` as a standalone,
        flattened qcow2 (no backing file), ready to upload as an image.

        The guest keeps running (never paused; a block copy or an external
        snapshot plus a shallow commit); a stopped, paused or suspended guest
        is converted as it is. The guest ends in the power state it was in.
        ``target_path`` must not exist (Invalid) and its directory must. On
        failure SnapshotFailed, and no partial file, temporary overlay or
        block job is left. A cached base image is never written to; with
        ``base_image`` (id, sha256 of the disk's image) a base whose data
        lost that sha256 is refused (SnapshotFailed). ``on_copied`` is
        called once the guest is no longer involved, before flattening.
        """
        self._not_supported("snapshot")

    def recover_snapshot(self, instance: Instance) -> None:
        """After the agent died during :meth:`snapshot`: end any block job
        the snapshot left on the guest (the guest keeps its own disk) and
        remove the temporary files it made. Idempotent; a guest with
        nothing left over, or no guest at all, is no error."""
        self._not_supported("snapshot recovery")

    # --- rebuild ----------------------------------------------------------------

    def rebuild(self, instance: Instance, image_meta: ImageMeta | None,
                power_on: bool = True, block_device_info: list | None = None) -> None:
        """Give the guest a new root disk from ``image_meta`` (same uuid);
        it runs afterwards when ``power_on``, else it is shut off; a guest
        that does not exist is spawned, with the volume disks of
        ``block_device_info`` as spawn takes them (an evacuated server:
        one booted from a volume gets that volume back as its root, data
        and all, and ``image_meta`` is None). This default destroys and
        spawns again; drivers that can fetch the new disk first, so that
        failing to get it leaves the guest as it was (InstanceDeployFailure).
        """
        self.destroy(instance)
        self.spawn(instance, image_meta, block_device_info=block_device_info)
        if not power_on:
            self.power_off(instance, timeout=0)

    # --- migration: checks (both kinds) ---------------------------------------
    #
    # Live: check source -> check destination -> pre_live_migration (dest)
    # -> live_migration (source; progress, abort, force_complete meanwhile)
    # -> post_live_migration_at_destination (dest) -> post_live_migration
    # (source). On failure: rollback_live_migration_at_destination; the guest
    # runs on the source throughout. After a crash, find_guest on both hosts
    # says which of the two to call.
    #
    # Cold (and resize): check source -> check destination ->
    # migrate_disk_and_power_off (source) -> finish_migration (dest, new
    # flavor) -> confirm_migration (source) or, to revert, destroy (dest) ->
    # finish_revert_migration (source, old flavor).

    def check_can_migrate_source(self, instance: Instance,
                                 live: bool) -> MigrateData:
        """On the source: can the guest leave this host, live or cold?

        No side effects. Returns MigrateData with ``live``, ``source_host``,
        ``local_disks``, ``volume_ids`` and (live) ``guest_cpu``.
        MigrationPreCheckError when not (live: the guest must be running or
        paused), NotSupported when this driver cannot migrate that way.
        """
        self._not_supported("live migration" if live else "cold migration")

    def check_can_migrate_destination(self, instance: Instance,
                                      migrate_data: MigrateData) -> MigrateData:
        """On the destination: can the guest come here?

        No side effects. Refuses (MigrationPreCheckError) the source host
        itself, a guest of this uuid already here, and (live) a CPU or virt
        type the guest cannot run on. Returns ``migrate_data`` with
        ``dest_host`` and ``dest_uri`` set. Capacity is the scheduler's
        claim, not checked here.
        """
        live = MigrateData.coerce(migrate_data).live
        self._not_supported("live migration" if live else "cold migration")

    # --- live migration (supports_live_migration) ------------------------------

    def pre_live_migration(self, instance: Instance, image_meta: ImageMeta | None,
                           volumes: Sequence[BlockDeviceMapping],
                           migrate_data: MigrateData) -> MigrateData:
        """On the destination: make ready to receive the guest.

        Its own instance directory, the base image in its cache and empty
        local disks on it (the copy fills them; ``image_meta`` may be None
        for a guest whose root is a volume), its ``volumes`` (block devices
        with ``connection_info`` and the ``device_name`` they have on the
        source) in its definition, reached where the source reaches them,
        and the guest definition rendered with its own paths, returned in
        ``dest_config``. All or nothing (MigrationError, nothing left);
        calling it again redoes it.
        """
        self._not_supported("live migration")

    def live_migration(self, instance: Instance, migrate_data: MigrateData) -> None:
        """On the source: move the running guest to the destination.

        Peer-to-peer, live, persistent on the destination and undefined
        here on success; local disks are copied, network volumes are not.
        Blocks until the job ends; progress, abort and force_complete are
        called from other threads meanwhile. Returns when the guest runs on
        the destination. MigrationAborted after an abort, MigrationError on
        any other failure: in both cases the guest still runs here.
        """
        self._not_supported("live migration")

    def live_migration_recover(self, instance: Instance) -> None:
        """On the source, after an agent restart during live_migration: the
        job outlives the agent (the hypervisor runs it). Adopt it if it still
        runs (progress, abort, force_complete and the completion timeout
        reach it again) and block until it ends. Returns when the guest has
        left this host; MigrationAborted after an abort, MigrationError when
        the guest still runs here (the job failed, or never started)."""
        self._not_supported("live migration")

    def live_migration_progress(self, instance: Instance) -> MigrationProgress | None:
        """On the source: the running job's figures, None when no job runs."""
        self._not_supported("live migration")

    def live_migration_abort(self, instance: Instance) -> None:
        """On the source: cancel the running job; live_migration then raises
        MigrationAborted and the guest keeps running here. Returns once the
        cancel was requested. NoMigrationInProgress when no job runs."""
        self._not_supported("live migration")

    def live_migration_force_complete(self, instance: Instance) -> None:
        """On the source: make a migration that does not converge finish,
        by switching to post-copy where enabled, else by pausing the guest
        (post_live_migration_at_destination resumes it). Returns at once.
        NoMigrationInProgress when no job runs."""
        self._not_supported("live migration")

    def post_live_migration_at_destination(self, instance: Instance,
                                           migrate_data: MigrateData) -> None:
        """On the destination, after success: the guest is defined here and
        runs (resumed if a forced completion paused it). Idempotent.
        InstanceNotFound when the guest did not arrive."""
        self._not_supported("live migration")

    def post_live_migration(self, instance: Instance,
                            migrate_data: MigrateData) -> None:
        """On the source, after success: remove what is left of the guest
        here (its definition if any, its directory and disks). Never touches
        network volumes. Idempotent."""
        self._not_supported("live migration")

    def rollback_live_migration_at_destination(self, instance: Instance,
                                               migrate_data: MigrateData) -> None:
        """On the destination, after a failure or abort: remove what
        pre_live_migration made and any incoming copy of the guest.

        Call it only while the guest runs on the source (find_guest there);
        a guest this host finalized (post_live_migration_at_destination) is
        never removed: Conflict. Idempotent.
        """
        self._not_supported("live migration")

    # --- cold migration and resize (supports_cold_migration) -------------------

    def migrate_disk_and_power_off(self, instance: Instance,
                                   migrate_data: MigrateData,
                                   timeout: int | None = None,
                                   retry_interval: int | None = None) -> MigrateData:
        """On the source: shut the guest off (as power_off, with its
        timeout) and copy its local disks to the destination, through the
        hypervisors (no shared filesystem). The guest stays defined here,
        off, with its disks intact, until confirm_migration or a revert.
        Returns ``migrate_data`` (with anything finish_migration needs).
        MigrationError on failure: the source copy is untouched, the guest
        off (the caller may power it on).
        """
        self._not_supported("cold migration")

    def finish_migration(self, instance: Instance, image_meta: ImageMeta | None,
                         volumes: Sequence[VolumeConnection],
                         migrate_data: MigrateData, power_on: bool = True) -> None:
        """On the destination: define the guest from the disks
        migrate_disk_and_power_off sent, sized to ``instance.flavor`` (a
        resize grows the root disk; a smaller root is Invalid), with
        ``volumes`` plugged (BlockDeviceMapping objects since compute RPC
        1.10: the same exports on their recorded devices; a boot volume,
        index 0, is its root and nothing was copied), and start it when
        ``power_on``. With ``migrate_data.same_host`` the destination is the
        source itself (see the libvirt driver). All or nothing:
        on failure the guest is not defined here (destroy removes the disks).
        """
        self._not_supported("cold migration")

    def confirm_migration(self, instance: Instance,
                          migrate_data: MigrateData) -> None:
        """On the source, when the move is accepted: remove the copy kept
        for a revert (definition, directory, disks). Idempotent; Conflict
        when the guest here is not such a copy (it was reverted)."""
        self._not_supported("cold migration")

    def finish_revert_migration(self, instance: Instance,
                                volumes: Sequence[VolumeConnection],
                                migrate_data: MigrateData,
                                power_on: bool = True) -> None:
        """On the source, after destroy on the destination: bring back the
        kept guest with ``instance.flavor`` (the old one) and ``volumes``,
        started when ``power_on``. Idempotent. InstanceNotFound when no copy
        was kept (already confirmed)."""
        self._not_supported("cold migration")

    def cleanup_migration_at_destination(self, instance: Instance,
                                         migrate_data: MigrateData) -> None:
        """On the destination, after a failed or reverted cold move: destroy
        the guest finish_migration defined and remove every disk that
        arrived (nothing here may outlive the move). Idempotent. The
        default is destroy, for drivers whose arriving disks live in the
        instance's directory."""
        self.destroy(instance)

    # --- helpers ---------------------------------------------------------------

    def _not_supported(self, operation: str) -> NoReturn:
        raise exception.NotSupported(operation=operation,
                                     what=type(self).__name__)


def host_uptime() -> str:
    """uptime(1)'s line for this machine: the command's own output, or the
    same line made from /proc where the command is missing."""
    import shutil
    import subprocess
    command = shutil.which("uptime")
    if command:
        result = subprocess.run([command], capture_output=True, text=True, timeout=10,
                                env={"LANG": "C", "PATH": "/usr/bin:/bin"})
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    import time
    with open("/proc/uptime") as f:
        seconds = int(float(f.read().split()[0]))
    with open("/proc/loadavg") as f:
        loads = f.read().split()[:3]
    days, rest = divmod(seconds, 86400)
    span = "%d:%02d" % (rest // 3600, rest % 3600 // 60)
    if days:
        span = "%d day%s, %s" % (days, "" if days == 1 else "s", span)
    return "%s up %s,  0 users,  load average: %s" % (
        time.strftime("%H:%M:%S"), span, ", ".join(loads))

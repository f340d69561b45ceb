"""Live migration in the libvirt driver (the contract: compute/virt/driver.py).

The protocol between two hosts' libvirtds (DESIGN.md, "Flows"):

* the destination renders the guest for itself (pre_live_migration): its
  own instance directory, the base image fetched into its own cache and an
  empty overlay on it of the same size, and the domain XML with its own
  paths, handed back in ``dest_config``;
* the source runs one peer-to-peer job (``migrateToURI3``: live, persistent
  on the destination, undefined here on success), giving libvirt the
  destination's XML and the local disks to copy. The overlays are copied
  incrementally (``VIR_MIGRATE_NON_SHARED_INC``): the base is the same
  image on both sides, so only what the guest wrote moves;
* the downtime limit is set once the job runs (libvirt takes it only for
  a running job) and raised in steps while it runs (downtime_steps), the
  bandwidth with the job; a job that outlives
  ``[libvirt] live_migration_completion_timeout`` is aborted;
* a failed or aborted job leaves the guest running here: libvirt removes
  the incoming domain on the destination itself, and
  rollback_live_migration_at_destination removes the files;
* force_complete lifts the bandwidth limit and either switches the job to
  post-copy (``[libvirt] live_migration_permit_post_copy``: the job was
  started with VIR_MIGRATE_POSTCOPY, the guest runs on the destination at
  once) or pauses the guest; the destination resumes a guest that arrives
  paused unless the instance is meant to be paused.

Whether a domain is coming or going is read from libvirt's job (its
``operation``), not from memory: an agent that restarts mid-migration still
knows (find_guest).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
import time

import libvirt
from lxml import etree

from compute.virt import power_state
from compute.virt.libvirt import cpu_compat, xml
from compute.virt.libvirt.guest import Guest
from compute.virt.libvirt.host import is_connection_error
from compute.virt.libvirt.volumes import disk_target, volume_disks
from compute.virt.migration import INCOMING, OUTGOING, GuestPresence, MigrateData, MigrationProgress
from flotilla import concurrency, exception, states
from flotilla.objects import BlockDeviceMapping, ImageMeta, Instance

LOG = logging.getLogger(__name__)

_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
          | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
          | libvirt.VIR_MIGRATE_NON_SHARED_INC)
# virDomainJobOperation (libvirt >= 3.3): what a domain's job does.
_OPERATION_IN = getattr(libvirt, "VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN", 2)
_OPERATION_OUT = getattr(libvirt, "VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT", 3)
# An agent that restarts mid-migration takes the job as over once libvirt
# shows none for this long, or cannot say for this long.
_JOB_ENDED_FOR = 2.0
_JOB_UNREADABLE_FOR = 30.0
_UNREADABLE = object()
_POLL = 0.2
_UNLIMITED_MIB = 8192   # what "no limit" means when lifting a bandwidth cap


def downtime_steps(opts, data_gib: float) -> list[tuple[float, int]]:
    """``(seconds into the job, downtime limit in ms)``: from a tenth of
    ``[libvirt] live_migration_downtime`` up to all of it in
    ``live_migration_downtime_steps`` even steps, one every
    ``live_migration_downtime_delay`` seconds per GiB to move (as Nova
    does). A guest that converges at once switches over within the first,
    smallest pause; a busy one gets more room as the job goes on."""
    count = opts.live_migration_downtime_steps
    top = opts.live_migration_downtime
    base = top / count
    offset = (top - base) / count
    delay = opts.live_migration_downtime_delay * max(data_gib, 0.1)
    return [(delay * i, int(base + offset * i)) for i in range(count + 1)]


@dataclasses.dataclass
class _Job:
    """A live migration this agent runs as the source."""

    aborted: bool = False
    forced: bool = False


class LibvirtMigrationMixin:
    """The migration half of LibvirtDriver (which provides ``host``,
    ``conf``, ``image_cache``, ``renderer``, ``instance_dir``,
    ``_domain_spec``, ``_guest`` and ``host_name``)."""

    def _init_migration(self) -> None:
        self._migration_jobs: dict[str, _Job] = {}
        self._migration_lock = threading.Lock()

    # --- helpers ----------------------------------------------------------------

    def _migration_uri(self) -> str:
        template = self.conf.libvirt.live_migration_uri
        if not template:
            return self.host.uri
        return template % self.host_name if "%s" in template else template

    def _guest_cpu(self) -> str:
        # TCG and KVM guests get QEMU's default CPU model for the virt type:
        # two hosts with the same virt type run the same guest CPU.
        return "%s/default" % self.conf.libvirt.virt_type

    def _job_operation(self, domain, unreadable: object = None) -> object:
        """The operation of the domain's running job, None when none runs
        (or the domain is gone); ``unreadable`` when libvirt could not say
        (a query can fail at a job's transitions while the job runs on)."""
        try:
            stats = self.host.call(domain.jobStats, 0)
        except libvirt.libvirtError as exc:
            return None if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN else unreadable
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return stats.get("operation", 0)

    def _require_live(self) -> None:
        if not self.capabilities.supports_live_migration:
            self._not_supported("live migration")

    def _job_of(self, uuid: str) -> _Job:
        with self._migration_lock:
            job = self._migration_jobs.get(uuid)
        if job is None:
            raise exception.NoMigrationInProgress(instance_uuid=uuid)
        return job

    # --- checks -------------------------------------------------------------------

    def check_can_migrate_source(self, instance, live: bool) -> MigrateData:
        if not live or not self.capabilities.supports_live_migration:
            self._not_supported("live migration" if live else "cold migration")
        instance = Instance.coerce(instance)
        guest = self._guest(instance)

        def refuse(reason: str):
            raise exception.MigrationPreCheckError(instance_uuid=instance.uuid, reason=reason)
        state = guest.power_state()
        if state not in (power_state.RUNNING, power_state.PAUSED):
            refuse("a live migration needs a running or paused guest, not a %s one"
                   % power_state.name(state))
        if self._job_operation(guest.domain) is not None:
            refuse("a job runs on it already")
        # What moves with the guest: its file disks (root, swap). Network
        # disks (volumes over NBD) stay on their volume host, both hosts
        # reach them.
        document = guest.xml()
        disks = tuple(disk_target(d) for d in document.findall("devices/disk")
                      if d.get("device", "disk") == "disk" and d.get("type") == "file")
        volumes = tuple(sorted(volume_disks(document)))
        persistent = etree.fromstring(self.host.call(
            guest.domain.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        return MigrateData(live=True, source_host=self.host_name,
                           guest_cpu=self._guest_cpu(), local_disks=disks,
                           volume_ids=volumes,
                           guest=cpu_compat.guest_facts(document, persistent))

    def check_can_migrate_destination(self, instance, migrate_data) -> MigrateData:
        data = MigrateData.coerce(migrate_data)
        if not data.live or not self.capabilities.supports_live_migration:
            self._not_supported("live migration" if data.live else "cold migration")
        instance = Instance.coerce(instance)

        def refuse(reason: str):
            raise exception.MigrationPreCheckError(instance_uuid=instance.uuid, reason=reason)
        if data.source_host == self.host_name:
            refuse("the destination is its source host %s" % self.host_name)
        if self.host.lookup(instance.uuid) is not None:
            refuse("host %s holds it already" % self.host_name)
        if data.guest:
            # Virt type, arch, machine type and CPU against this host's
            # capabilities and hypervisor (cpu_compat).
            reason = self.host.with_connection(lambda conn: cpu_compat.refusal(
                data.guest, conn.getCapabilities(), self.conf.libvirt.virt_type,
                self.host_name, cpu_compat.comparer(conn)))
            if reason:
                refuse(reason)
        elif data.guest_cpu != self._guest_cpu():
            # A source older than those facts: its virt type's default CPU.
            refuse("its CPU %r cannot run as %r on host %s"
                   % (data.guest_cpu, self._guest_cpu(), self.host_name))
        return dataclasses.replace(data, dest_host=self.host_name,
                                   dest_uri=self._migration_uri())

    # --- destination ----------------------------------------------------------------

    def pre_live_migration(self, instance, image_meta, volumes, migrate_data) -> MigrateData:
        if not self.capabilities.supports_live_migration:
            self._not_supported("live migration")
        instance = Instance.coerce(instance)
        image = ImageMeta.coerce(image_meta)
        data = MigrateData.coerce(migrate_data)
        volumes = [BlockDeviceMapping.coerce(v) for v in volumes or ()]
        if self.host.lookup(instance.uuid) is not None:
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="it is defined here already")
        # Its volumes keep their NBD connections and device names: the
        # destination's definition names the same exports.
        spec = self._domain_spec(instance, volumes)
        if spec.root_disk is not None and image is None:
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="no image to make its disk on")
        directory = self.instance_dir(instance)
        # Called again (a retried prepare): start from nothing.
        shutil.rmtree(directory, ignore_errors=True)
        try:
            os.makedirs(directory)
            if spec.root_disk is not None:
                # The same base, the same virtual size: the incremental copy
                # then writes only the source overlay's clusters into ours.
                self.image_cache.prepare_disk(image, spec.root_disk.path,
                                              instance.flavor.root_gb)
            for disk in spec.disks:
                if disk.role == xml.SWAP:
                    with open(disk.path, "wb") as blank:
                        blank.truncate(instance.flavor.swap * 1024 * 1024)
            document = self.renderer.render(instance, spec)
        except Exception as exc:
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, exception.FlotillaException):
                raise exception.MigrationError(instance_uuid=instance.uuid,
                                               reason=str(exc)) from exc
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="preparing its disk failed: %s" % exc) from exc
        LOG.info("prepared %s for an incoming live migration", instance.uuid)
        return dataclasses.replace(data, dest_config=document)

    def post_live_migration_at_destination(self, instance, migrate_data) -> None:
        self._require_live()
        instance = Instance.coerce(instance)
        guest = self._guest(instance)     # InstanceNotFound: it did not arrive
        if guest.power_state() == power_state.PAUSED and instance.vm_state != states.PAUSED:
            # Paused by a forced completion on the source.
            guest.unpause()
        LOG.info("live migration of %s arrived here", instance.uuid)

    def rollback_live_migration_at_destination(self, instance, migrate_data) -> None:
        self._require_live()
        instance = Instance.coerce(instance)
        domain = self.host.lookup(instance.uuid)
        if domain is not None:
            if self._moving(domain, Guest(self.host, domain).power_state()) != INCOMING:
                raise exception.Conflict(reason="instance %s arrived on %s; it is not "
                                         "rolled back" % (instance.uuid, self.host_name))
            # Still coming (the source's job is ending): stop it here.
            guest = Guest(self.host, domain)
            guest.destroy()
            guest.undefine()
        shutil.rmtree(self.instance_dir(instance), ignore_errors=True)
        LOG.info("rolled back the incoming live migration of %s", instance.uuid)

    # --- source ---------------------------------------------------------------------

    def live_migration(self, instance, migrate_data) -> None:
        if not self.capabilities.supports_live_migration:
            self._not_supported("live migration")
        instance = Instance.coerce(instance)
        data = MigrateData.coerce(migrate_data)
        guest = self._guest(instance)
        opts = self.conf.libvirt
        flags = _FLAGS
        if opts.live_migration_auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if opts.live_migration_permit_post_copy:
            # Allowed only: the job stays pre-copy until force_complete.
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        # The destination rendered its own XML; the guest keeps its addresses.
        dest_xml = xml.keep_device_addresses(
            data.dest_config, self.host.call(guest.domain.XMLDesc, 0))
        # The same XML for the definition PERSIST_DEST leaves: without it
        # libvirt keeps the source's, whose paths (disk, console log) are the
        # source host's, and the guest could not start there once stopped.
        params: dict = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
                        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: dest_xml}
        if data.local_disks:
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(data.local_disks)
        else:
            # Nothing local (a server booted from a volume): no disk copy.
            # An absent list would mean every disk, volumes included.
            flags &= ~libvirt.VIR_MIGRATE_NON_SHARED_INC
        if opts.live_migration_bandwidth:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = opts.live_migration_bandwidth
        job = _Job()
        with self._migration_lock:
            if instance.uuid in self._migration_jobs:
                raise exception.MigrationError(instance_uuid=instance.uuid,
                                               reason="it is migrating already")
            self._migration_jobs[instance.uuid] = job
        try:
            # Not through host.call: a connection error here is most often the
            # source libvirtd's own one to the destination (its libvirtd
            # restarted), not ours; ours has its close callback.
            handle = concurrency.spawn(concurrency.run_blocking, guest.domain.migrateToURI3,
                                       data.dest_uri, params, flags)
            copied_gib = instance.flavor.root_gb if data.local_disks else 0
            self._watch(guest, instance.uuid, job, handle,
                        data_gib=instance.flavor.memory_mb / 1024 + copied_gib)
            try:
                handle.wait()
            except libvirt.libvirtError as exc:
                if job.aborted or exc.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
                    raise exception.MigrationAborted(instance_uuid=instance.uuid) from exc
                reason = exc.get_error_message()
                if is_connection_error(exc):
                    reason = "a connection between the hypervisors broke: %s" % reason
                raise exception.MigrationError(instance_uuid=instance.uuid,
                                               reason=reason) from exc
            except exception.HypervisorUnavailable as exc:
                raise exception.MigrationError(instance_uuid=instance.uuid,
                                               reason=str(exc)) from exc
        finally:
            if job.forced and self.host.lookup(instance.uuid) is not None:
                # The job failed after we paused the guest: it runs on here.
                Guest(self.host, self.host.lookup(instance.uuid)).unpause()
            with self._migration_lock:
                self._migration_jobs.pop(instance.uuid, None)
        LOG.info("live migration of %s to %s completed", instance.uuid, data.dest_host)

    def live_migration_recover(self, instance) -> None:
        self._require_live()
        uuid = Instance.coerce(instance).uuid
        job = _Job()
        with self._migration_lock:
            if uuid in self._migration_jobs:
                raise exception.MigrationError(instance_uuid=uuid,
                                               reason="it is migrating already")
            self._migration_jobs[uuid] = job
        timeout = self.conf.libvirt.live_migration_completion_timeout
        started = time.monotonic()
        try:
            domain = self.host.lookup(uuid)
            # libvirtd runs the job to its end without the agent that
            # started it: watch it as live_migration would have. One reading
            # is not its end: a query that failed proves nothing, and the
            # end is final, so it must hold for _JOB_ENDED_FOR.
            reading, reading_since = True, time.monotonic()
            while domain is not None:
                try:
                    operation = self._job_operation(domain, unreadable=_UNREADABLE)
                except exception.HypervisorUnavailable:
                    operation = _UNREADABLE
                runs = None if operation is _UNREADABLE else operation == _OPERATION_OUT
                if runs is not reading:
                    reading, reading_since = runs, time.monotonic()
                held = time.monotonic() - reading_since
                if runs is False and held >= _JOB_ENDED_FOR:
                    LOG.info("the outgoing job of %s is over", uuid)
                    break
                if runs is None and held >= _JOB_UNREADABLE_FOR:
                    LOG.warning("the job of %s could not be read for %ss: taken as "
                                "ended", uuid, _JOB_UNREADABLE_FOR)
                    break
                if timeout and time.monotonic() - started > timeout and not job.aborted:
                    LOG.warning("live migration of %s ran over %ss: aborted", uuid, timeout)
                    try:
                        self._abort(Guest(self.host, domain), uuid, job)
                    except exception.NoMigrationInProgress:
                        pass
                concurrency.sleep(_POLL)
                domain = self.host.lookup(uuid)
            state = self.find_guest(Instance(uuid=uuid)).power_state
        finally:
            if job.forced and self.host.lookup(uuid) is not None:
                Guest(self.host, self.host.lookup(uuid)).unpause()
            with self._migration_lock:
                self._migration_jobs.pop(uuid, None)
        # A guest that left is undefined here, or shut off until it is.
        if state in (power_state.RUNNING, power_state.PAUSED):
            if job.aborted:
                raise exception.MigrationAborted(instance_uuid=uuid)
            raise exception.MigrationError(
                instance_uuid=uuid, reason="its migration job ended (or never started) "
                "while the source's compute agent was down%s; the guest runs there"
                % self._last_job_outcome(uuid))
        LOG.info("live migration of %s left this host while its agent was down", uuid)

    def _last_job_outcome(self, uuid: str) -> str:
        """What libvirt kept of the domain's last job, for the reason: its
        error message, or how it ended ("" when it kept nothing)."""
        domain = self.host.lookup(uuid)
        try:
            stats = self.host.call(domain.jobStats, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) \
                if domain is not None else {}
        except (libvirt.libvirtError, exception.HypervisorUnavailable):
            return ""
        ended = {libvirt.VIR_DOMAIN_JOB_FAILED: "failed",
                 libvirt.VIR_DOMAIN_JOB_CANCELLED: "cancelled",
                 libvirt.VIR_DOMAIN_JOB_COMPLETED: "completed"}.get(stats.get("type"))
        said = stats.get("errmsg") or ended
        return " (libvirt: %s)" % said if said else ""

    def _watch(self, guest: Guest, uuid: str, job: _Job, handle,
               data_gib: float = 1.0) -> None:
        """While the job runs: raise its downtime limit step by step
        (:func:`downtime_steps`; libvirt takes one only for a running job),
        and abort it past the completion timeout."""
        opts = self.conf.libvirt
        started = time.monotonic()
        steps = downtime_steps(opts, data_gib)
        limit = None
        while not handle.done():
            elapsed = time.monotonic() - started
            wanted = [ms for after, ms in steps if after <= elapsed][-1]
            if wanted != limit and self._job_operation(guest.domain) == _OPERATION_OUT:
                try:
                    self.host.call(guest.domain.migrateSetMaxDowntime, wanted, 0)
                    LOG.debug("downtime limit of %s: %d ms", uuid, wanted)
                    limit = wanted
                except libvirt.libvirtError as exc:
                    LOG.debug("downtime of %s not set yet: %s", uuid, exc)
            if job.forced:
                self._keep_uncapped(guest, uuid)
            timeout = opts.live_migration_completion_timeout
            if timeout and time.monotonic() - started > timeout and not job.aborted:
                LOG.warning("live migration of %s ran over %ss: aborted", uuid, timeout)
                self._abort(guest, uuid, job)
            concurrency.sleep(_POLL)

    def _keep_uncapped(self, guest: Guest, uuid: str) -> None:
        """A forced job goes at full speed. libvirt sets the job's own
        bandwidth cap again when the memory copy starts after the local
        disks' copy, undoing a force-complete that came during the disks':
        lift it again."""
        try:
            if self.host.call(guest.domain.migrateGetMaxSpeed, 0) < _UNLIMITED_MIB:
                self.host.call(guest.domain.migrateSetMaxSpeed, _UNLIMITED_MIB, 0)
                LOG.info("live migration of %s: bandwidth cap lifted again (forced)", uuid)
        except libvirt.libvirtError as exc:
            LOG.debug("bandwidth of %s not lifted yet: %s", uuid, exc)

    def _abort(self, guest: Guest, uuid: str, job: _Job) -> None:
        job.aborted = True
        try:
            self.host.call(guest.domain.abortJob)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                raise
            raise exception.NoMigrationInProgress(instance_uuid=uuid) from exc

    def live_migration_progress(self, instance) -> MigrationProgress | None:
        self._require_live()
        instance = Instance.coerce(instance)
        domain = self.host.lookup(instance.uuid)
        if domain is None:
            return None
        try:
            stats = self.host.call(domain.jobStats, 0)
        except libvirt.libvirtError:
            return None
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE \
                or stats.get("operation", _OPERATION_OUT) != _OPERATION_OUT:
            return None
        progress = progress_from_stats(stats)
        if not progress.memory_total_bytes:
            # While the disks are copied QEMU reports no memory yet: all of
            # the guest's memory is still to go.
            total = self.host.call(domain.maxMemory) * 1024
            progress = dataclasses.replace(progress, memory_total_bytes=total,
                                           memory_remaining_bytes=total)
        return progress

    def live_migration_abort(self, instance) -> None:
        self._require_live()
        uuid = Instance.coerce(instance).uuid
        job = self._job_of(uuid)
        self._abort(self._guest(instance), uuid, job)

    def live_migration_force_complete(self, instance) -> None:
        self._require_live()
        uuid = Instance.coerce(instance).uuid
        job = self._job_of(uuid)
        guest = self._guest(instance)
        # Either way the rest goes at full speed.
        self.host.call(guest.domain.migrateSetMaxSpeed, _UNLIMITED_MIB, 0)
        if self.conf.libvirt.live_migration_permit_post_copy:
            # The guest switches over now and pulls what is left.
            self.host.call(guest.domain.migrateStartPostCopy, 0)
            LOG.info("live migration of %s switched to post-copy", uuid)
            return
        if guest.power_state() == power_state.RUNNING:
            job.forced = True
            guest.pause()
        # A paused guest dirties nothing: what is left is copied at once.

    def post_live_migration(self, instance, migrate_data) -> None:
        self._require_live()
        instance = Instance.coerce(instance)
        domain = self.host.lookup(instance.uuid)
        if domain is not None:
            guest = Guest(self.host, domain)
            if guest.power_state() not in (power_state.SHUTDOWN, power_state.CRASHED,
                                           power_state.NOSTATE):
                raise exception.Conflict(reason="instance %s still runs on %s"
                                         % (instance.uuid, self.host_name))
            guest.undefine()
        shutil.rmtree(self.instance_dir(instance), ignore_errors=True)
        LOG.info("removed what was left of %s after its live migration", instance.uuid)

    # --- after a crash --------------------------------------------------------------

    def find_guest(self, instance) -> GuestPresence:
        domain = self.host.lookup(Instance.coerce(instance).uuid)
        if domain is None:
            return GuestPresence(defined=False)
        try:
            state = Guest(self.host, domain).power_state()
        except libvirt.libvirtError:
            return GuestPresence(defined=False)     # went away meanwhile
        return GuestPresence(True, state, self._moving(domain, state))

    def _moving(self, domain, state: int) -> str:
        """INCOMING, OUTGOING or "" for a domain of this host."""
        operation = self._job_operation(domain)
        if operation == _OPERATION_OUT:
            return OUTGOING
        if operation == _OPERATION_IN:
            return INCOMING
        # An incoming domain has no job of its own on some libvirt versions;
        # it is the transient, paused one (PERSIST_DEST defines it at the end,
        # and the source's domain is always persistent).
        if state == power_state.PAUSED and not self.host.call(domain.isPersistent):
            return INCOMING
        return ""


def progress_from_stats(stats: dict) -> MigrationProgress:
    """libvirt's job statistics (virDomainGetJobStats) as MigrationProgress."""
    def get(key: str) -> int:
        return int(stats.get(key, 0) or 0)
    return MigrationProgress(
        memory_total_bytes=get("memory_total"), memory_processed_bytes=get("memory_processed"),
        memory_remaining_bytes=get("memory_remaining"), disk_total_bytes=get("disk_total"),
        disk_processed_bytes=get("disk_processed"), disk_remaining_bytes=get("disk_remaining"),
        elapsed_ms=get("time_elapsed"), downtime_ms=get("downtime"))

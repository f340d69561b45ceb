"""The libvirt implementation of :class:`compute.virt.driver.ComputeDriver`.

Composition: :class:`Host` (connection, events), :class:`DomainRenderer`
(XML from templates), :class:`Guest` (one domain's primitives),
:class:`ImageCache` (bases and overlays), :class:`LibvirtSnapshotter`
(snapshots, in snapshot.py). This module holds the policies: all-or-nothing
spawn, idempotent destroy, soft reboot and power off with their fallbacks,
a rebuild that fetches the new disk before it touches the guest.

Instance files: ``<instances_path>/<uuid>/disk`` (qcow2 overlay) and
``console.log`` (the serial port); a rebuild's new disk is prepared as
``disk.rebuild`` and a snapshot's copy as ``snapshot-*.qcow2`` beside it.
With ``test:///default`` (libvirt's test driver, no real disks) no files
are created and what needs them raises NotSupported (snapshots); a rebuild
there redefines and restarts the guest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import libvirt
from oslo_config import cfg

from compute.virt import block_device, driver, power_state
from compute.virt.libvirt import xml
from compute.virt.libvirt.guest import Guest
from compute.virt.libvirt.host import Host
from compute.virt.libvirt.imagecache import ImageCache
from compute.virt.libvirt.migration import LibvirtMigrationMixin
from compute.virt.libvirt.resize import KEPT_SUFFIX, LibvirtResizeMixin
from compute.virt.libvirt.snapshot import LibvirtSnapshotter
from compute.virt.libvirt.volume_extend import LibvirtVolumeExtendMixin
from compute.virt.libvirt.volumes import LibvirtVolumes
from flotilla import concurrency, exception
from flotilla.conf import CONF
from flotilla.objects import ImageMeta, Instance

LOG = logging.getLogger(__name__)

DISK_NAME = "disk"
REBUILD_DISK_NAME = "disk.rebuild"
SWAP_NAME = "disk.swap"
CONSOLE_LOG = "console.log"

QEMU_CAPABILITIES = driver.DriverCapabilities(
    supports_console_log=True, supports_diagnostics=True,
    supports_image_cache=True, supports_snapshots=True, supports_attach=True,
    supports_live_migration=True, supports_cold_migration=True,
    supports_extend_volume=True, supports_volume_io_error_resume=True)
TEST_CAPABILITIES = driver.DriverCapabilities(
    supports_console_log=False, supports_diagnostics=True,
    supports_image_cache=False)


def _is_uuid(name: str) -> bool:
    """An instance directory's name: a UUID in its canonical form."""
    try:
        return str(uuidlib.UUID(name)) == name.lower()
    except ValueError:
        return False


class LibvirtDriver(LibvirtResizeMixin, LibvirtMigrationMixin, LibvirtVolumeExtendMixin,
                    driver.ComputeDriver):
    """Guests of one host through libvirt."""

    def __init__(self, conf: cfg.ConfigOpts = CONF, connection_uri: str | None = None,
                 instances_path: str | None = None) -> None:
        """``connection_uri`` and ``instances_path`` override the [libvirt]
        options (flotilla-all runs several agents in one process)."""
        self.conf = conf
        opts = conf.libvirt
        connection_uri = connection_uri or opts.connection_uri
        instances_path = instances_path or opts.instances_path
        self.host = Host(connection_uri,
                         keepalive_interval=opts.keepalive_interval,
                         keepalive_count=opts.keepalive_count,
                         reconnect_max_delay=opts.reconnect_max_delay,
                         reconnect_timeout=opts.reconnect_timeout)
        self.real_disks = not self.host.is_test_driver
        self.capabilities = (QEMU_CAPABILITIES if self.real_disks
                             else TEST_CAPABILITIES)
        self.instances_path = instances_path
        self.renderer = xml.DomainRenderer(opts.template_dir)
        self.image_cache = ImageCache(instances_path,
                                      opts.image_cache_max_age,
                                      opts.image_download_timeout)
        self.snapshotter = LibvirtSnapshotter(self.host, self.renderer, self.instance_dir,
                                              opts.snapshot_copy_bandwidth)
        self.volumes = LibvirtVolumes(self.host, self.renderer)
        self.host_name = ""
        self._init_migration()

    # --- host ----------------------------------------------------------------

    def init_host(self, host: str) -> None:
        self.host_name = host
        if self.real_disks:
            os.makedirs(self.instances_path, exist_ok=True)
        self.host.start()

    def cleanup_host(self) -> None:
        self.host.close()

    def register_event_listener(self, callback) -> None:
        self.host.events.set_listener(callback)

    # --- helpers -------------------------------------------------------------

    def _not_supported(self, operation: str):
        raise exception.NotSupported(operation=operation, what=self.host.uri)

    def instance_dir(self, instance: Instance) -> str:
        return os.path.join(self.instances_path, instance.uuid)

    def _guest(self, instance: Instance | dict) -> Guest:
        instance = Instance.coerce(instance)
        domain = self.host.lookup(instance.uuid)
        if domain is None:
            raise exception.InstanceNotFound(instance_uuid=instance.uuid)
        return Guest(self.host, domain)

    def _domain_spec(self, instance: Instance,
                     block_device_info: list | None = None) -> xml.DomainSpec:
        """The guest's disks: the local root overlay (vda) or, booting from
        a volume, that volume's NBD disk as vda; swap; then the volumes it
        starts with (block_device.spawn_volumes)."""
        opts = self.conf.libvirt
        network = None
        if instance.flavor.wants_network():
            source = {"network": opts.network_name,
                      "bridge": opts.bridge_name}.get(opts.network_type, "")
            network = xml.NetworkSpec(opts.network_type, source)
        directory = self.instance_dir(instance)
        disks = [] if block_device.boots_from_volume(block_device_info) else [
            xml.DiskSpec(role=xml.ROOT, device=block_device.ROOT_DEVICE,
                         path=os.path.join(directory, DISK_NAME))]
        if instance.flavor.swap:
            # The flavor's swap: a blank raw disk the guest formats as swap.
            disks.append(xml.DiskSpec(
                role=xml.SWAP, format="raw",
                device=block_device.next_device_name(
                    [block_device.ROOT_DEVICE, *(d.device for d in disks)]),
                path=os.path.join(directory, SWAP_NAME)))
        taken = [block_device.ROOT_DEVICE, *(d.device for d in disks)]
        disks.extend(xml.DiskSpec.for_volume(connection, device) for device, connection
                     in block_device.spawn_volumes(block_device_info, taken))
        return xml.DomainSpec(
            virt_type=opts.virt_type,
            machine_type=opts.machine_type,
            disks=tuple(disks),
            console_log=(os.path.join(directory, CONSOLE_LOG)
                         if self.real_disks else None),
            network=network)

    # --- volumes (compute/virt/libvirt/volumes.py) -----------------------------

    def attach_volume(self, instance, connection, device_name=None) -> str:
        if not self.capabilities.supports_attach:
            self._not_supported("volume attach")
        instance = Instance.coerce(instance)
        return self.volumes.attach(self._guest(instance), instance.uuid,
                                   block_device.VolumeConnection.coerce(connection),
                                   device_name)

    def detach_volume(self, instance, volume_id: str) -> bool:
        if not self.capabilities.supports_attach:
            self._not_supported("volume detach")
        instance = Instance.coerce(instance)
        return self.volumes.detach(self._guest(instance), instance.uuid, volume_id,
                                   self.host.events.emit, self.host.events.expect_removal)

    def get_volume_devices(self, instance) -> dict[str, str]:
        if not self.capabilities.supports_attach:
            self._not_supported("volume listing")
        return self.volumes.devices(self._guest(instance))

    def get_disk_devices(self, instance) -> set[str]:
        if not self.capabilities.supports_attach:
            self._not_supported("volume listing")
        return self.volumes.disk_targets(self._guest(instance))

    # --- spawn and destroy ---------------------------------------------------

    def spawn(self, instance, image_meta, network_info=None,
              block_device_info=None) -> None:
        instance = Instance.coerce(instance)
        image = ImageMeta.coerce(image_meta)
        from_volume = block_device.boots_from_volume(block_device_info)
        undo: list[Callable[[], Any]] = []
        try:
            if self.host.lookup(instance.uuid) is not None:
                raise exception.InstanceDeployFailure(
                    instance_uuid=instance.uuid,
                    reason="a domain with this uuid exists already")
            spec = self._domain_spec(instance, block_device_info)
            if self.real_disks:
                if image is None and not from_volume:
                    raise exception.InstanceDeployFailure(
                        instance_uuid=instance.uuid, reason="no image given")
                directory = self.instance_dir(instance)
                os.makedirs(directory)
                undo.append(lambda: shutil.rmtree(directory,
                                                  ignore_errors=True))
                if not from_volume:   # else the boot disk is the NBD volume
                    self.image_cache.prepare_disk(image, spec.root_disk.path,
                                                  instance.flavor.root_gb)
                for disk in spec.disks:
                    if disk.role == xml.SWAP:
                        with open(disk.path, "wb") as blank:   # sparse
                            blank.truncate(instance.flavor.swap * 1024 * 1024)
            document = self.renderer.render(instance, spec)
            domain = self.host.with_connection(
                lambda conn: conn.defineXML(document), retry=False)
            guest = Guest(self.host, domain)
            undo.append(guest.undefine)
            undo.append(guest.destroy)  # runs before undefine
            guest.start()
        except Exception as exc:
            for step in reversed(undo):
                try:
                    step()
                except Exception:
                    LOG.exception("spawn of %s: undo step failed",
                                  instance.uuid)
            if isinstance(exc, exception.FlotillaException):
                raise
            reason = (exc.get_error_message()
                      if isinstance(exc, libvirt.libvirtError) else str(exc))
            raise exception.InstanceDeployFailure(
                instance_uuid=instance.uuid, reason=reason) from exc
        LOG.info("spawned %s", instance.uuid)

    def destroy(self, instance) -> None:
        self._destroy_guest(instance)
        if self.real_disks:
            # A server deleted during a same-host resize: the original kept
            # for a revert goes with it.
            shutil.rmtree(self.instance_dir(Instance.coerce(instance)) + KEPT_SUFFIX,
                          ignore_errors=True)

    def _destroy_guest(self, instance) -> None:
        """The guest and its directory (not an original kept for a revert)."""
        instance = Instance.coerce(instance)
        domain = self.host.lookup(instance.uuid)
        if domain is not None:
            guest = Guest(self.host, domain)
            guest.destroy()
            guest.undefine()
        if self.real_disks:
            shutil.rmtree(self.instance_dir(instance), ignore_errors=True)

    def rebuild(self, instance, image_meta, power_on: bool = True,
                block_device_info=None) -> None:
        """See ComputeDriver.rebuild. The new disk is made first (fetching
        the image), so a failure there leaves the guest as it was; then the
        guest is stopped, its disk replaced (rename), its definition
        rewritten (the image in its metadata, the volume disks of
        ``block_device_info``) and, with ``power_on``, started. The console log is kept: the new boot appends to it."""
        instance = Instance.coerce(instance)
        image = ImageMeta.coerce(image_meta)
        domain = self.host.lookup(instance.uuid)
        if domain is None:
            # A server in ERROR whose guest vanished, or an evacuated one:
            # build it anew (with its volumes).
            self.spawn(instance, image, block_device_info=block_device_info)
            if not power_on:
                self.power_off(instance, timeout=0)
            return
        guest = Guest(self.host, domain)
        if image is not None:
            instance = dataclasses.replace(instance, image_ref=image.id)
        # The new definition keeps the volumes attached now; a server booted
        # from a volume has its root volume re-imaged already (the rebuild
        # flow did it with the guest off): no local disk to make or replace.
        from_volume = block_device.boots_from_volume(block_device_info)
        spec = self._domain_spec(instance, block_device_info)
        new_disk = os.path.join(self.instance_dir(instance), REBUILD_DISK_NAME)
        try:
            if self.real_disks and not from_volume:
                if image is None:
                    raise exception.InstanceDeployFailure(
                        instance_uuid=instance.uuid, reason="no image given")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(new_disk)     # left by a rebuild that crashed
                self.image_cache.prepare_disk(image, new_disk, instance.flavor.root_gb)
            document = self.renderer.render(instance, spec)
        except Exception as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(new_disk)
            if isinstance(exc, exception.FlotillaException):
                raise
            raise exception.InstanceDeployFailure(instance_uuid=instance.uuid,
                                                  reason=str(exc)) from exc
        # From here on the old disk is gone for good.
        try:
            guest.destroy()
            if guest.has_managed_save():
                # Memory saved against the old disk must never resume.
                self.host.call(guest.domain.managedSaveRemove, 0)
            if self.real_disks and not from_volume:
                os.replace(new_disk, spec.root_disk.path)
            domain = self.host.with_connection(lambda conn: conn.defineXML(document),
                                               retry=False)
            guest = Guest(self.host, domain)
            if power_on:
                guest.start()
        except libvirt.libvirtError as exc:
            raise exception.InstanceDeployFailure(
                instance_uuid=instance.uuid, reason=exc.get_error_message()) from exc
        LOG.info("rebuilt %s from image %s", instance.uuid, image.id if image else None)

    # --- snapshot ------------------------------------------------------------

    def snapshot(self, instance, target_path: str, base_image=None,
                 on_copied=None) -> driver.SnapshotFile:
        if not self.capabilities.supports_snapshots:
            self._not_supported("snapshot")
        instance = Instance.coerce(instance)
        return self.snapshotter.snapshot(self._guest(instance), instance, target_path,
                                         ImageMeta.coerce(base_image), on_copied)

    def recover_snapshot(self, instance) -> None:
        if not self.capabilities.supports_snapshots:
            self._not_supported("snapshot recovery")
        instance = Instance.coerce(instance)
        domain = self.host.lookup(instance.uuid)
        done = self.snapshotter.recover(
            Guest(self.host, domain) if domain is not None else None, instance)
        if done:
            LOG.warning("recovered the interrupted snapshot of %s: %s", instance.uuid,
                        "; ".join(done))

    # --- power ---------------------------------------------------------------

    def reboot(self, instance, reboot_type: str = driver.SOFT) -> None:
        if reboot_type not in driver.REBOOT_TYPES:
            raise exception.Invalid(reason="reboot type must be SOFT or HARD")
        guest = self._guest(instance)
        state = guest.power_state()
        if state != power_state.RUNNING:
            guest.start()
            return
        if reboot_type == driver.SOFT:
            if self._shutdown_gracefully(guest,
                                         self.conf.compute.reboot_timeout,
                                         self.conf.compute.shutdown_retry_interval):
                guest.start()
                return
            LOG.warning("%s did not shut down within %ss; hard reboot",
                        guest.uuid, self.conf.compute.reboot_timeout)
        # HARD: destroy and create again, which also re-reads the definition.
        guest.destroy()
        guest.start()

    def power_off(self, instance, timeout: int | None = None,
                  retry_interval: int | None = None) -> bool:
        """See ComputeDriver.power_off. Returns True when the guest shut
        down by itself, False when it had to be destroyed (or was off)."""
        guest = self._guest(instance)
        if timeout is None:
            timeout = self.conf.compute.shutdown_timeout
        if retry_interval is None:
            retry_interval = self.conf.compute.shutdown_retry_interval
        if not guest.is_active():
            return False
        if timeout > 0 and self._shutdown_gracefully(guest, timeout,
                                                     retry_interval):
            return True
        guest.destroy()
        return False

    @staticmethod
    def _shutdown_gracefully(guest: Guest, timeout: float,
                             retry_interval: float) -> bool:
        """ACPI shutdown, repeated every retry_interval (a booting guest
        drops early requests), until the guest is off or timeout passed."""
        deadline = time.monotonic() + timeout
        while True:
            guest.shutdown()
            wait = min(retry_interval, deadline - time.monotonic())
            if guest.wait_for(lambda s: s != power_state.RUNNING, wait):
                return not guest.is_active()
            if time.monotonic() >= deadline:
                return False

    def power_on(self, instance) -> None:
        guest = self._guest(instance)
        if guest.power_state() == power_state.PAUSED:
            return  # running, if frozen: unpause is the caller's choice
        guest.start()

    def pause(self, instance) -> None:
        self._guest(instance).pause()

    def unpause(self, instance) -> None:
        self._guest(instance).unpause()

    def suspend(self, instance) -> None:
        guest = self._guest(instance)
        if guest.power_state() == power_state.SUSPENDED:
            return
        if not guest.is_active():
            raise exception.Conflict(reason="instance %s is not running"
                                     % guest.uuid)
        guest.managed_save()

    def resume(self, instance) -> None:
        self._guest(instance).start()  # create() restores the managed save

    # --- inspection ----------------------------------------------------------

    def get_info(self, instance) -> driver.InstanceInfo:
        return self._guest(instance).info()

    def list_instance_files(self) -> list[str]:
        if not self.real_disks:
            return []
        try:
            names = os.listdir(self.instances_path)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if _is_uuid(name)
                      and os.path.isdir(os.path.join(self.instances_path, name)))

    def list_instances(self) -> list[str]:
        def ours(conn):
            result = []
            for domain in conn.listAllDomains():
                try:
                    domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                    xml.NAMESPACE)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() in (
                            libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                            libvirt.VIR_ERR_NO_DOMAIN):
                        continue
                    raise
                result.append(domain.UUIDString())
            return result
        return self.host.with_connection(ours)

    def get_console_output(self, instance) -> str:
        instance = Instance.coerce(instance)
        if not self.capabilities.supports_console_log:
            self._not_supported("console output")
        self._guest(instance)  # InstanceNotFound before looking at files
        path = os.path.join(self.instance_dir(instance), CONSOLE_LOG)
        limit = self.conf.libvirt.console_log_max_bytes

        def tail() -> bytes:
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - limit))
                    return f.read(limit)
            except FileNotFoundError:
                return b""
        return concurrency.run_blocking(tail).decode("utf-8", "replace")

    def get_diagnostics(self, instance) -> dict[str, Any]:
        guest = self._guest(instance)
        info = guest.info()
        disks, nics = guest.devices()
        result: dict[str, Any] = {
            "state": power_state.name(info.power_state),
            "cpu_time_ns": info.cpu_time_ns, "memory_kb": info.memory_kb,
            "vcpus": info.vcpus, "disks": {}, "interfaces": {}, "memory": {}}
        if info.power_state != power_state.RUNNING:
            return result  # counters exist only for a running domain
        for dev in disks:
            with contextlib.suppress(libvirt.libvirtError):
                result["disks"][dev] = guest.block_stats(dev)
        for dev in nics:
            with contextlib.suppress(libvirt.libvirtError):
                result["interfaces"][dev] = guest.interface_stats(dev)
        with contextlib.suppress(libvirt.libvirtError):
            result["memory"] = guest.memory_stats()
        return result

    def get_available_resource(self) -> dict[str, Any]:
        def collect(conn):
            model, memory_mb, cpus = conn.getInfo()[:3]
            used_vcpus = used_mb = 0
            for domain in conn.listAllDomains(
                    libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                _s, _max, mem_kb, vcpus, _t = domain.info()
                used_vcpus += vcpus
                used_mb += mem_kb // 1024
            return {"vcpus": cpus, "memory_mb": memory_mb,
                    "vcpus_used": used_vcpus, "memory_mb_used": used_mb,
                    "hypervisor_type": conn.getType(),
                    "hypervisor_version": conn.getVersion(),
                    "hypervisor_hostname": conn.getHostname(),
                    "cpu_arch": model}
        result = self.host.with_connection(collect)
        path = self.instances_path if os.path.isdir(self.instances_path) else "/"
        stat = os.statvfs(path)
        gib = 1024 ** 3
        total = stat.f_blocks * stat.f_frsize // gib
        result["disk_gb"] = total
        result["disk_gb_used"] = total - stat.f_bavail * stat.f_frsize // gib
        return result

    def manage_image_cache(self) -> list[str]:
        if not self.real_disks:
            return []
        return self.image_cache.cleanup()

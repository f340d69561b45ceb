"""Cold migration and resize in the libvirt driver (the contract:
compute/virt/driver.py, "cold migration and resize").

No filesystem is shared between hosts; the disk moves through libvirt:

* the destination's check names its own instance directory (in
  ``dest_config``, a JSON object opaque to everyone but this module) and
  the URI its libvirtd is reached on (``dest_uri``);
* the source powers the guest off (keeping it defined, with its disks and
  a marker file saying it is kept for a revert), connects to the
  destination's libvirtd, starts a transient ``dir`` storage pool over the
  destination's instance directory (built if missing), creates the volume
  ``disk`` there and streams its root overlay into it
  (``virStorageVolUpload``); the pool is then stopped (the file stays);
* the destination (finish_migration) points the copied overlay at the same
  base image in its own cache (fetched if needed; ``qemu-img rebase -u``,
  the bases being the same image), grows it to the new flavor's root disk,
  renders its own domain XML for the new flavor, defines and starts it;
* confirm removes the source's kept guest and directory; a revert destroys
  the destination's copy (cleanup_migration_at_destination) and starts the
  source's kept guest again, unchanged (its definition still has the old
  flavor).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil

import libvirt
from lxml import etree

from compute.virt import power_state
from compute.virt.libvirt import imagecache, xml
from compute.virt.libvirt.guest import Guest
from compute.virt.migration import MigrateData
from flotilla import concurrency, exception
from flotilla.objects import ImageMeta, Instance

LOG = logging.getLogger(__name__)

KEPT_MARKER = "kept-for-revert"
_CHUNK = 4 * 1024 * 1024


def _pool_name(uuid: str) -> str:
    return "flotilla-incoming-%s" % uuid


def _pool_xml(name: str, path: str) -> str:
    pool = etree.Element("pool", type="dir")
    etree.SubElement(pool, "name").text = name
    target = etree.SubElement(pool, "target")
    etree.SubElement(target, "path").text = path
    return etree.tostring(pool, encoding="unicode")


def _volume_xml(name: str, size: int) -> str:
    volume = etree.Element("volume")
    etree.SubElement(volume, "name").text = name
    etree.SubElement(volume, "capacity", unit="bytes").text = str(size)
    target = etree.SubElement(volume, "target")
    etree.SubElement(target, "format", type="raw")
    return etree.tostring(volume, encoding="unicode")


def upload_file(dest_uri: str, directory: str, name: str, path: str, uuid: str) -> int:
    """Stream the local file ``path`` into ``directory/name`` on the
    libvirtd at ``dest_uri`` (a transient dir pool over ``directory``);
    the bytes sent."""
    size = os.path.getsize(path)
    conn = libvirt.open(dest_uri)
    try:
        pool_name = _pool_name(uuid)
        with contextlib.suppress(libvirt.libvirtError):
            conn.storagePoolLookupByName(pool_name).destroy()   # a retry's leftover
        pool = conn.storagePoolCreateXML(_pool_xml(pool_name, directory),
                                         libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
        try:
            with contextlib.suppress(libvirt.libvirtError):
                pool.storageVolLookupByName(name).delete(0)
            volume = pool.createXML(_volume_xml(name, size), 0)
            stream = conn.newStream(0)
            volume.upload(stream, 0, size, 0)
            sent = 0
            try:
                with open(path, "rb") as source:
                    while True:
                        chunk = source.read(_CHUNK)
                        if not chunk:
                            break
                        view = memoryview(chunk)
                        while view:
                            done = stream.send(view.tobytes())
                            view = view[done:]
                        sent += len(chunk)
                stream.finish()
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                raise
            return sent
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                pool.destroy()
    finally:
        conn.close()


class LibvirtResizeMixin:
    """The cold half of LibvirtDriver (which provides ``host``, ``conf``,
    ``image_cache``, ``renderer``, ``instance_dir``, ``_domain_spec``,
    ``_guest``, ``power_off``, ``destroy``, ``host_name`` and the live
    mixin's checks, to which live requests go)."""

    def _require_cold(self) -> None:
        if not self.capabilities.supports_cold_migration:
            self._not_supported("cold migration")

    # --- checks -------------------------------------------------------------------

    def check_can_migrate_source(self, instance, live: bool) -> MigrateData:
        if live:
            return super().check_can_migrate_source(instance, live)
        self._require_cold()
        instance = Instance.coerce(instance)
        guest = self._guest(instance)
        if self._job_operation(guest.domain) is not None:
            raise exception.MigrationPreCheckError(instance_uuid=instance.uuid,
                                                   reason="a job runs on it already")
        if os.path.exists(os.path.join(self.instance_dir(instance), KEPT_MARKER)):
            raise exception.MigrationPreCheckError(
                instance_uuid=instance.uuid, reason="a copy of it is kept for a revert")
        disks = tuple(d.device for d in self._domain_spec(instance).disks
                      if d.role == xml.ROOT)
        return MigrateData(live=False, source_host=self.host_name, local_disks=disks)

    def check_can_migrate_destination(self, instance, migrate_data) -> MigrateData:
        data = MigrateData.coerce(migrate_data)
        if data.live:
            return super().check_can_migrate_destination(instance, data)
        self._require_cold()
        instance = Instance.coerce(instance)

        def refuse(reason: str):
            raise exception.MigrationPreCheckError(instance_uuid=instance.uuid, reason=reason)
        if data.source_host == self.host_name:
            refuse("the destination is its source host %s" % self.host_name)
        if self.host.lookup(instance.uuid) is not None:
            refuse("host %s holds it already" % self.host_name)
        config = json.dumps({"instance_dir": self.instance_dir(instance)})
        return dataclasses.replace(data, dest_host=self.host_name,
                                   dest_uri=self._migration_uri(), dest_config=config)

    # --- source ---------------------------------------------------------------------

    def migrate_disk_and_power_off(self, instance, migrate_data, timeout=None,
                                   retry_interval=None) -> MigrateData:
        self._require_cold()
        instance = Instance.coerce(instance)
        data = MigrateData.coerce(migrate_data)
        self.power_off(instance, timeout, retry_interval)
        guest = self._guest(instance)
        if guest.has_managed_save():
            # A suspended guest's memory cannot follow its disk.
            self.host.call(guest.domain.managedSaveRemove, 0)
        directory = self.instance_dir(instance)
        with open(os.path.join(directory, KEPT_MARKER), "w") as marker:
            marker.write(data.dest_host)
        dest_dir = json.loads(data.dest_config or "{}").get("instance_dir")
        if not dest_dir or not data.dest_uri:
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="the destination named no directory")
        root = self._domain_spec(instance).root_disk.path
        try:
            sent = concurrency.run_blocking(upload_file, data.dest_uri, dest_dir,
                                            os.path.basename(root), root, instance.uuid)
        except libvirt.libvirtError as exc:
            raise exception.MigrationError(
                instance_uuid=instance.uuid,
                reason="sending its disk failed: %s" % exc.get_error_message()) from exc
        except OSError as exc:
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="reading its disk failed: %s" % exc) from exc
        LOG.info("sent the disk of %s (%d bytes) to %s", instance.uuid, sent, data.dest_host)
        return data

    def confirm_migration(self, instance, migrate_data) -> None:
        self._require_cold()
        instance = Instance.coerce(instance)
        directory = self.instance_dir(instance)
        domain = self.host.lookup(instance.uuid)
        if domain is not None:
            if not os.path.exists(os.path.join(directory, KEPT_MARKER)):
                raise exception.Conflict(reason="instance %s on %s is not a copy kept "
                                         "for a revert" % (instance.uuid, self.host_name))
            guest = Guest(self.host, domain)
            guest.destroy()
            guest.undefine()
        shutil.rmtree(directory, ignore_errors=True)
        LOG.info("removed the copy of %s kept for a revert", instance.uuid)

    def finish_revert_migration(self, instance, volumes, migrate_data,
                                power_on: bool = True) -> None:
        self._require_cold()
        instance = Instance.coerce(instance)
        guest = self._guest(instance)     # InstanceNotFound: no copy was kept
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.instance_dir(instance), KEPT_MARKER))
        if power_on and guest.power_state() in (power_state.SHUTDOWN, power_state.CRASHED,
                                                power_state.NOSTATE):
            guest.start()
        LOG.info("%s is back on its source", instance.uuid)

    # --- destination ----------------------------------------------------------------

    def finish_migration(self, instance, image_meta, volumes, migrate_data,
                         power_on: bool = True) -> None:
        self._require_cold()
        instance = Instance.coerce(instance)
        image = ImageMeta.coerce(image_meta)
        if volumes:
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="volumes are not supported by this driver")
        if self.host.lookup(instance.uuid) is not None:
            raise exception.Conflict(reason="instance %s is defined on %s already"
                                     % (instance.uuid, self.host_name))
        spec = self._domain_spec(instance)
        disk = spec.root_disk.path
        if not os.path.exists(disk):
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="no disk of it arrived here")
        try:
            if image is not None:
                base = self.image_cache.fetch(image)
                fmt = image.disk_format or imagecache.qemu_img_info(base)["format"]
                imagecache._run(["qemu-img", "rebase", "-u", "-b", base, "-F", fmt, disk])
            size = instance.flavor.root_gb * 1024 ** 3
            current = int(imagecache.qemu_img_info(disk).get("virtual-size", 0))
            if size and size < current:
                raise exception.Invalid(reason="the root disk cannot shrink from %d to "
                                        "%d bytes" % (current, size))
            if size > current:
                imagecache._run(["qemu-img", "resize", "-q", disk, str(size)])
            for extra in spec.disks:
                if extra.role == xml.SWAP:
                    with open(extra.path, "wb") as blank:
                        blank.truncate(instance.flavor.swap * 1024 * 1024)
            document = self.renderer.render(instance, spec)
            domain = self.host.with_connection(lambda conn: conn.defineXML(document),
                                               retry=False)
        except exception.FlotillaException:
            raise
        except Exception as exc:
            reason = (exc.get_error_message() if isinstance(exc, libvirt.libvirtError)
                      else str(exc))
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="defining it failed: %s" % reason) from exc
        guest = Guest(self.host, domain)
        if power_on:
            try:
                guest.start()
            except Exception as exc:
                guest.undefine()
                raise exception.MigrationError(instance_uuid=instance.uuid,
                                               reason="starting it failed: %s" % exc) from exc
        LOG.info("%s arrived with flavor %s", instance.uuid, instance.flavor.name)

    def cleanup_migration_at_destination(self, instance, migrate_data) -> None:
        instance = Instance.coerce(instance)
        with contextlib.suppress(libvirt.libvirtError, exception.FlotillaException):
            self.host.with_connection(
                lambda conn: conn.storagePoolLookupByName(_pool_name(instance.uuid)).destroy(),
                retry=False)
        self.destroy(instance)

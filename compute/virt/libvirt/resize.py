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

Volumes (NBD network disks) never move: the destination's definition names
the same exports with the same device names (the BlockDeviceMapping objects
the conductor passes); the kept guest's definition still has them, so
confirm and revert touch no export. A server booted from a volume has no
local root disk: nothing is copied, its boot volume is defined again as vda.

A resize to the same host (``MigrateData.same_host``, which only the
conductor sets, from ``[DEFAULT] allow_resize_to_same_host``): libvirt holds
one definition per uuid, so the original steps aside. Its definition is
saved in its directory, which is renamed ``<uuid>_resize`` (the kept copy),
and it is undefined; the root overlay is copied into a new instance
directory, where finish_migration defines the resized guest as on any
destination. Confirm removes ``<uuid>_resize`` only; a revert destroys the
resized guest and its directory, renames the kept one back and defines the
saved original again. Each step is safe to repeat after a crash at any
point (the rename is the switch).
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

from compute.virt import block_device, power_state
from compute.virt.libvirt import imagecache, xml
from compute.virt.libvirt.guest import Guest
from compute.virt.libvirt.volumes import volume_disks
from compute.virt.migration import MigrateData
from flotilla import concurrency, exception
from flotilla.objects import BlockDeviceMapping, ImageMeta, Instance

LOG = logging.getLogger(__name__)

KEPT_MARKER = "kept-for-revert"
KEPT_SUFFIX = "_resize"
KEPT_DEFINITION = "kept-domain.xml"
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
        directory = self.instance_dir(instance)
        if os.path.exists(os.path.join(directory, KEPT_MARKER)) \
                or os.path.exists(directory + KEPT_SUFFIX):
            raise exception.MigrationPreCheckError(
                instance_uuid=instance.uuid, reason="a copy of it is kept for a revert")
        persistent = self._persistent(guest)
        root = _local_root(persistent)
        return MigrateData(live=False, source_host=self.host_name,
                           local_disks=(block_device.ROOT_DEVICE,) if root else (),
                           volume_ids=tuple(sorted(volume_disks(persistent))))

    def _persistent(self, guest: Guest) -> etree._Element:
        return etree.fromstring(self.host.call(
            guest.domain.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE).encode())

    def _same_host(self, data: MigrateData) -> bool:
        return data.same_host and data.dest_host == self.host_name \
            and data.source_host == self.host_name

    def check_can_migrate_destination(self, instance, migrate_data) -> MigrateData:
        data = MigrateData.coerce(migrate_data)
        if data.live:
            return super().check_can_migrate_destination(instance, data)
        self._require_cold()
        instance = Instance.coerce(instance)

        def refuse(reason: str):
            raise exception.MigrationPreCheckError(instance_uuid=instance.uuid, reason=reason)
        same_host = data.source_host == self.host_name
        if same_host and not data.same_host:
            refuse("the destination is its source host %s" % self.host_name)
        if not same_host and self.host.lookup(instance.uuid) is not None:
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
        if self._same_host(data):
            self._step_aside(instance, guest)
            return data
        dest_dir = json.loads(data.dest_config or "{}").get("instance_dir")
        if not dest_dir or not data.dest_uri:
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="the destination named no directory")
        root = _local_root(self._persistent(guest))
        if root is None:
            # Booted from a volume: its root stays on the volume host.
            LOG.info("%s has no local root disk: nothing to send", instance.uuid)
            return data
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

    def _step_aside(self, instance: Instance, guest: Guest) -> None:
        """Same host: keep the original (definition saved, directory renamed,
        undefined) and give the resized guest a new directory with a copy
        of the root overlay (on the same base image)."""
        directory = self.instance_dir(instance)
        kept = directory + KEPT_SUFFIX
        persistent = self._persistent(guest)
        root = _local_root(persistent)
        with open(os.path.join(directory, KEPT_DEFINITION), "wb") as saved:
            saved.write(etree.tostring(persistent))
        try:
            os.rename(directory, kept)        # the switch: a revert renames it back
            guest.undefine()
            os.makedirs(directory)
            if root is not None:
                shutil.copyfile(os.path.join(kept, os.path.basename(root)),
                                os.path.join(directory, os.path.basename(root)))
        except (OSError, libvirt.libvirtError) as exc:
            raise exception.MigrationError(
                instance_uuid=instance.uuid, reason="keeping its original on this host "
                "failed: %s" % exc) from exc
        LOG.info("%s stepped aside on %s for its resize", instance.uuid, self.host_name)

    def _restore_kept(self, instance: Instance) -> None:
        """Same host, revert: the original back from ``<uuid>_resize``."""
        directory = self.instance_dir(instance)
        kept = directory + KEPT_SUFFIX
        if not os.path.isdir(kept):
            return          # never stepped aside, or restored already
        domain = self.host.lookup(instance.uuid)
        if domain is not None:
            # Undefined after the rename: a crash in between left it defined.
            Guest(self.host, domain).destroy()
            Guest(self.host, domain).undefine()
        shutil.rmtree(directory, ignore_errors=True)
        os.rename(kept, directory)
        with open(os.path.join(directory, KEPT_DEFINITION)) as saved:
            document = saved.read()
        self.host.with_connection(lambda conn: conn.defineXML(document), retry=False)
        os.unlink(os.path.join(directory, KEPT_DEFINITION))

    def confirm_migration(self, instance, migrate_data) -> None:
        self._require_cold()
        instance = Instance.coerce(instance)
        directory = self.instance_dir(instance)
        if self._same_host(MigrateData.coerce(migrate_data)):
            # The guest defined here is the resized one: only the kept goes.
            shutil.rmtree(directory + KEPT_SUFFIX, ignore_errors=True)
            LOG.info("removed the original of %s kept for a revert", instance.uuid)
            return
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
        if self._same_host(MigrateData.coerce(migrate_data)):
            self._restore_kept(instance)
        guest = self._guest(instance)     # InstanceNotFound: no copy was kept
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.instance_dir(instance), KEPT_MARKER))
        self._plug_kept_volumes(guest, instance, volumes)
        if power_on and guest.power_state() in (power_state.SHUTDOWN, power_state.CRASHED,
                                                power_state.NOSTATE):
            guest.start()
        LOG.info("%s is back on its source", instance.uuid)

    def _plug_kept_volumes(self, guest: Guest, instance: Instance, volumes) -> None:
        """The kept definition has its volume disks already; one missing
        (none can be attached during a resize, so only a definition edited
        meanwhile) is put back, persistent, with its recorded device."""
        present = volume_disks(self._persistent(guest))
        for bdm in volumes or ():
            bdm = BlockDeviceMapping.coerce(bdm)
            if not bdm.connection_info or bdm.volume_id in present:
                continue
            self.volumes.attach(guest, instance.uuid,
                                block_device.VolumeConnection.coerce(bdm.connection_info),
                                bdm.device_name)

    # --- destination ----------------------------------------------------------------

    def finish_migration(self, instance, image_meta, volumes, migrate_data,
                         power_on: bool = True) -> None:
        self._require_cold()
        instance = Instance.coerce(instance)
        image = ImageMeta.coerce(image_meta)
        volumes = [BlockDeviceMapping.coerce(v) for v in volumes or ()]
        if self.host.lookup(instance.uuid) is not None:
            raise exception.Conflict(reason="instance %s is defined on %s already"
                                     % (instance.uuid, self.host_name))
        # Its volumes keep their NBD exports and device names.
        spec = self._domain_spec(instance, volumes)
        if spec.root_disk is None:
            # Booted from a volume: nothing arrived but its directory is
            # needed (console log, swap).
            os.makedirs(self.instance_dir(instance), exist_ok=True)
        elif not os.path.exists(spec.root_disk.path):
            raise exception.MigrationError(instance_uuid=instance.uuid,
                                           reason="no disk of it arrived here")
        try:
            if spec.root_disk is not None:
                self._prepare_arrived_disk(instance, image, spec.root_disk.path)
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

    def _prepare_arrived_disk(self, instance: Instance, image: ImageMeta | None,
                              disk: str) -> None:
        """The copied overlay on this host's base image, grown to the flavor."""
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

    def cleanup_migration_at_destination(self, instance, migrate_data) -> None:
        instance = Instance.coerce(instance)
        if self._same_host(MigrateData.coerce(migrate_data)):
            if not os.path.isdir(self.instance_dir(instance) + KEPT_SUFFIX):
                return      # the guest here is still the original: not ours to remove
            self._destroy_guest(instance)   # the resized one; the kept directory stays
            return
        with contextlib.suppress(libvirt.libvirtError, exception.FlotillaException):
            self.host.with_connection(
                lambda conn: conn.storagePoolLookupByName(_pool_name(instance.uuid)).destroy(),
                retry=False)
        self.destroy(instance)


def _local_root(document: etree._Element) -> str | None:
    """The file path of a domain's root disk (vda), None when its root is
    a network disk (a volume) or it has none."""
    for disk in document.findall("devices/disk"):
        target = disk.find("target")
        if target is None or target.get("dev") != block_device.ROOT_DEVICE:
            continue
        source = disk.find("source")
        if disk.get("type") == "file" and source is not None:
            return source.get("file")
        return None
    return None

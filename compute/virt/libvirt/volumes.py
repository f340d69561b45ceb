"""Volumes on a libvirt guest: NBD network disks attached and detached.

A volume's disk carries the alias ``ua-<volume id>`` (libvirt's
device-removed event names it) and the volume id as its serial. Attaching
changes the running guest and its persistent definition at once; a detach
removes the disk from the definition at once and asks the running guest to
let go, which libvirt reports with VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED (see
events.py). A guest that is not running lets go at once; the event is then
sent by this module, so a caller always waits for one.
"""

from __future__ import annotations

import logging

import libvirt
from lxml import etree

from compute.virt import block_device, events
from compute.virt.block_device import VolumeConnection
from compute.virt.libvirt import xml
from compute.virt.libvirt.guest import Guest
from flotilla import exception

LOG = logging.getLogger(__name__)

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def volume_disks(root: etree._Element) -> dict[str, etree._Element]:
    """``{volume_id: <disk>}`` of a domain document."""
    result = {}
    for disk in root.findall("devices/disk"):
        alias = disk.find("alias")
        volume_id = xml.volume_id_of_alias(alias.get("name", "")) \
            if alias is not None else None
        if volume_id is None and disk.get("type") == "network":
            serial = disk.find("serial")
            volume_id = serial.text if serial is not None else None
        if volume_id:
            result[volume_id] = disk
    return result


def disk_targets(*documents: etree._Element) -> set[str]:
    """The target names of every disk in ``documents``."""
    return {disk_target(d) for doc in documents for d in doc.findall("devices/disk")} - {""}


def disk_target(disk: etree._Element) -> str:
    target = disk.find("target")
    return target.get("dev", "") if target is not None else ""


class LibvirtVolumes:
    def __init__(self, host, renderer: xml.DomainRenderer) -> None:
        self.host = host
        self.renderer = renderer

    def _documents(self, guest: Guest) -> tuple[etree._Element, etree._Element]:
        """(live, persistent) definitions; the same for a guest not running."""
        persistent = etree.fromstring(self.host.call(
            guest.domain.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        live = guest.xml() if guest.is_active() else persistent
        return live, persistent

    def attach(self, guest: Guest, instance_uuid: str, connection: VolumeConnection,
               device_name: str | None = None) -> str:
        live, persistent = self._documents(guest)
        for document in (live, persistent):
            existing = volume_disks(document).get(connection.volume_id)
            if existing is not None:
                return disk_target(existing)
        in_use = disk_targets(live, persistent)
        device = (block_device.check_device_name(device_name, in_use) if device_name
                  else block_device.next_device_name(in_use))
        element = self.renderer.render_disk(xml.DiskSpec.for_volume(connection, device))
        document = etree.tostring(element, encoding="unicode")
        flags = CONFIG | (LIVE if guest.is_active() else 0)
        try:
            self.host.call(guest.domain.attachDeviceFlags, document, flags)
        except libvirt.libvirtError as exc:
            raise exception.VolumeAttachFailed(
                volume_id=connection.volume_id, instance_uuid=instance_uuid,
                reason=exc.get_error_message()) from exc
        LOG.info("volume %s attached to %s as %s", connection.volume_id,
                 instance_uuid, device)
        return device

    def detach(self, guest: Guest, instance_uuid: str, volume_id: str,
               emit, expect_removal) -> bool:
        """See ComputeDriver.detach_volume; ``emit`` sends an event to the
        driver's listener (for a guest that is not running),
        ``expect_removal`` tells the event dispatcher which device goes."""
        active = guest.is_active()
        live, persistent = self._documents(guest)
        in_live = volume_disks(live).get(volume_id) if active else None
        in_config = volume_disks(persistent).get(volume_id)
        if in_live is None and in_config is None:
            return False
        if in_config is not None:
            self.host.call(guest.domain.detachDeviceFlags,
                           etree.tostring(in_config, encoding="unicode"), CONFIG)
        if in_live is not None:
            expect_removal(instance_uuid, volume_id, disk_target(in_live))
            try:
                self.host.call(guest.domain.detachDeviceFlags,
                               etree.tostring(in_live, encoding="unicode"), LIVE)
            except libvirt.libvirtError as exc:
                # Asking again while the guest is still letting go is no error.
                if "already in the process of unplug" not in (exc.get_error_message()
                                                              or ""):
                    raise
            return True
        emit(events.DeviceRemovedEvent(instance_uuid, volume_id, disk_target(in_config)))
        return True

    def disk_targets(self, guest: Guest) -> set[str]:
        """Every disk's target name, live and persistent."""
        return disk_targets(*self._documents(guest))

    def devices(self, guest: Guest) -> dict[str, str]:
        live, _persistent = self._documents(guest)
        return {vid: disk_target(disk) for vid, disk in volume_disks(live).items()}

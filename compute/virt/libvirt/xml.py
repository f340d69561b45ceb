"""Render libvirt domain XML from the template files with lxml.

Templates (``domain.xml``, ``disk.xml`` for file-backed disks,
``nbd-disk.xml`` for volumes reached over NBD, ``interface.xml``) live in
``[libvirt] template_dir``; a disk fragment is used once per disk. Values are put in by element path as ``.text``
or attribute values, so whatever a user calls a server or writes into its
metadata stays character data: it can never add or close an element. Text
that XML cannot carry at all (control characters) is dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re

from lxml import etree

from compute.virt import block_device
from flotilla.objects import Instance

NAMESPACE = "https://flotilla.dev/xmlns/libvirt/instance/1.0"
PREFIX = "flotilla"
_NS = {PREFIX: NAMESPACE}

# Characters XML 1.0 allows; anything else (NUL, most C0 controls, lone
# surrogates) would make lxml refuse the document.
_NOT_XML_CHAR = re.compile(
    "[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_PARSER = etree.XMLParser(remove_blank_text=True, remove_comments=True,
                          resolve_entities=False, no_network=True)


def xml_text(value: object) -> str:
    """``value`` as a string XML can carry (invalid characters removed)."""
    return _NOT_XML_CHAR.sub("", str(value))


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A NIC: ``type`` is user, network or bridge; ``source`` names the
    network or bridge (unused for user)."""

    type: str = "user"
    source: str = ""


ROOT = "root"
EPHEMERAL = "ephemeral"
CONFIG_DRIVE = "config"
VOLUME = "volume"
SWAP = "swap"
DISK_ROLES = (ROOT, EPHEMERAL, SWAP, CONFIG_DRIVE, VOLUME)
DISK_FORMATS = ("qcow2", "raw")

# libvirt's pattern for a user alias, which a hot-unplug event names.
_ALIAS = re.compile(r"^ua-[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class NbdSource:
    """An NBD export: the volume service's ``export`` on ``host``:``port``;
    ``tls``: reached over TLS (libvirt's ``<source tls='yes'>``)."""

    export: str
    host: str
    port: int
    tls: bool = False


@dataclasses.dataclass(frozen=True)
class DiskSpec:
    """One disk of a guest: a file (``path``) or a network disk (``nbd``).

    ``device`` is the guest's name for it (vda, vdb, ...: see
    block_device.next_device_name); ``serial`` what the guest reads as its
    serial number (a volume's id); ``alias`` libvirt's name for the device
    (``ua-...``), which its device-removed event carries.
    """

    role: str
    device: str
    path: str | None = None
    nbd: NbdSource | None = None
    format: str = "qcow2"
    read_only: bool = False
    serial: str = ""
    alias: str = ""

    def __post_init__(self) -> None:
        if self.role not in DISK_ROLES:
            raise ValueError("disk role %r is not one of %s" % (self.role, DISK_ROLES))
        if (self.path is None) == (self.nbd is None):
            raise ValueError("disk %s needs a path or an NBD source, not both"
                             % self.device)
        if self.format not in DISK_FORMATS:
            raise ValueError("disk %s: format %r is not one of %s"
                             % (self.device, self.format, DISK_FORMATS))
        if self.nbd is not None and self.format != "raw":
            raise ValueError("disk %s: an NBD export is raw" % self.device)
        if self.alias and not _ALIAS.match(self.alias):
            raise ValueError("disk alias %r is not ua- and [A-Za-z0-9_.-]"
                             % self.alias)

    @classmethod
    def for_volume(cls, connection: block_device.VolumeConnection,
                   device: str) -> DiskSpec:
        """The network disk of an attached volume."""
        return cls(role=VOLUME, device=device,
                   nbd=NbdSource(connection.export, connection.host,
                                 connection.port, connection.tls),
                   format=connection.format, serial=connection.volume_id,
                   alias=volume_alias(connection.volume_id),
                   read_only=connection.read_only)


def volume_alias(volume_id: str) -> str:
    """The libvirt alias of a volume's disk (``ua-<volume id>``)."""
    return "ua-%s" % volume_id


def volume_id_of_alias(alias: str) -> str | None:
    """The volume id a disk alias names, None for other devices."""
    return alias[3:] if alias.startswith("ua-") and len(alias) > 3 else None


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """Host-side facts of a guest, decided by the driver (not the user).

    ``disks`` are rendered in device-name order (the root disk, vda, first:
    the BIOS boots the first disk); names must be distinct and allowed by
    block_device (at most MAX_DISKS).
    """

    virt_type: str            # qemu, kvm (or test for libvirt's test driver)
    machine_type: str
    disks: tuple[DiskSpec, ...] = ()
    console_log: str | None = None
    network: NetworkSpec | None = None

    def __post_init__(self) -> None:
        disks = tuple(sorted(self.disks, key=lambda d: (len(d.device), d.device)))
        object.__setattr__(self, "disks", disks)
        allowed = set(block_device.device_names())
        seen: set[str] = set()
        for disk in disks:
            if disk.device not in allowed:
                raise ValueError("disk device name %r is not one of vda..vdz"
                                 % disk.device)
            if disk.device in seen:
                raise ValueError("two disks are called %s" % disk.device)
            seen.add(disk.device)
        if sum(d.role == ROOT for d in disks) > 1:
            raise ValueError("a guest has one root disk")

    @property
    def root_disk(self) -> DiskSpec | None:
        return next((d for d in self.disks if d.role == ROOT), None)


class TemplateError(Exception):
    """A template file is missing or lacks an element the driver fills."""


class DomainRenderer:
    """Renders domain XML; templates are read once per renderer."""

    def __init__(self, template_dir: str) -> None:
        self.template_dir = template_dir
        self._templates: dict[str, etree._Element] = {}

    def template(self, name: str) -> etree._Element:
        """A fresh copy of the template file ``name`` (TemplateError when it
        is missing or not XML)."""
        return self._template(name)

    def _template(self, name: str) -> etree._Element:
        if name not in self._templates:
            path = os.path.join(self.template_dir, name)
            try:
                self._templates[name] = etree.parse(path, _PARSER).getroot()
            except (OSError, etree.XMLSyntaxError) as exc:
                raise TemplateError("cannot read template %s: %s"
                                    % (path, exc)) from exc
        return copy.deepcopy(self._templates[name])

    def render(self, instance: Instance, spec: DomainSpec) -> str:
        """The domain XML of ``instance`` as a string."""
        return etree.tostring(self.render_tree(instance, spec),
                              encoding="unicode", pretty_print=True)

    def render_tree(self, instance: Instance, spec: DomainSpec) -> etree._Element:
        root = self._template("domain.xml")
        flavor = instance.flavor
        root.set("type", spec.virt_type)
        _one(root, "name").text = instance.domain_name
        _one(root, "uuid").text = instance.uuid
        _one(root, "memory").text = str(flavor.memory_mb)
        _one(root, "memory").set("unit", "MiB")
        current = root.find("currentMemory")
        if current is not None:
            current.text = str(flavor.memory_mb)
            current.set("unit", "MiB")
        _one(root, "vcpu").text = str(flavor.vcpus)
        if spec.machine_type:
            _one(root, "os/type").set("machine", spec.machine_type)
        self._fill_metadata(root, instance)

        devices = _one(root, "devices")
        serial_source = root.find("devices/serial/source")
        if spec.console_log and serial_source is not None:
            serial_source.set("path", spec.console_log)
        elif serial_source is not None:
            # No log file (test driver): drop the file-backed serial port.
            devices.remove(serial_source.getparent())
        # Disks and NICs go first among the devices, in a stable order.
        position = 0
        for disk in spec.disks:
            devices.insert(position, self.render_disk(disk))
            position += 1
        if spec.network is not None:
            devices.insert(position, self._interface(spec.network))
        return root

    def _fill_metadata(self, root: etree._Element, instance: Instance) -> None:
        meta = _one(root, "metadata/%s:instance" % PREFIX)
        _one(meta, "%s:uuid" % PREFIX).text = instance.uuid
        _one(meta, "%s:display-name" % PREFIX).text = xml_text(instance.name)
        _one(meta, "%s:project" % PREFIX).text = xml_text(instance.project_id)
        user = meta.find("%s:user" % PREFIX, _NS)
        if user is not None:
            user.text = xml_text(instance.user_id)
        image = meta.find("%s:image" % PREFIX, _NS)
        if image is not None:
            image.text = xml_text(instance.image_ref)
        flavor = _one(meta, "%s:flavor" % PREFIX)
        flavor.set("name", xml_text(instance.flavor.name))
        flavor.set("memory-mb", str(instance.flavor.memory_mb))
        flavor.set("vcpus", str(instance.flavor.vcpus))
        flavor.set("root-gb", str(instance.flavor.root_gb))
        items = _one(meta, "%s:metadata" % PREFIX)
        for key, value in sorted(instance.metadata.items()):
            item = etree.SubElement(items, "{%s}item" % NAMESPACE)
            item.set("key", xml_text(key))
            item.text = xml_text(value)

    def render_disk(self, disk: DiskSpec) -> etree._Element:
        """The ``<disk>`` element of one disk (also what an attach sends)."""
        if disk.nbd is not None:
            element = self._template("nbd-disk.xml")
            source = _one(element, "source")
            source.set("name", disk.nbd.export)
            host = _one(source, "host")
            host.set("name", disk.nbd.host)
            host.set("port", str(disk.nbd.port))
            if disk.nbd.tls:
                source.set("tls", "yes")    # qemu.conf's nbd_tls_x509_cert_dir
        else:
            element = self._template("disk.xml")
            _one(element, "source").set("file", disk.path)
        _one(element, "driver").set("type", disk.format)
        _one(element, "target").set("dev", disk.device)
        for tag in ("readonly", "serial", "alias"):
            for old in element.findall(tag):
                element.remove(old)
        if disk.read_only:
            etree.SubElement(element, "readonly")
        if disk.serial:
            etree.SubElement(element, "serial").text = xml_text(disk.serial)
        if disk.alias:
            etree.SubElement(element, "alias").set("name", disk.alias)
        return element

    def _interface(self, network: NetworkSpec) -> etree._Element:
        nic = self._template("interface.xml")
        nic.set("type", network.type)
        for old in nic.findall("source"):
            nic.remove(old)
        if network.type in ("network", "bridge"):
            source = etree.Element("source")
            source.set(network.type, network.source)
            nic.insert(0, source)
        return nic


def one(node: etree._Element, path: str) -> etree._Element:
    """The element at ``path`` under ``node``; TemplateError naming it when
    the template lacks it."""
    return _one(node, path)


def _one(node: etree._Element, path: str) -> etree._Element:
    found = node.find(path, _NS)
    if found is None:
        raise TemplateError("template element <%s> has no %s"
                            % (node.tag, path))
    return found


def parse_instance_metadata(xml: str) -> dict:
    """Read back the Flotilla metadata element (as libvirt returns it from
    ``virDomainGetMetadata``): uuid, display_name, project_id, flavor name
    and the user metadata."""
    root = etree.fromstring(xml.encode(), _PARSER)

    def text(tag: str) -> str:
        node = root.find("%s:%s" % (PREFIX, tag), _NS)
        return (node.text or "") if node is not None else ""

    flavor = root.find("%s:flavor" % PREFIX, _NS)
    items = root.findall("%s:metadata/%s:item" % (PREFIX, PREFIX), _NS)
    return {
        "uuid": text("uuid"),
        "display_name": text("display-name"),
        "project_id": text("project"),
        "flavor": flavor.get("name", "") if flavor is not None else "",
        "metadata": {i.get("key", ""): i.text or "" for i in items},
    }


def _device_key(device: etree._Element, seen: dict) -> tuple:
    """What identifies a device across two definitions of one guest: a
    disk its target, an interface its MAC, a controller its type and index,
    anything else its kind and place among its kind."""
    tag = device.tag
    if tag == "disk" and device.find("target") is not None:
        return (tag, device.find("target").get("dev"))
    if tag == "interface" and device.find("mac") is not None:
        return (tag, device.find("mac").get("address"))
    if tag == "controller":
        return (tag, device.get("type"), device.get("index"))
    kind = (tag, device.get("type"), device.get("model"))
    seen[kind] = seen.get(kind, -1) + 1
    return (*kind, seen[kind])


def keep_device_addresses(dest_xml: str, source_xml: str) -> str:
    """``dest_xml`` (a destination's own rendering, without addresses) with
    the guest addresses its devices have in the running ``source_xml``: a
    live migration must keep the guest's hardware where it is, and a disk
    hot-plugged on the source has an address a fresh rendering would give
    another device (libvirt then refuses the job: "Target device PCI
    address ... does not match source")."""
    dest = etree.fromstring(dest_xml.encode(), _PARSER)
    source = etree.fromstring(source_xml.encode(), _PARSER)
    seen: dict = {}
    addresses = {}
    for device in source.find("devices") if source.find("devices") is not None else ():
        address = device.find("address")
        key = _device_key(device, seen)
        if address is not None:
            addresses[key] = address
    seen = {}
    for device in dest.find("devices") if dest.find("devices") is not None else ():
        key = _device_key(device, seen)
        if device.find("address") is None and key in addresses:
            device.append(copy.deepcopy(addresses[key]))
    return etree.tostring(dest, encoding="unicode")

"""Render libvirt domain XML from the template files with lxml.

Templates (``domain.xml``, ``disk.xml``, ``interface.xml``) live in
``[libvirt] template_dir``. Values are put in by element path as ``.text``
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


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """Host-side facts of a guest, decided by the driver (not the user)."""

    virt_type: str            # qemu, kvm (or test for libvirt's test driver)
    machine_type: str
    disk_path: str | None     # None: no root disk
    disk_format: str = "qcow2"
    console_log: str | None = None
    network: NetworkSpec | None = None


class TemplateError(Exception):
    """A template file is missing or lacks an element the driver fills."""


class DomainRenderer:
    """Renders domain XML; templates are read once per renderer."""

    def __init__(self, template_dir: str) -> None:
        self.template_dir = template_dir
        self._templates: dict[str, etree._Element] = {}

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
        if spec.disk_path:
            devices.insert(position, self._disk(spec))
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

    def _disk(self, spec: DomainSpec) -> etree._Element:
        disk = self._template("disk.xml")
        _one(disk, "driver").set("type", spec.disk_format)
        _one(disk, "source").set("file", spec.disk_path)
        return disk

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

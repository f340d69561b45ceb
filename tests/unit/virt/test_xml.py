"""Domain XML rendering: valid against libvirt's schema, injection-proof."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from lxml import etree

from compute.virt import block_device
from compute.virt.libvirt import xml
from flotilla import exception
from flotilla.conf import libvirt as libvirt_conf
from tests.unit.virt.conftest import make_instance

TEMPLATES = libvirt_conf._PACKAGED_TEMPLATES


ROOT = xml.DiskSpec(role=xml.ROOT, device="vda", path="/srv/instances/x/disk")


def spec(**overrides) -> xml.DomainSpec:
    values = dict(virt_type="qemu", machine_type="pc", disks=(ROOT,),
                  console_log="/srv/instances/x/console.log")
    values.update(overrides)
    return xml.DomainSpec(**values)


def volume(n: int, device: str, tls: bool = False) -> xml.DiskSpec:
    return xml.DiskSpec.for_volume(block_device.VolumeConnection(
        volume_id="0000000%d-1111-4222-8333-444444444444" % n,
        export="volume-%d" % n, host="192.0.2.%d" % n, port=10809 + n, tls=tls), device)


EVERY_KIND = (
    ROOT,
    xml.DiskSpec(role=xml.EPHEMERAL, device="vdb", path="/srv/instances/x/disk.eph0"),
    xml.DiskSpec(role=xml.CONFIG_DRIVE, device="vdc", path="/srv/instances/x/disk.config",
                 format="raw", read_only=True),
    volume(1, "vdd"), volume(2, "vde"), volume(3, "vdf"),
)


@pytest.fixture
def renderer():
    return xml.DomainRenderer(TEMPLATES)


@pytest.mark.parametrize("domain_spec", [
    spec(),
    spec(virt_type="kvm", machine_type="q35"),
    spec(machine_type=""),
    spec(network=xml.NetworkSpec("user")),
    spec(network=xml.NetworkSpec("network", "default")),
    spec(network=xml.NetworkSpec("bridge", "br0")),
    spec(console_log=None, disks=()),
    spec(disks=(dataclasses.replace(ROOT, format="raw"),)),
    spec(disks=EVERY_KIND, network=xml.NetworkSpec("user")),
    spec(disks=(volume(1, "vda"),)),
    spec(disks=(ROOT, volume(1, "vdb", tls=True), volume(2, "vdc"))),
], ids=["plain", "kvm-q35", "default-machine", "user-nic", "network-nic",
        "bridge-nic", "no-disk-no-log", "raw-disk", "every-kind-of-disk",
        "boot-from-volume", "tls-volume"])
def test_rendered_documents_are_valid(renderer, assert_valid, domain_spec):
    inst = make_instance()
    root = assert_valid(renderer.render(inst, domain_spec))
    assert root.get("type") == domain_spec.virt_type
    assert root.findtext("name") == inst.domain_name
    assert root.findtext("uuid") == inst.uuid
    assert root.findtext("memory") == "64"
    assert root.find("memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == "1"
    assert root.find("features/acpi") is not None
    if domain_spec.machine_type:
        assert root.find("os/type").get("machine") == domain_spec.machine_type
    disks = root.findall("devices/disk")
    assert len(disks) == len(domain_spec.disks)
    for element, disk in zip(disks, domain_spec.disks, strict=True):
        assert_disk(element, disk)
    serial = root.find("devices/serial/source")
    if domain_spec.console_log:
        assert serial.get("path") == domain_spec.console_log
    else:
        assert serial is None
    nics = root.findall("devices/interface")
    if domain_spec.network is None:
        assert nics == []
    else:
        assert len(nics) == 1 and nics[0].get("type") == domain_spec.network.type
        assert nics[0].find("model").get("type") == "virtio"
        if domain_spec.network.type != "user":
            source = nics[0].find("source")
            assert source.get(domain_spec.network.type) == domain_spec.network.source


def assert_disk(element: etree._Element, disk: xml.DiskSpec) -> None:
    """The rendered <disk> says what the DiskSpec says, and nothing else."""
    assert element.find("target").get("dev") == disk.device
    assert element.find("target").get("bus") == "virtio"
    assert element.find("driver").get("type") == disk.format
    source = element.find("source")
    if disk.nbd is not None:
        assert element.get("type") == "network"
        assert source.get("protocol") == "nbd" and source.get("name") == disk.nbd.export
        host = source.find("host")
        assert (host.get("name"), host.get("port")) == (disk.nbd.host, str(disk.nbd.port))
        # libvirt's <source tls='yes'>; without it, qemu.conf's nbd_tls decides (off).
        assert source.get("tls") == ("yes" if disk.nbd.tls else None)
    else:
        assert element.get("type") == "file" and source.get("file") == disk.path
    assert (element.find("readonly") is not None) == disk.read_only
    assert element.findtext("serial", default="") == disk.serial
    alias = element.find("alias")
    assert (alias.get("name") if alias is not None else "") == disk.alias


def test_disks_render_in_device_order_whatever_order_given(renderer, assert_valid):
    shuffled = tuple(reversed(EVERY_KIND))
    root = assert_valid(renderer.render(make_instance(), spec(disks=shuffled)))
    assert [t.get("dev") for t in root.findall("devices/disk/target")] == [
        "vda", "vdb", "vdc", "vdd", "vde", "vdf"]


def test_nbd_volume_disk_carries_its_volume_id(renderer, assert_valid):
    disk = volume(7, "vdb")
    root = assert_valid(renderer.render(make_instance(), spec(disks=(ROOT, disk))))
    element = root.findall("devices/disk")[1]
    assert element.findtext("serial") == "00000007-1111-4222-8333-444444444444"
    assert xml.volume_id_of_alias(element.find("alias").get("name")) == element.findtext("serial")
    assert xml.volume_id_of_alias("virtio-disk0") is None
    # The fragment alone (what an attach sends) is the same element.
    def content(el):
        return [(e.tag, dict(e.attrib), (e.text or "").strip()) for e in el.iter()]
    assert content(renderer.render_disk(disk)) == content(element)


def test_tls_comes_from_the_connection_info():
    """The volume service's connection dict carries ``tls``; an attachment
    recorded before the option existed (no key) is plain."""
    data = {"volume_id": "00000001-1111-4222-8333-444444444444", "export": "e",
            "host": "192.0.2.1", "port": 10809, "protocol": "nbd", "format": "raw"}
    assert block_device.VolumeConnection.from_dict(data).tls is False
    assert block_device.VolumeConnection.from_dict({**data, "tls": True}).tls is True
    assert block_device.VolumeConnection.from_dict({**data, "tls": False}).tls is False
    connection = block_device.VolumeConnection.from_dict({**data, "tls": True})
    assert block_device.VolumeConnection.from_dict(connection.to_dict()) == connection
    assert xml.DiskSpec.for_volume(connection, "vdb").nbd.tls is True


def test_as_many_disks_as_names(renderer, assert_valid):
    disks = [ROOT]
    for n in range(1, block_device.MAX_DISKS):
        used = [d.device for d in disks]
        disks.append(xml.DiskSpec(role=xml.VOLUME, device=block_device.next_device_name(used),
                                  nbd=xml.NbdSource("e%d" % n, "h", 10809), format="raw"))
    root = assert_valid(renderer.render(make_instance(), spec(disks=tuple(disks))))
    assert len(root.findall("devices/disk")) == block_device.MAX_DISKS == 26
    assert root.findall("devices/disk/target")[-1].get("dev") == "vdz"
    with pytest.raises(exception.DeviceNameUnavailable, match="all 26"):
        block_device.next_device_name([d.device for d in disks])


@pytest.mark.parametrize("disks, message", [
    ((ROOT, dataclasses.replace(ROOT, role=xml.EPHEMERAL)), "two disks are called vda"),
    ((ROOT, dataclasses.replace(ROOT, device="vdb")), "one root disk"),
    ((dataclasses.replace(ROOT, device="sda"),), "not one of vda..vdz"),
])
def test_domain_spec_refuses_bad_disk_sets(disks, message):
    with pytest.raises(ValueError, match=message):
        spec(disks=disks)


@pytest.mark.parametrize("values, message", [
    (dict(role="scratch", device="vdb", path="/x"), "role"),
    (dict(role=xml.ROOT, device="vda"), "path or an NBD source"),
    (dict(role=xml.ROOT, device="vda", path="/x", nbd=xml.NbdSource("e", "h", 1)),
     "path or an NBD source"),
    (dict(role=xml.ROOT, device="vda", path="/x", format="vmdk"), "format"),
    (dict(role=xml.VOLUME, device="vdb", nbd=xml.NbdSource("e", "h", 1)), "raw"),
    (dict(role=xml.VOLUME, device="vdb", nbd=xml.NbdSource("e", "h", 1), format="raw",
          alias="ua-a b"), "alias"),
])
def test_disk_spec_refuses_what_libvirt_would(values, message):
    with pytest.raises(ValueError, match=message):
        xml.DiskSpec(**values)


def test_device_name_allocator():
    assert block_device.next_device_name([]) == "vda"
    assert block_device.next_device_name(["vda", "vdb", "vdd"]) == "vdc"
    assert block_device.next_device_name(["vda"], limit=2) == "vdb"
    with pytest.raises(exception.DeviceNameUnavailable, match="all 2 device names"):
        block_device.next_device_name(["vda", "vdb"], limit=2)
    assert block_device.check_device_name("vdc", ["vda"]) == "vdc"
    with pytest.raises(exception.DeviceNameUnavailable, match="in use"):
        block_device.check_device_name("vda", ["vda"])
    with pytest.raises(exception.DeviceNameUnavailable, match="vda..vdz"):
        block_device.check_device_name("hda", [])


def test_metadata_round_trip(renderer, assert_valid):
    inst = make_instance(metadata={"b": "2", "a": "1"})
    root = assert_valid(renderer.render(inst, spec()))
    meta = root.find("metadata/{%s}instance" % xml.NAMESPACE)
    parsed = xml.parse_instance_metadata(etree.tostring(meta).decode())
    assert parsed == {"uuid": inst.uuid, "display_name": "web-1",
                      "project_id": "p1", "flavor": "m1.tiny",
                      "metadata": {"a": "1", "b": "2"}}


def structure(root: etree._Element) -> list:
    """Tags and attribute names of every element, ignoring values."""
    return [(el.tag, sorted(el.attrib)) for el in root.iter()
            if isinstance(el.tag, str)]


HOSTILE = [
    "</name><devices><disk type='file'><source file='/etc/shadow'/></disk>",
    "]]><evil/><![CDATA[",
    "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>&e;",
    "\" onload=\"x",
    "a\x00b\x01c\x1bd\ud800e",
    "&amp;&lt;&#0;",
]


@pytest.mark.parametrize("payload", HOSTILE)
@pytest.mark.parametrize("field", ["name", "project_id", "user_id",
                                   "image_ref", "meta_key", "meta_value",
                                   "flavor_name"])
def test_user_strings_cannot_change_structure(renderer, assert_valid,
                                              field, payload):
    benign = make_instance(metadata={"k": "v"},
                           flavor={"name": "f", "memory_mb": 64})
    overrides = {"metadata": {"k": "v"},
                 "flavor": {"name": "f", "memory_mb": 64}}
    if field == "meta_key":
        overrides["metadata"] = {payload: "v"}
    elif field == "meta_value":
        overrides["metadata"] = {"k": payload}
    elif field == "flavor_name":
        overrides["flavor"] = {"name": payload, "memory_mb": 64}
    else:
        overrides[field] = payload
    hostile = make_instance(uuid=benign.uuid, **overrides)
    expected = structure(assert_valid(renderer.render(benign, spec())))
    root = assert_valid(renderer.render(hostile, spec()))
    assert structure(root) == expected
    # The payload is kept as text (minus characters XML cannot carry).
    meta = xml.parse_instance_metadata(etree.tostring(
        root.find("metadata/{%s}instance" % xml.NAMESPACE)).decode())
    clean = xml.xml_text(payload)
    if field == "name":
        assert meta["display_name"] == clean
    elif field == "meta_key":
        assert list(meta["metadata"]) == [clean]
    elif field == "meta_value":
        assert meta["metadata"]["k"] == clean
    assert len(root.findall("devices/disk")) == 1
    assert root.findtext("name") == benign.domain_name


def test_operator_template_dir_is_used(tmp_path, assert_valid):
    shutil.copytree(TEMPLATES, tmp_path, dirs_exist_ok=True)
    domain = tmp_path / "domain.xml"
    text = domain.read_text().replace(
        "<clock offset=\"utc\"/>",
        "<cpu mode=\"custom\"><model>qemu64</model></cpu><clock offset=\"utc\"/>")
    domain.write_text(text)
    root = assert_valid(xml.DomainRenderer(str(tmp_path)).render(
        make_instance(), spec()))
    assert root.findtext("cpu/model") == "qemu64"


def test_template_missing_element_is_a_clear_error(tmp_path):
    shutil.copytree(TEMPLATES, tmp_path, dirs_exist_ok=True)
    domain = tmp_path / "domain.xml"
    domain.write_text(domain.read_text().replace("<vcpu placement=\"static\">1</vcpu>", ""))
    with pytest.raises(xml.TemplateError, match="vcpu"):
        xml.DomainRenderer(str(tmp_path)).render(make_instance(), spec())


def test_missing_template_dir(tmp_path):
    with pytest.raises(xml.TemplateError, match="domain.xml"):
        xml.DomainRenderer(str(tmp_path / "nope")).render(make_instance(), spec())


def test_keep_device_addresses_gives_a_hot_plugged_disk_its_source_address():
    """A disk hot-plugged on the source sits after the balloon (slot 4); a
    fresh rendering would give it slot 3: the destination's XML takes the
    source's addresses, device by device (disks by target, the rest by
    kind and place), and keeps what it has itself."""
    from compute.virt.libvirt.xml import keep_device_addresses
    pci = "<address type='pci' domain='0x0000' bus='0x00' slot='%s' function='0x0'/>"
    source = ("<domain><devices>"
              "<disk type='file'><source file='/a/disk'/><target dev='vda'/>%s</disk>"
              "<memballoon model='virtio'>%s</memballoon>"
              "<disk type='network'><target dev='vdb'/>%s</disk>"
              "<serial type='file'><target port='0'/></serial>"
              "</devices></domain>") % (pci % "0x02", pci % "0x03", pci % "0x04")
    dest = ("<domain><devices>"
            "<disk type='file'><source file='/b/disk'/><target dev='vda'/></disk>"
            "<disk type='network'><target dev='vdb'/></disk>"
            "<memballoon model='virtio'/>"
            "<serial type='file'><target port='0'/></serial>"
            "<disk type='file'><target dev='vdc'/>%s</disk>"
            "</devices></domain>") % (pci % "0x09")
    kept = etree.fromstring(keep_device_addresses(dest, source).encode())
    slots = {d.find("target").get("dev"): d.find("address").get("slot")
             for d in kept.findall("devices/disk")}
    assert slots == {"vda": "0x02", "vdb": "0x04", "vdc": "0x09"}
    assert kept.find("devices/memballoon/address").get("slot") == "0x03"
    assert kept.find("devices/serial/address") is None
    assert kept.find("devices/disk/source").get("file") == "/b/disk"


def test_a_read_only_connection_renders_a_read_only_disk(renderer, assert_valid):
    """os-update_readonly_flag: the volume service's connection carries
    ``read_only``; the disk (at boot or attach) gets ``<readonly/>``. An
    attachment recorded before the key existed is writable."""
    data = {"volume_id": "00000001-1111-4222-8333-444444444444", "export": "e",
            "host": "192.0.2.1", "port": 10809}
    assert block_device.VolumeConnection.from_dict(data).read_only is False
    connection = block_device.VolumeConnection.from_dict({**data, "read_only": True})
    assert block_device.VolumeConnection.from_dict(connection.to_dict()) == connection
    disk = xml.DiskSpec.for_volume(connection, "vdb")
    root = assert_valid(renderer.render(make_instance(), spec(disks=(ROOT, disk))))
    assert root.findall("devices/disk")[1].find("readonly") is not None
    assert renderer.render_disk(disk).find("readonly") is not None
    plain = xml.DiskSpec.for_volume(block_device.VolumeConnection.from_dict(data), "vdb")
    assert renderer.render_disk(plain).find("readonly") is None

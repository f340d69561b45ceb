"""Domain XML rendering: valid against libvirt's schema, injection-proof."""

from __future__ import annotations

import shutil

import pytest
from lxml import etree

from compute.virt.libvirt import xml
from flotilla.conf import libvirt as libvirt_conf
from tests.unit.virt.conftest import make_instance

TEMPLATES = libvirt_conf._PACKAGED_TEMPLATES


def spec(**overrides) -> xml.DomainSpec:
    values = dict(virt_type="qemu", machine_type="pc",
                  disk_path="/srv/instances/x/disk",
                  console_log="/srv/instances/x/console.log")
    values.update(overrides)
    return xml.DomainSpec(**values)


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
    spec(console_log=None, disk_path=None),
    spec(disk_format="raw"),
], ids=["plain", "kvm-q35", "default-machine", "user-nic", "network-nic",
        "bridge-nic", "no-disk-no-log", "raw-disk"])
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
    if domain_spec.disk_path:
        assert len(disks) == 1
        assert disks[0].find("source").get("file") == domain_spec.disk_path
        assert disks[0].find("driver").get("type") == domain_spec.disk_format
        assert disks[0].find("target").get("bus") == "virtio"
    else:
        assert disks == []
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

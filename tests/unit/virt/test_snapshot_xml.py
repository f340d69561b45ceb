"""The block copy target of a live snapshot: rendered from its template,
valid against libvirt's schema, paths kept as data."""

from __future__ import annotations

import pytest
from lxml import etree

from compute.virt.libvirt import snapshot, xml
from flotilla.conf import libvirt as libvirt_conf
from tests.unit.virt.conftest import make_instance


@pytest.fixture
def renderer():
    return xml.DomainRenderer(libvirt_conf._PACKAGED_TEMPLATES)


def _in_a_domain(renderer, disk_xml: str) -> etree._Element:
    """A whole domain whose only disk is ``disk_xml`` (libvirt's schema
    validates a disk inside a domain)."""
    root = renderer.render_tree(make_instance(), xml.DomainSpec(
        virt_type="qemu", machine_type="pc", console_log="/srv/i/x/console.log"))
    root.find("devices").insert(0, etree.fromstring(disk_xml))
    return root


@pytest.mark.parametrize("path", ["/srv/instances/x/snapshot-0a1b.qcow2",
                                  "/srv/odd dir/<snapshot>&'\".qcow2"])
def test_the_copy_target_is_valid_and_keeps_its_path_as_data(renderer, domain_schema,
                                                             path):
    document = snapshot.render_copy_target(renderer, path, "qcow2")
    element = etree.fromstring(document)
    assert element.tag == "disk" and element.get("type") == "file"
    assert element.find("source").get("file") == path
    assert element.find("driver").get("type") == "qcow2"
    assert element.find("target").get("dev") == "vda"
    assert len(element.findall(".//source")) == 1
    root = _in_a_domain(renderer, document)
    assert domain_schema.validate(root), domain_schema.error_log


def test_a_template_without_the_filled_elements_is_refused(tmp_path):
    (tmp_path / snapshot.COPY_TEMPLATE).write_text("<disk type='file'/>")
    with pytest.raises(xml.TemplateError, match="source"):
        snapshot.render_copy_target(xml.DomainRenderer(str(tmp_path)), "/x", "qcow2")

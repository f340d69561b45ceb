"""LibvirtDriver against libvirt's built-in test driver (test:///default):
what is particular to libvirt. The driver contract (contract.py, run by
test_contract_libvirt.py) covers what every driver does."""

from __future__ import annotations

import pytest
from lxml import etree

from compute.virt import power_state
from compute.virt.fake import FakeDriver
from compute.virt.libvirt import xml
from compute.virt.libvirt.driver import LibvirtDriver
from compute.virt.loader import load_driver
from flotilla import exception
from tests.unit.virt import test_xml
from tests.unit.virt.conftest import make_instance


@pytest.fixture
def driver(conf):
    conf.set_override("connection_uri", "test:///default", "libvirt")
    drv = LibvirtDriver(conf)
    drv.init_host("test-host")
    spawned = []
    real_spawn = drv.spawn

    def spawn(instance, image_meta=None, network_info=None):
        spawned.append(instance)
        return real_spawn(instance, image_meta, network_info)

    drv.spawn = spawn
    yield drv
    for instance in spawned:
        drv.destroy(instance)
    drv.cleanup_host()


def test_test_driver_capabilities_follow_the_uri(driver):
    # No files behind test:///default: no console log, no image cache.
    caps = driver.capabilities
    assert not caps.supports_console_log and not caps.supports_image_cache
    assert caps.supports_diagnostics


def test_loader_picks_libvirt(conf):
    conf.set_override("connection_uri", "test:///default", "libvirt")
    assert isinstance(load_driver(conf), LibvirtDriver)
    conf.set_override("compute_driver", "fake", "compute")
    assert isinstance(load_driver(conf), FakeDriver)
    conf.set_override("compute_driver", "nonsense", "compute")
    with pytest.raises(ValueError):
        load_driver(conf)


def test_spawn_makes_no_files_and_sizes_the_domain(driver, tmp_path):
    inst = make_instance(flavor={"memory_mb": 96, "vcpus": 2, "network": True})
    driver.spawn(inst, None)
    info = driver.get_info(inst)
    assert info.memory_mb == 96 and info.vcpus == 2
    assert not (tmp_path / "instances").exists()
    diag = driver.get_diagnostics(inst)
    assert diag["interfaces"] and set(diag["disks"]) == {"vda"}
    assert driver.get_available_resource()["hypervisor_type"] == "TEST"


def test_test_driver_accepts_every_kind_of_disk(driver):
    """The disk list renders into a document libvirt defines (beyond the
    schema: libvirt's own parser and checks)."""
    inst = make_instance()
    spec = xml.DomainSpec(virt_type="qemu", machine_type="pc", disks=test_xml.EVERY_KIND)
    document = driver.renderer.render(inst, spec)
    domain = driver.host.with_connection(lambda conn: conn.defineXML(document))
    try:
        defined = etree.fromstring(domain.XMLDesc())
        assert [t.get("dev") for t in defined.findall("devices/disk/target")] == [
            d.device for d in test_xml.EVERY_KIND]
        nbd = defined.findall("devices/disk")[3]
        assert nbd.find("source").get("protocol") == "nbd"
        assert nbd.findtext("serial") == test_xml.EVERY_KIND[3].serial
    finally:
        domain.undefine()


def test_list_instances_leaves_out_foreign_domains(driver):
    # test:///default always has a domain called "test", not ours.
    listed = driver.list_instances()
    uuids = driver.host.with_connection(
        lambda c: [d.UUIDString() for d in c.listAllDomains()])
    assert set(listed) < set(uuids)


def test_failed_spawn_leaves_nothing(driver, monkeypatch):
    inst = make_instance()

    def fail():
        raise RuntimeError("boom")
    from compute.virt.libvirt import guest as guest_mod
    monkeypatch.setattr(guest_mod.Guest, "start", lambda self: fail())
    with pytest.raises(exception.InstanceDeployFailure, match="boom"):
        driver.spawn(inst, None)
    assert driver.host.lookup(inst.uuid) is None


def test_bad_template_dir_fails_cleanly(conf, driver, tmp_path):
    driver.renderer = xml.DomainRenderer(str(tmp_path))
    inst = make_instance()
    with pytest.raises(exception.InstanceDeployFailure, match="template"):
        driver.spawn(inst, None)
    assert driver.host.lookup(inst.uuid) is None


def test_test_driver_shuts_guests_down_gracefully(driver):
    # The test driver honours a shutdown request at once: no plug pulled.
    inst = make_instance()
    driver.spawn(inst, None)
    assert driver.power_off(inst, timeout=5) is True
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN


def test_accepts_instance_dicts(driver):
    inst = make_instance()
    as_dict = {"uuid": inst.uuid, "flavor": {"memory_mb": 64}}
    driver.spawn(as_dict, None)
    assert driver.get_info(as_dict).power_state == power_state.RUNNING


def test_unreachable_hypervisor(conf):
    conf.set_override("connection_uri", "qemu+tcp://127.0.0.1:1/system",
                      "libvirt")
    conf.set_override("reconnect_timeout", 1, "libvirt")
    drv = LibvirtDriver(conf)
    with pytest.raises(exception.HypervisorUnavailable):
        drv.init_host("h")
    drv.cleanup_host()


def test_a_flavor_with_swap_gives_the_guest_a_swap_disk(driver):
    inst = make_instance(flavor={"memory_mb": 64, "vcpus": 1, "swap": 512})
    driver.spawn(inst, None)
    defined = etree.fromstring(driver._guest(inst).domain.XMLDesc())
    disks = {d.find("target").get("dev"): d for d in defined.findall("devices/disk")}
    assert set(disks) == {"vda", "vdb"}
    assert disks["vdb"].find("source").get("file").endswith("/disk.swap")
    assert disks["vdb"].find("driver").get("type") == "raw"
    plain = make_instance(flavor={"memory_mb": 64, "vcpus": 1})
    driver.spawn(plain, None)
    assert len(etree.fromstring(driver._guest(plain).domain.XMLDesc())
               .findall("devices/disk")) == 1


def test_spawn_from_a_volume_boots_its_nbd_disk_and_makes_no_root_disk(
        driver, domain_schema):
    from flotilla.objects import BlockDeviceMapping
    boot, extra = ("0000000%d-1111-4222-8333-444444444444" % n for n in (1, 2))

    def bdm(volume_id, boot_index):
        return BlockDeviceMapping(
            source_type="volume", destination_type="volume", boot_index=boot_index,
            volume_id=volume_id, connection_info={
                "volume_id": volume_id, "export": volume_id, "host": "192.0.2.1",
                "port": 10809})

    inst = make_instance(flavor={"memory_mb": 96, "vcpus": 1, "root_gb": 0, "swap": 64})
    # No image: the boot volume is the root disk (the fixture's spawn
    # wrapper takes no block devices, so the driver's own method is called).
    LibvirtDriver.spawn(driver, inst, None,
                        block_device_info=[bdm(extra, None), bdm(boot, 0)])
    try:
        root = etree.fromstring(driver._guest(inst).domain.XMLDesc())
        assert domain_schema.validate(root), domain_schema.error_log
        disks = [(d.get("type"), d.find("target").get("dev"), d.findtext("serial"))
                 for d in root.findall("devices/disk")]
        assert disks == [("network", "vda", boot), ("file", "vdb", None),
                         ("network", "vdc", extra)]
        assert root.find("devices/disk/source").get("protocol") == "nbd"
    finally:
        driver.destroy(inst)

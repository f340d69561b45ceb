"""LibvirtDriver against libvirt's built-in test driver (test:///default)."""

from __future__ import annotations

import time

import pytest

from compute.virt import events, power_state
from compute.virt.driver import ComputeDriver
from compute.virt.libvirt.driver import LibvirtDriver
from compute.virt.loader import load_driver
from flotilla import exception
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


def state(drv, inst) -> int:
    return drv.get_info(inst).power_state


def test_is_a_compute_driver_with_test_capabilities(driver):
    assert isinstance(driver, ComputeDriver)
    caps = driver.capabilities
    assert not caps.supports_console_log and not caps.supports_image_cache
    assert not caps.supports_live_migration and not caps.supports_attach


def test_loader_picks_libvirt(conf):
    conf.set_override("connection_uri", "test:///default", "libvirt")
    assert isinstance(load_driver(conf), LibvirtDriver)
    conf.set_override("compute_driver", "fake", "compute")
    assert type(load_driver(conf)).__name__ == "FakeDriver"
    conf.set_override("compute_driver", "nonsense", "compute")
    with pytest.raises(ValueError):
        load_driver(conf)


def test_spawn_and_destroy(driver, tmp_path):
    inst = make_instance(flavor={"memory_mb": 96, "vcpus": 2,
                                 "network": True})
    driver.spawn(inst, None)
    info = driver.get_info(inst)
    assert info.power_state == power_state.RUNNING
    assert info.memory_mb == 96 and info.vcpus == 2
    assert inst.uuid in driver.list_instances()
    # No files with the test driver.
    assert not (tmp_path / "instances").exists()
    driver.destroy(inst)
    assert inst.uuid not in driver.list_instances()
    with pytest.raises(exception.InstanceNotFound):
        driver.get_info(inst)
    driver.destroy(inst)  # idempotent
    driver.destroy(make_instance())  # never existed


def test_list_instances_leaves_out_foreign_domains(driver):
    # test:///default always has a domain called "test", not ours.
    listed = driver.list_instances()
    uuids = driver.host.with_connection(
        lambda c: [d.UUIDString() for d in c.listAllDomains()])
    assert set(listed) < set(uuids)


def test_spawn_twice_is_refused_and_keeps_the_first(driver):
    inst = make_instance()
    driver.spawn(inst, None)
    with pytest.raises(exception.InstanceDeployFailure, match="exists"):
        driver.spawn(inst, None)
    assert state(driver, inst) == power_state.RUNNING


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
    from compute.virt.libvirt import xml
    driver.renderer = xml.DomainRenderer(str(tmp_path))
    inst = make_instance()
    with pytest.raises(exception.InstanceDeployFailure, match="template"):
        driver.spawn(inst, None)
    assert driver.host.lookup(inst.uuid) is None


def test_power_operations(driver):
    inst = make_instance()
    driver.spawn(inst, None)
    driver.pause(inst)
    assert state(driver, inst) == power_state.PAUSED
    driver.unpause(inst)
    assert state(driver, inst) == power_state.RUNNING
    driver.suspend(inst)
    assert state(driver, inst) == power_state.SUSPENDED
    driver.suspend(inst)  # already suspended
    driver.resume(inst)
    assert state(driver, inst) == power_state.RUNNING
    assert driver.power_off(inst, timeout=5) is True
    assert state(driver, inst) == power_state.SHUTDOWN
    assert driver.power_off(inst) is False  # already off
    driver.power_on(inst)
    assert state(driver, inst) == power_state.RUNNING
    assert driver.power_off(inst, timeout=0) is False  # plug pulled
    assert state(driver, inst) == power_state.SHUTDOWN
    driver.reboot(inst, "SOFT")  # a shut-off guest is started
    assert state(driver, inst) == power_state.RUNNING
    driver.reboot(inst, "SOFT")
    assert state(driver, inst) == power_state.RUNNING
    driver.reboot(inst, "HARD")
    assert state(driver, inst) == power_state.RUNNING
    with pytest.raises(exception.Invalid):
        driver.reboot(inst, "GENTLE")


def test_suspend_of_stopped_guest_conflicts(driver):
    inst = make_instance()
    driver.spawn(inst, None)
    driver.power_off(inst, timeout=0)
    with pytest.raises(exception.Conflict):
        driver.suspend(inst)


def test_operations_on_missing_instance(driver):
    inst = make_instance()
    for op in (driver.pause, driver.unpause, driver.suspend, driver.resume,
               driver.power_on, driver.power_off, driver.reboot,
               driver.get_info, driver.get_diagnostics):
        with pytest.raises(exception.InstanceNotFound):
            op(inst)


def test_console_output_not_supported(driver):
    inst = make_instance()
    driver.spawn(inst, None)
    with pytest.raises(exception.NotSupported, match="console output"):
        driver.get_console_output(inst)


def test_diagnostics_and_resources(driver):
    inst = make_instance(flavor={"memory_mb": 64, "network": True})
    driver.spawn(inst, None)
    diag = driver.get_diagnostics(inst)
    assert diag["state"] == "running"
    assert set(diag["disks"]["vda"]) >= {"read_bytes", "write_bytes"}
    assert diag["interfaces"]
    res = driver.get_available_resource()
    for key in ("vcpus", "memory_mb", "disk_gb", "vcpus_used",
                "memory_mb_used", "disk_gb_used", "hypervisor_type",
                "hypervisor_version", "hypervisor_hostname", "cpu_arch"):
        assert key in res
    assert res["vcpus_used"] >= 1 and res["hypervisor_type"] == "TEST"
    assert driver.manage_image_cache() == []


def test_accepts_instance_dicts(driver):
    inst = make_instance()
    as_dict = {"uuid": inst.uuid, "flavor": {"memory_mb": 64}}
    driver.spawn(as_dict, None)
    assert driver.get_info(as_dict).power_state == power_state.RUNNING


def test_lifecycle_events(driver):
    received = []
    driver.register_event_listener(received.append)
    inst = make_instance()
    driver.spawn(inst, None)
    driver.pause(inst)
    driver.unpause(inst)
    driver.power_off(inst, timeout=0)
    want = [events.STARTED, events.PAUSED, events.RESUMED, events.STOPPED]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        mine = [e.transition for e in received if e.instance_uuid == inst.uuid]
        if mine == want:
            break
        time.sleep(0.05)
    assert mine == want
    assert received[-1].power_state == power_state.SHUTDOWN
    driver.register_event_listener(None)


def test_unreachable_hypervisor(conf):
    conf.set_override("connection_uri", "qemu+tcp://127.0.0.1:1/system",
                      "libvirt")
    conf.set_override("reconnect_timeout", 1, "libvirt")
    drv = LibvirtDriver(conf)
    with pytest.raises(exception.HypervisorUnavailable):
        drv.init_host("h")
    drv.cleanup_host()

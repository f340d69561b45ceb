"""LibvirtDriver on a rig host with QEMU (TCG): state as libvirt sees it."""

from __future__ import annotations

import os
import threading
import time
import uuid as uuidlib

import pytest

from compute.virt import events, power_state
from compute.virt.libvirt import imagecache
from flotilla import exception
from tests.fixtures.rig import domstate, rig_module, virsh
from tests.fixtures.waiting import wait_until


def new_instance(memory_mb: int = 64, **flavor) -> dict:
    return {"uuid": str(uuidlib.uuid4()), "name": "it </name><x/>",
            "project_id": "p", "metadata": {"k": "v"},
            "flavor": dict(name="it", memory_mb=memory_mb, vcpus=1,
                           root_gb=1, **flavor)}


def test_spawn_and_destroy_no_os_guest(driver, rig_host, empty_image):
    uri = rig_host["uri"]
    inst = new_instance(network=True)
    started = time.monotonic()
    driver.spawn(inst, empty_image)
    spawn_seconds = time.monotonic() - started
    print("spawn of a no-OS guest took %.2fs" % spawn_seconds)
    assert domstate(uri, inst["uuid"]).startswith("running")
    directory = os.path.join(rig_host["instances_path"], inst["uuid"])
    disk = os.path.join(directory, "disk")
    base = imagecache.qcow2_backing_file(disk)
    assert base and os.path.dirname(base).endswith("_base")
    assert imagecache.qemu_img_info(disk)["virtual-size"] == 1024 ** 3
    assert inst["uuid"] in driver.list_instances()
    assert driver.get_info(inst).power_state == power_state.RUNNING
    diag = driver.get_diagnostics(inst)
    assert "vda" in diag["disks"] and diag["cpu_time_ns"] > 0

    driver.destroy(inst)
    assert virsh(uri, "dominfo", inst["uuid"]).returncode != 0
    assert not os.path.exists(directory)
    driver.destroy(inst)  # idempotent
    # Nothing references the base any more: the cleanup removes it.
    assert base in driver.manage_image_cache()
    assert os.listdir(os.path.join(rig_host["instances_path"], "_base")) == []


def test_failed_spawn_leaves_nothing(driver, rig_host, empty_image):
    inst = new_instance()
    bad = dict(empty_image, id="bad", sha256="0" * 64)
    with pytest.raises(exception.ImageChecksumMismatch):
        driver.spawn(inst, bad)
    inst2 = new_instance(memory_mb=64)
    inst2["flavor"]["root_gb"] = 0
    with pytest.raises(exception.InstanceDeployFailure):
        # A machine type QEMU does not know: fails at define time.
        driver.conf.set_override("machine_type", "no-such-machine", "libvirt")
        driver.spawn(inst2, empty_image)
    for failed in (inst, inst2):
        assert virsh(rig_host["uri"], "dominfo", failed["uuid"]).returncode != 0
        assert not os.path.exists(os.path.join(rig_host["instances_path"],
                                               failed["uuid"]))


def test_lifecycle_is_reflected_in_libvirt(driver, rig_host, empty_image, conf):
    conf.set_override("reboot_timeout", 2, "compute")
    conf.set_override("shutdown_retry_interval", 1, "compute")
    uri = rig_host["uri"]
    seen = []
    driver.register_event_listener(seen.append)
    inst = new_instance()
    driver.spawn(inst, empty_image)
    uuid = inst["uuid"]

    driver.pause(inst)
    assert domstate(uri, uuid).startswith("paused")
    assert driver.get_info(inst).power_state == power_state.PAUSED
    driver.unpause(inst)
    assert domstate(uri, uuid).startswith("running")

    driver.suspend(inst)
    assert domstate(uri, uuid) == "shut off (saved)"
    assert "Managed save:   yes" in virsh(uri, "dominfo", uuid).stdout
    assert driver.get_info(inst).power_state == power_state.SUSPENDED
    driver.resume(inst)
    assert domstate(uri, uuid) == "running (restored)"

    driver.reboot(inst, "HARD")
    assert domstate(uri, uuid).startswith("running")
    # A guest without an OS ignores ACPI: soft reboot falls back to hard.
    driver.reboot(inst, "SOFT")
    assert domstate(uri, uuid).startswith("running")

    assert driver.power_off(inst, timeout=0) is False
    assert domstate(uri, uuid) == "shut off (destroyed)"
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN
    driver.power_on(inst)
    assert domstate(uri, uuid).startswith("running")
    # The no-OS guest ignores ACPI: after the timeout the plug is pulled.
    assert driver.power_off(inst, timeout=1, retry_interval=1) is False
    assert domstate(uri, uuid) == "shut off (destroyed)"

    # QEMU's events are noisy (RESUMED before STARTED at boot, a PAUSED
    # before the save of a suspend) but ordered: what each operation
    # ended in must appear in order.
    want = [events.STARTED, events.PAUSED, events.RESUMED, events.SUSPENDED,
            events.STARTED, events.STOPPED, events.STARTED, events.STOPPED]

    def transitions():
        return [e.transition for e in seen if e.instance_uuid == uuid]

    wait_until(lambda: (is_subsequence(want, transitions())
                        and transitions()[-1] == events.STOPPED), 10,
               "lifecycle events %s ending in stopped (seen %s)"
               % (want, transitions()))


def is_subsequence(want: list, seen: list) -> bool:
    remaining = iter(seen)
    return all(item in remaining for item in want)


def test_reconnects_after_libvirtd_restart(driver, rig, rig_host, empty_image):
    inst = new_instance()
    driver.spawn(inst, empty_image)
    seen = []
    driver.register_event_listener(seen.append)
    connections = driver.host.connect_count

    # A call made while libvirtd is down waits for it (up to
    # reconnect_timeout, 30 s here) and then succeeds: libvirtd is killed
    # before the call starts and started again only once the call has begun.
    rig_module.kill_libvirtd(rig["root"], rig_host["name"])
    calling = threading.Event()
    result = {}

    def call_during_outage():
        calling.set()
        try:
            result["info"] = driver.get_info(inst)
        except Exception as exc:  # reported below
            result["error"] = exc

    caller = threading.Thread(target=call_during_outage)
    caller.start()
    assert calling.wait(10)
    rig_module.start_libvirtd(rig["root"], rig_host["name"])
    caller.join(60)
    assert not caller.is_alive()
    assert "error" not in result, result["error"]
    assert result["info"].power_state == power_state.RUNNING   # the guest survived

    # Over a new connection, with the lifecycle callbacks registered again.
    assert driver.host.connect_count > connections
    assert inst["uuid"] in driver.list_instances()
    driver.pause(inst)
    wait_until(lambda: any(e.instance_uuid == inst["uuid"]
                           and e.transition == events.PAUSED for e in seen),
               10, "a PAUSED event after the reconnect")
    driver.destroy(inst)

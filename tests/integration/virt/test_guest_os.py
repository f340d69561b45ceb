"""The tiny real Linux guest on a rig host: ACPI and the serial console."""

from __future__ import annotations

import time
import uuid as uuidlib

from tests.fixtures.rig import domstate
from tests.fixtures.waiting import wait_until


def test_real_guest_boots_reboots_and_powers_off_gracefully(
        driver, rig_host, guest_image, conf):
    conf.set_override("reboot_timeout", 60, "compute")
    inst = {"uuid": str(uuidlib.uuid4()), "name": "linux",
            "flavor": {"name": "tiny", "memory_mb": guest_image["min_ram_mb"] + 16,
                       "vcpus": 1, "root_gb": 0}}
    image = {"id": "flotilla-guest-%s" % guest_image["sha256"][:12],
             "source": guest_image["image"], "sha256": guest_image["sha256"]}
    marker = guest_image["boot_marker"]
    started = time.monotonic()
    driver.spawn(inst, image)
    wait_until(lambda: marker in driver.get_console_output(inst), 60,
               "the boot marker on the serial console")
    print("guest booted %.1fs after spawn" % (time.monotonic() - started))
    # /proc/partitions follows the marker on the (slow, emulated) serial port.
    partitions = guest_image["partitions_marker"]
    wait_until(lambda: "vda" in driver.get_console_output(inst).partition(
        partitions)[2], 10, "the root disk in the guest's /proc/partitions")

    # SOFT reboot: ACPI shutdown, then started again (no fallback needed:
    # power_off below proves ACPI works; here the guest boots twice).
    driver.reboot(inst, "SOFT")
    wait_until(lambda: driver.get_console_output(inst).count(marker) >= 2, 60,
               "the second boot marker after a soft reboot")

    # ACPI power off completes gracefully, without the destroy fallback.
    started = time.monotonic()
    assert driver.power_off(inst, timeout=60, retry_interval=3) is True
    print("ACPI power off took %.1fs" % (time.monotonic() - started))
    assert domstate(rig_host["uri"], inst["uuid"]) == "shut off (shutdown)"
    assert "Power down" in driver.get_console_output(inst)
    driver.destroy(inst)

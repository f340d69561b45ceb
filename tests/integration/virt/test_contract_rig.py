"""The driver contract on a rig host's libvirtd with QEMU (TCG).

The guests are no-OS guests on the empty image (they sit in the BIOS), so
ACPI is ignored: a soft reboot falls back to a hard one after a short
timeout. The fixtures of the features libvirt does not do yet
(``peer_driver``, ``volume_connection``, ``hold_migrations``) come with
those features; until then the contract checks that they raise
NotSupported.
"""

from __future__ import annotations

import os
import uuid as uuidlib

import pytest

from tests.unit.virt.contract import DriverContract


class TestRigLibvirtContract(DriverContract):
    @pytest.fixture
    def driver(self, driver, conf):
        # tests/integration/virt/conftest.py's driver, with short ACPI waits.
        conf.set_override("reboot_timeout", 2, "compute")
        conf.set_override("shutdown_retry_interval", 1, "compute")
        return driver

    @pytest.fixture
    def image(self, empty_image):
        return empty_image

    @pytest.fixture
    def console_marker(self, rig_host):
        """A line written into the guest's serial log file, as the guest's
        serial port writes there (a no-OS guest prints nothing itself)."""
        def write(driver, inst):
            marker = "contract-marker-%s" % uuidlib.uuid4().hex
            path = os.path.join(rig_host["instances_path"], inst.uuid, "console.log")
            with open(path, "a") as f:
                f.write(marker + "\n")
            return marker
        return write

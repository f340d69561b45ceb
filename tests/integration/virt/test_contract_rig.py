"""The driver contract on a rig host's libvirtd with QEMU (TCG).

The guests are no-OS guests on the empty image (they sit in the BIOS), so
ACPI is ignored: a soft reboot falls back to a hard one after a short
timeout. Live migrations go to the
rig's second host (``peer_driver``); ``hold_migrations`` throttles them to
1 MiB/s so they last long enough to abort or force. Volumes and cold
migration are not done in libvirt yet: the contract checks that they raise
NotSupported.
"""

from __future__ import annotations

import contextlib
import os
import uuid as uuidlib

import pytest

from compute.virt.libvirt.driver import LibvirtDriver
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

    @pytest.fixture
    def peer_driver(self, conf, rig_host2):
        drv = LibvirtDriver(conf, connection_uri=rig_host2["uri"],
                            instances_path=rig_host2["instances_path"])
        drv.init_host(rig_host2["name"])
        yield drv
        for uuid in drv.list_instances():
            drv.destroy({"uuid": uuid, "flavor": {"memory_mb": 64}})
        drv.manage_image_cache()
        drv.cleanup_host()

    @pytest.fixture
    def hold_migrations(self, conf):
        @contextlib.contextmanager
        def hold(driver):
            # 1 MiB/s: the 64 MiB guest needs a minute; the test aborts or
            # forces it well before.
            conf.set_override("live_migration_bandwidth", 1, "libvirt")
            try:
                yield
            finally:
                conf.clear_override("live_migration_bandwidth", "libvirt")
        return hold

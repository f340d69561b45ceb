"""The driver contract on libvirt's built-in test driver (test:///default).

The test driver keeps its domains in this process, shared by every
connection: each test destroys the guests it made.
"""

from __future__ import annotations

import pytest

from compute.virt.libvirt.driver import LibvirtDriver
from tests.unit.virt.contract import DriverContract


class TestLibvirtTestDriverContract(DriverContract):
    @pytest.fixture
    def driver(self, conf, tmp_path):
        conf.set_override("connection_uri", "test:///default", "libvirt")
        conf.set_override("instances_path", str(tmp_path / "instances"), "libvirt")
        drv = LibvirtDriver(conf)
        drv.init_host("test-host")
        yield drv
        for uuid in drv.list_instances():
            drv.destroy({"uuid": uuid, "flavor": {"memory_mb": 64}})
        drv.cleanup_host()

    @pytest.fixture
    def image(self):
        return None

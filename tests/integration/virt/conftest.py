"""Drivers on the session's rig host (tests/integration/conftest.py).

The rig is started once per session and stopped after it; when it cannot
start, the tests fail (they are never skipped: a silent skip would hide a
broken machine).
"""

from __future__ import annotations

import pytest

from compute.virt.libvirt.driver import LibvirtDriver
from tests.fixtures.rig import domstate, rig_module, virsh  # noqa: F401


@pytest.fixture
def driver(conf, rig_host):
    conf.set_override("connection_uri", rig_host["uri"], "libvirt")
    conf.set_override("instances_path", rig_host["instances_path"], "libvirt")
    conf.set_override("reconnect_timeout", 30, "libvirt")
    conf.set_override("image_cache_max_age", 0, "libvirt")
    drv = LibvirtDriver(conf)
    drv.init_host(rig_host["name"])
    yield drv
    for uuid in drv.list_instances():
        drv.destroy({"uuid": uuid, "flavor": {"memory_mb": 64}})
    drv.manage_image_cache()
    drv.cleanup_host()

"""The volume service's libvirt pool backend on a rig host whose libvirtd
restarts: the next call connects again (the e2e crash tests restart the
libvirtd the demo's pool lives on; a volume deleted after that ended in
error_deleting)."""

from __future__ import annotations

import os

from tests.fixtures.rig import rig_module, virsh
from volume.libvirt_pool import LibvirtPoolBackend


def test_the_pool_backend_connects_again_after_a_libvirtd_restart(conf, rig, rig_host,
                                                                 tmp_path):
    conf.set_override("connection_uri", rig_host["uri"], "volume")
    conf.set_override("pool_name", "flotilla-test-reconnect", "volume")
    conf.set_override("pool_path", str(tmp_path / "pool"), "volume")
    backend = LibvirtPoolBackend(conf)
    backend.start()
    try:
        path = backend.create("11111111-2222-3333-4444-555555555555", 1)
        assert os.path.exists(path)
        rig_module.restart_libvirtd(rig["root"], rig_host["name"])
        backend.delete("11111111-2222-3333-4444-555555555555")
        assert not os.path.exists(path)
        second = backend.create("66666666-2222-3333-4444-555555555555", 1)
        backend.delete("66666666-2222-3333-4444-555555555555")
        assert not os.path.exists(second)
    finally:
        backend.stop()
        virsh(rig_host["uri"], "pool-destroy", "flotilla-test-reconnect")
        virsh(rig_host["uri"], "pool-undefine", "flotilla-test-reconnect")

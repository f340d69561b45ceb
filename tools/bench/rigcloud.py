"""One-host rig clouds for the benchmarks that need real guests."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import threading
import time
import types
from collections.abc import Callable
from typing import Any

from tests.fixtures.ports import free_port, free_port_block
from tools.demo.bringup import Bringup


def say(text: str) -> None:
    print(text, flush=True)


def on_one_host_cloud(prefix: str, work: Callable[[Bringup], Any]) -> Any:
    """``work(cloud)`` on a one-host cloud brought up in a temporary
    directory (named ``prefix``), which is torn down and removed after."""
    root = tempfile.mkdtemp(prefix=prefix)
    cloud = Bringup(root, hosts=1, api_port=free_port(),
                    rig_base_port=free_port_block(4, start=19100, end=20000), say=say)
    cloud.up()
    try:
        return work(cloud)
    finally:
        cloud.down(keep_logs=False)
        shutil.rmtree(root, ignore_errors=True)


def until(predicate: Callable[[], Any], timeout: float, what: str,
          interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; RuntimeError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(interval)


def rig_driver_and_storage_daemon(host: dict, work: pathlib.Path) -> tuple[Any, Any]:
    """For the benchmarks that drive one rig host without a cloud: the
    product's libvirt driver on ``host`` (the global CONF, state under
    ``work``, a libvirt event loop running) and a qemu-storage-daemon of its
    own on a free port (NBD plain)."""
    import libvirt

    from compute.virt.libvirt.driver import LibvirtDriver
    from flotilla.conf import CONF
    from volume.nbd import StorageDaemon
    daemon = StorageDaemon(types.SimpleNamespace(volume=types.SimpleNamespace(
        run_path=str(work / "qsd"), nbd_host="127.0.0.1", nbd_port=free_port(),
        storage_daemon="qemu-storage-daemon", nbd_tls=False, nbd_tls_x509_dir="")))
    CONF([], project="flotilla", default_config_files=[])
    CONF.set_override("state_path", str(work / "state"))
    CONF.set_override("connection_uri", host["uri"], "libvirt")
    CONF.set_override("instances_path", host["instances_path"], "libvirt")
    driver = LibvirtDriver(CONF)
    driver.init_host(host["name"])
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl()
                                     for _ in iter(int, 1)], daemon=True).start()
    return driver, daemon

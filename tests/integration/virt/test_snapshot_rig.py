"""Libvirt snapshots on a rig host with QEMU: the guest's data, the cached
base left alone, a changed base refused, and what a killed snapshot leaves
(a block job, a temporary file) recovered."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid as uuidlib

import pytest

from compute.virt import events, power_state
from compute.virt.libvirt import imagecache
from flotilla import exception
from flotilla.objects import ImageMeta
from tests.fixtures.rig import virsh
from tests.fixtures.waiting import wait_until
from tests.unit.virt.contract import EventLog, qemu_img

PATTERN_OFFSET = 300 * 1024 ** 2


def _instance() -> dict:
    return {"uuid": str(uuidlib.uuid4()), "name": "snap", "project_id": "p",
            "flavor": {"name": "snap", "memory_mb": 64, "vcpus": 1, "root_gb": 1}}


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _qemu_io(path: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path],
                          capture_output=True, text=True, timeout=120)


def _with_data(driver, rig_host, empty_image, mib: int) -> tuple[dict, str, str]:
    """A running guest whose overlay holds ``mib`` MiB written at 300 MiB
    (a pattern the snapshot must carry); returns it, its disk and base."""
    inst = _instance()
    driver.spawn(inst, empty_image)
    driver.power_off(inst, timeout=0)
    disk = os.path.join(rig_host["instances_path"], inst["uuid"], "disk")
    written = _qemu_io(disk, "write -P 0x5a %d %dM" % (PATTERN_OFFSET, mib))
    assert written.returncode == 0, written.stderr
    driver.power_on(inst)
    return inst, disk, imagecache.qcow2_backing_file(disk)


def _leftovers(rig_host, inst) -> list[str]:
    directory = os.path.join(rig_host["instances_path"], inst["uuid"])
    return sorted(n for n in os.listdir(directory) if n.startswith("snapshot-"))


def _job(rig_host, inst) -> str:
    """The type of the root disk's block job as ``virsh blockjob`` reports
    it ("" when there is none)."""
    result = virsh(rig_host["uri"], "blockjob", inst["uuid"], "vda", "--raw")
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        if line.strip().startswith("type="):
            return line.strip()[len("type="):]
    return ""


def test_a_live_snapshot_carries_the_data_and_never_touches_the_base(
        driver, rig_host, empty_image, tmp_path):
    inst, disk, base = _with_data(driver, rig_host, empty_image, 16)
    base_before = _sha256(base)
    log = EventLog()
    driver.register_event_listener(log)
    target = str(tmp_path / "snap.qcow2")
    result = driver.snapshot(inst, target,
                             ImageMeta(id=empty_image["id"], sha256=empty_image["sha256"]))
    driver.register_event_listener(None)
    assert result.virtual_size_bytes == 1024 ** 3
    info = imagecache.qemu_img_info(target)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    read = _qemu_io(target, "read -P 0x5a %d 16M" % PATTERN_OFFSET)
    assert read.returncode == 0 and "Pattern verification failed" not in read.stdout, read
    assert _sha256(base) == base_before == empty_image["sha256"]
    assert driver.get_info(inst).power_state == power_state.RUNNING
    assert events.PAUSED not in log.transitions(inst["uuid"])
    assert _leftovers(rig_host, inst) == [] and _job(rig_host, inst) == ""
    # The guest goes on writing to its own disk, which still has its base.
    assert imagecache.qcow2_backing_file(disk) == base


def test_a_base_whose_checksum_changed_is_refused(driver, rig_host, empty_image, tmp_path):
    inst = _instance()
    driver.spawn(inst, empty_image)
    target = str(tmp_path / "snap.qcow2")
    with pytest.raises(exception.SnapshotFailed, match="changed"):
        driver.snapshot(inst, target, ImageMeta(id=empty_image["id"], sha256="0" * 64))
    assert not os.path.exists(target) and os.listdir(tmp_path) == []
    assert _leftovers(rig_host, inst) == []
    assert driver.get_info(inst).power_state == power_state.RUNNING


_CHILD = textwrap.dedent("""
    import sys
    from flotilla.conf import CONF
    from compute.virt.libvirt.driver import LibvirtDriver
    uri, instances, uuid, target = sys.argv[1:5]
    CONF([], project="flotilla", default_config_files=[])
    CONF.set_override("connection_uri", uri, "libvirt")
    CONF.set_override("instances_path", instances, "libvirt")
    CONF.set_override("snapshot_copy_bandwidth", 1, "libvirt")
    driver = LibvirtDriver(CONF)
    driver.init_host("host1")
    driver.snapshot({"uuid": uuid, "flavor": {"memory_mb": 64, "root_gb": 1}}, target)
""")


def test_what_a_killed_snapshot_leaves_is_recovered(driver, rig_host, empty_image,
                                                    tmp_path):
    inst, disk, base = _with_data(driver, rig_host, empty_image, 48)
    base_before = _sha256(base)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, rig_host["uri"], rig_host["instances_path"],
         inst["uuid"], str(tmp_path / "snap.qcow2")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _job(rig_host, inst) == "Block Copy" or child.poll() is not None,
                   timeout=60, what="the snapshot's block copy to start")
        assert child.poll() is None, child.stdout.read().decode()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    # The crash left the job running and the temporary file.
    assert _job(rig_host, inst) == "Block Copy"
    assert len(_leftovers(rig_host, inst)) == 1
    driver.recover_snapshot(inst)
    assert _job(rig_host, inst) == ""
    assert _leftovers(rig_host, inst) == []
    assert driver.get_info(inst).power_state == power_state.RUNNING
    assert imagecache.qcow2_backing_file(disk) == base and _sha256(base) == base_before
    check = qemu_img("check", "-U", disk)
    assert check.returncode == 0, check.stdout + check.stderr
    driver.recover_snapshot(inst)                    # again: nothing to do
    # A snapshot after the recovery works.
    target = str(tmp_path / "after.qcow2")
    driver.snapshot(inst, target)
    assert _qemu_io(target, "read -P 0x5a %d 48M" % PATTERN_OFFSET).returncode == 0

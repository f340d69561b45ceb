"""A one-host libvirt rig for the session, and drivers on it.

The rig is started here and stopped after the session; when it cannot
start, the tests fail (they are never skipped: a silent skip would hide a
broken machine).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

from compute.virt.libvirt.driver import LibvirtDriver

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
RIG = os.path.join(REPO, "tools", "rig", "rig.py")
GUEST_BUILDER = os.path.join(REPO, "tools", "guest-image", "build.py")


def _load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rig_module = _load(RIG, "flotilla_rig")


def _free_port_block(count: int = 4) -> int:
    """A base port with ``count`` free ports after it (other engineers may
    run rigs on this machine at the same time)."""
    for base in range(17000, 18000, 16):
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block for the rig")


@pytest.fixture(scope="session")
def rig(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rig"))
    port = _free_port_block()
    proc = subprocess.run([sys.executable, RIG, "start", "1", "--base-port",
                           str(port), "--root", root], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        subprocess.run([sys.executable, RIG, "stop", "--root", root])
        pytest.fail("the rig could not start (rc %s):\n%s\n%s"
                    % (proc.returncode, proc.stdout, proc.stderr))
    with open(os.path.join(root, "rig.json")) as f:
        state = json.load(f)
    try:
        yield state
    finally:
        subprocess.run([sys.executable, RIG, "stop", "--root", root],
                       timeout=120)
        assert not os.path.exists(os.path.join(root, "rig.json"))


@pytest.fixture
def rig_host(rig):
    return rig["hosts"][0]


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


@pytest.fixture(scope="session")
def empty_image(tmp_path_factory):
    """A 64 MiB empty qcow2: a guest on it sits in the BIOS, running."""
    path = tmp_path_factory.mktemp("images") / "empty.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path),
                    "64M"], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"id": "empty-%s" % digest[:8], "source": str(path),
            "sha256": digest}


@pytest.fixture(scope="session")
def guest_image():
    """The tiny real Linux guest (built once, cached in ~/.cache)."""
    proc = subprocess.run([sys.executable, GUEST_BUILDER, "--json"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail("cannot build the guest image:\n%s" % proc.stderr)
    meta = json.loads(proc.stdout)
    return meta


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-q", "-c", uri, *args],
                          capture_output=True, text=True, timeout=60)


def domstate(uri: str, uuid: str) -> str:
    return virsh(uri, "domstate", "--reason", uuid).stdout.strip()

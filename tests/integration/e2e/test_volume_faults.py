"""Faults under block volumes on the demo's two-host cloud (issue 11): the
volume service SIGKILLed during a create and during an attach, a compute
agent SIGKILLed during an attach and during a detach, the storage daemon
(qemu-storage-daemon) SIGKILLed under an attached volume. Afterwards no
volume is in a transitional status, no NBD export (asked over QMP) and no
domain disk (``virsh dumpxml``, live and persistent) is orphaned, and a
volume in use is served again (the guest's QEMU reads it).

How each kill lands *during* its operation, on the real code path:

* create: rig host1's libvirtd (the pool's) is SIGSTOPped, so the volume
  service's storage-volume call waits; the kill comes once that request
  sits unread on libvirtd's side of the service's connection (``ss``);
* attach, volume service: the storage daemon is SIGSTOPped, so the export's
  QMP session waits; the kill comes once that connection is queued on the
  daemon's QMP socket;
* attach, agent: the guest's QEMU is SIGSTOPped, so libvirt's device_add
  waits; the kill comes once the export exists and a monitor command sits
  unread on QEMU's side;
* detach, agent: the guest is paused (``virsh suspend``), so it cannot
  let go; the kill comes once the disk left the persistent definition (the
  agent's first step) while it waits for the device-removed event.

The conductor runs here with ``[rpc] call_timeout = 20`` and ``[volume]
detach_timeout = 10`` (an extra config file) so that its calls to a killed
service give up in seconds rather than a minute.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess

import pytest

from tests.fixtures.rig import virsh
from tests.fixtures.waiting import wait_for_fresh_status
from tests.integration.e2e.test_snapshots import (  # noqa: F401 - fixtures
    _delete,
    _host_of,
    _rig_host,
    _wait,
    cli,
    guest,
)
from tests.integration.e2e.test_volumes import _console, _exports

TRANSITIONAL = {"creating", "reserved", "attaching", "detaching", "deleting", "extending"}


# --- processes -------------------------------------------------------------------------

def _log_count(cloud, name: str, text: str) -> int:
    log = pathlib.Path(cloud.logs) / ("%s.log" % name.replace("@", "-"))
    return log.read_text(errors="replace").count(text) if log.exists() else 0


def _kill(cloud, name: str) -> None:
    pid = cloud.state["pids"].pop(name)
    cloud._save()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _start(cloud, name: str, *configs: str) -> None:
    """Start ``name`` and wait until it consumes RPC again."""
    topic = {"flotilla-conductor": "conductor",
             "flotilla-volume": "volume.%s" % cloud.state["volume_host"]}.get(
        name, "compute.%s" % name.partition("@")[2])
    marker = "RPC server %s consuming" % topic
    started = _log_count(cloud, name, marker)
    if name.startswith("flotilla-compute@"):
        cloud.start_compute(name.partition("@")[2])
    else:
        cloud._spawn(name, cloud.state["config"], cloud.state["controller_config"], *configs)
    _wait(lambda: _log_count(cloud, name, marker) > started, 120, name + " serving")


def _restart_volume(cloud) -> None:
    _start(cloud, "flotilla-volume", cloud.state["volume_config"])


def _qsd_pid(cloud) -> int:
    path = pathlib.Path(cloud.root) / "state" / "volume-run" / "qsd.pid"
    return int(path.read_text().strip())


def _qemu_pid(server_id: str) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = pathlib.Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and server_id.encode() in cmdline:
            return int(entry)
    raise AssertionError("no QEMU process of %s" % server_id)


def _ss(*args: str) -> list[str]:
    return subprocess.run(["ss", "-H", *args], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _pending_unix(pid: int) -> bool:
    """Whether a UNIX socket of process ``pid`` holds bytes it has not read
    (a listening socket: a connection it has not accepted)."""
    return any(int(line.split()[2]) > 0 for line in _ss("-xap")
               if "pid=%d," % pid in line)


def _pending_at_libvirtd(cloud, host: str, client_pid: int) -> bool:
    """Whether rig ``host``'s libvirtd has an unread request on a
    connection of process ``client_pid``."""
    port = _rig_host(cloud, host)["port"]
    ours = set()
    for line in _ss("-tnp", "state", "established", "dst", "127.0.0.1:%d" % port):
        if "pid=%d," % client_pid in line:
            ours.add(line.split()[2].rpartition(":")[2])      # our local port
    for line in _ss("-tn", "state", "established", "src", "127.0.0.1:%d" % port):
        cols = line.split()
        if cols[3].rpartition(":")[2] in ours and int(cols[0]) > 0:
            return True
    return False


# --- what must hold afterwards -------------------------------------------------------

def _domain_volumes(cloud, host: str, server_id: str) -> set[str]:
    uri = _rig_host(cloud, host)["uri"]
    xml = virsh(uri, "dumpxml", server_id).stdout + \
        virsh(uri, "dumpxml", "--inactive", server_id).stdout
    return {part.split("'")[0].split('"')[0] for part in xml.split("ua-")[1:]}


def _settled(walkthrough, volume_id: str, timeout: float = 120):
    storage = walkthrough.tenant.block_storage
    return _wait(lambda: (v := storage.get_volume(volume_id)).status not in TRANSITIONAL
                 and v, timeout, "volume %s out of its transitional status" % volume_id)


def _assert_clean(cloud, walkthrough, server) -> None:
    """Every export and every domain disk belongs to an in-use volume."""
    host, server_id = server
    volumes = list(walkthrough.tenant.block_storage.volumes())
    assert not [v.id for v in volumes if v.status in TRANSITIONAL]
    in_use = {v.id for v in volumes if v.status == "in-use"}
    assert {e[1:] for e in _exports(cloud)} == {v.replace("-", "") for v in in_use}
    assert _wait(lambda: _domain_volumes(cloud, host, server_id) == in_use, 60,
                 "the domain's disks are the in-use volumes'")


def _qemu_log(cloud, host: str, server_id: str) -> pathlib.Path:
    """The guest's QEMU log on its rig host (QEMU's stdout, where HMP's
    qemu-io prints)."""
    logs = pathlib.Path(_rig_host(cloud, host)["dir"]) / "log" / "qemu"
    return next(p for p in logs.glob("*.log") if server_id in p.read_text(errors="replace"))


def _guest_reads(cloud, host: str, server_id: str, volume_id: str) -> str:
    """The guest's QEMU reads the volume's first 512 bytes through its disk's
    block node (its NBD client, the connection the guest uses): what
    qemu-io printed, '' when the read failed."""
    uri = _rig_host(cloud, host)["uri"]
    blocks = json.loads(virsh(uri, "qemu-monitor-command", server_id,
                              '{"execute": "query-block"}').stdout)["return"]
    node = next(b["inserted"]["node-name"] for b in blocks
                if "ua-%s" % volume_id in b.get("qdev", "") and "inserted" in b)
    log = _qemu_log(cloud, host, server_id)
    start = log.stat().st_size
    proc = virsh(uri, "qemu-monitor-command", server_id, "--hmp",
                 'qemu-io %s "read -v 0 512"' % node)
    assert proc.returncode == 0, proc.stderr
    printed = _wait(lambda: log.read_bytes()[start:].decode(errors="replace"), 10,
                    "qemu-io's output")
    return printed if "read 512/512 bytes" in printed else ""


# --- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fault_cloud(cloud):
    """The cloud with its conductor restarted on short RPC deadlines."""
    extra = pathlib.Path(cloud.root) / "etc" / "faults.conf"
    extra.write_text("[rpc]\ncall_timeout = 20\n[volume]\ndetach_timeout = 10\n")
    cloud.stop_daemon("flotilla-conductor")
    _start(cloud, "flotilla-conductor", str(extra))
    return cloud


@pytest.fixture(scope="module")
def server(fault_cloud, walkthrough, guest, cli):  # noqa: F811
    """(host, id) of a booted server."""
    made = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
               "--nic", "none", "--wait", "vol-faults")
    try:
        host = _host_of(walkthrough, made["id"])
        _wait(lambda: "FLOTILLA-PARTITIONS" in _console(fault_cloud, host, made["id"]),
              120, "guest boot")
        yield host, made["id"]
    finally:
        _delete(walkthrough, [made["id"]])


@pytest.fixture
def volume(fault_cloud, walkthrough):
    storage = walkthrough.tenant.block_storage
    made = storage.create_volume(size=1, name="fault")
    wait_for_fresh_status(storage, made, "available", wait=60)
    yield made
    made = storage.get_volume(made.id)
    if made.attachments:
        walkthrough.tenant.compute.delete_volume_attachment(
            made.attachments[0]["server_id"], made.id)
        _wait(lambda: storage.get_volume(made.id).status in ("available", "error"), 90,
              "the volume detached")
    storage.delete_volume(made, ignore_missing=True)
    storage.wait_for_delete(made, wait=60)


# --- the faults ----------------------------------------------------------------------

def test_volume_service_killed_during_create(fault_cloud, walkthrough, server):
    cloud, storage = fault_cloud, walkthrough.tenant.block_storage
    libvirtd = _rig_host(cloud, cloud.state["volume_host"])["libvirtd_pid"]
    service = cloud.state["pids"]["flotilla-volume"]
    os.kill(libvirtd, signal.SIGSTOP)
    try:
        made = storage.create_volume(size=1, name="create-fault")
        _wait(lambda: _pending_at_libvirtd(cloud, cloud.state["volume_host"], service), 30,
              "the create's request at libvirtd")
        _kill(cloud, "flotilla-volume")
    finally:
        os.kill(libvirtd, signal.SIGCONT)
    assert storage.get_volume(made.id).status == "creating"
    _restart_volume(cloud)
    assert _settled(walkthrough, made.id, 30).status == "error"
    pool_file = pathlib.Path(cloud.root) / "state" / "volumes" / ("volume-%s" % made.id)
    assert not pool_file.exists()          # the half-made file went
    storage.delete_volume(made)
    storage.wait_for_delete(made, wait=60)
    _assert_clean(cloud, walkthrough, server)


def test_volume_service_killed_during_attach(fault_cloud, walkthrough, server, volume):
    cloud = fault_cloud
    host, server_id = server
    qsd = _qsd_pid(cloud)
    os.kill(qsd, signal.SIGSTOP)
    try:
        walkthrough.tenant.compute.create_volume_attachment(server_id, volume_id=volume.id)
        _wait(lambda: _pending_unix(qsd), 30, "the export's QMP connection queued")
        _kill(cloud, "flotilla-volume")
    finally:
        os.kill(qsd, signal.SIGCONT)
    _restart_volume(cloud)
    # The conductor's export call times out; the flow reverts. (Should the
    # service's own daemon check have been the queued connection and the
    # export not yet taken, the new service does it: in-use, also clean.)
    assert _settled(walkthrough, volume.id, 90).status in ("available", "in-use")
    _assert_clean(cloud, walkthrough, server)


def test_agent_killed_during_attach(fault_cloud, walkthrough, server, volume):
    cloud = fault_cloud
    host, server_id = server
    qemu = _qemu_pid(server_id)
    os.kill(qemu, signal.SIGSTOP)
    try:
        walkthrough.tenant.compute.create_volume_attachment(server_id, volume_id=volume.id)
        _wait(lambda: _exports(cloud), 30, "the export")
        _wait(lambda: _pending_unix(qemu), 30, "libvirt's device_add at QEMU")
        _kill(cloud, "flotilla-compute@%s" % host)
    finally:
        os.kill(qemu, signal.SIGCONT)
    _start(cloud, "flotilla-compute@%s" % host)
    # The attach call times out; the revert detaches the disk again.
    assert _settled(walkthrough, volume.id, 120).status in ("available", "in-use")
    _assert_clean(cloud, walkthrough, server)


def test_agent_killed_during_detach(fault_cloud, walkthrough, server, volume):
    cloud = fault_cloud
    host, server_id = server
    storage, uri = walkthrough.tenant.block_storage, _rig_host(cloud, host)["uri"]
    walkthrough.tenant.compute.create_volume_attachment(server_id, volume_id=volume.id)
    wait_for_fresh_status(storage, volume, "in-use", wait=60)
    assert virsh(uri, "suspend", server_id).returncode == 0
    try:
        walkthrough.tenant.compute.delete_volume_attachment(server_id, volume.id)
        _wait(lambda: volume.id not in virsh(uri, "dumpxml", "--inactive", server_id).stdout,
              30, "the disk out of the persistent definition")
        _kill(cloud, "flotilla-compute@%s" % host)
    finally:
        assert virsh(uri, "resume", server_id).returncode == 0
    _start(cloud, "flotilla-compute@%s" % host)
    # The detach call times out; asked again, the agent says the disk is gone.
    settled = _settled(walkthrough, volume.id, 120)
    assert settled.status == "available", settled
    _assert_clean(cloud, walkthrough, server)


def test_storage_daemon_killed_under_an_attached_volume(fault_cloud, walkthrough, server,
                                                        volume):
    cloud = fault_cloud
    host, server_id = server
    walkthrough.tenant.compute.create_volume_attachment(server_id, volume_id=volume.id)
    wait_for_fresh_status(walkthrough.tenant.block_storage, volume, "in-use", wait=60)
    _wait(lambda: "FLOTILLA-DISK-MARKER vdb written %s" % server_id
          in _console(cloud, host, server_id), 60, "the guest's marker")
    assert "FLOTILLA" in _guest_reads(cloud, host, server_id, volume.id)
    old = _qsd_pid(cloud)
    os.kill(old, signal.SIGKILL)

    # The volume service starts a new daemon and exports the volume again.
    def replaced() -> bool:
        try:
            return _qsd_pid(cloud) != old and bool(_exports(cloud))
        except (OSError, ValueError):
            return False
    _wait(replaced, 60, "a new storage daemon exporting")
    # The guest's NBD client connects again on its next request (a request
    # made while no daemon served fails; the first after may, too).
    read = _wait(lambda: _guest_reads(cloud, host, server_id, volume.id), 30,
                 "a read by the guest's QEMU")
    assert "FLOTILLA" in read, read
    assert walkthrough.tenant.block_storage.get_volume(volume.id).status == "in-use"
    _assert_clean(cloud, walkthrough, server)

"""The real qemu-storage-daemon behind a volume service: exports made over
QMP and read over NBD, and a volume service that starts after its daemon
was killed starts a new one and exports the attached volumes again from the
database (no rig needed: the daemon and the files are local)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid as uuidlib

import pytest

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import schema
from flotilla.db import volumes as vdb
from tests.fixtures.ports import free_port
from tests.functional.volume.test_volume_flows import MemoryBackend
from volume.manager import VolumeManager
from volume.nbd import StorageDaemon, export_id


class FileBackend(MemoryBackend):
    def __init__(self, directory) -> None:
        super().__init__()
        self.directory = directory

    def create(self, volume_id: str, size_gb: int) -> str:
        path = os.path.join(self.directory, volume_id)
        with open(path, "wb") as f:
            f.truncate(16 << 20)      # small: the test only writes a marker
        self.volumes[volume_id] = size_gb
        return path

    def path(self, volume_id: str) -> str | None:
        path = os.path.join(self.directory, volume_id)
        return path if os.path.exists(path) else None


@pytest.fixture
def volume_host(conf, tmp_path):
    port = free_port()
    conf.set_override("run_path", str(tmp_path / "run"), group="volume")
    conf.set_override("nbd_port", port, group="volume")
    db.configure(conf)
    schema.db_sync(conf)
    daemon = StorageDaemon(conf)
    yield daemon, FileBackend(str(tmp_path)), port
    if daemon.running():
        for row in vdb.volume_get_all():
            daemon.unexport(row.id)
        assert daemon.stop_if_idle()
    db.dispose()


def _attached_volume(backend, host: str) -> str:
    uuid = str(uuidlib.uuid4())
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1", "user_id": "u1",
                        "flavor": {"memory_mb": 64, "vcpus": 1, "root_gb": 1},
                        "vm_state": st.ACTIVE, "host": "host1"})
    row = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_IN_USE, "host": host,
                             "project_id": "p1"}, {"volumes": -1, "gigabytes": -1})
    vdb.volume_update(row.id, {"path": backend.create(row.id, 1)})
    att = vdb.attachment_create(row.id, uuid, "host1")
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb"})
    return row.id


def _nbd(port: int, volume_id: str, *command: str, ok: bool = True) -> str:
    proc = subprocess.run(["qemu-io", "-f", "raw", *command,
                           "nbd://127.0.0.1:%d/%s" % (port, volume_id)],
                          capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_a_killed_daemon_is_replaced_and_the_exports_restored(conf, volume_host):
    daemon, backend, port = volume_host
    attached = _attached_volume(backend, "vol1")
    free = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_AVAILABLE, "host": "vol1",
                              "project_id": "p1"}, {"volumes": -1, "gigabytes": -1}).id
    backend.create(free, 1)
    VolumeManager(conf, host="vol1", backend=backend, daemon=daemon).init_host()
    # Only the attached volume is exported; a client writes through it.
    assert daemon.exports() == {export_id(attached)}
    _nbd(port, attached, "-c", "write -P 0x5a 0 4k")

    _kill_daemon(conf, daemon)

    # The service starts again: a new daemon, the same export, the same data.
    VolumeManager(conf, host="vol1", backend=backend, daemon=StorageDaemon(conf)).init_host()
    assert daemon.exports() == {export_id(attached)}
    assert "read 4096/4096" in _nbd(port, attached, "-c", "read -P 0x5a 0 4k")


def _kill_daemon(conf, daemon) -> None:
    """SIGKILL the storage daemon; returns once it no longer answers."""
    with open(os.path.join(conf.volume.run_path, "qsd.pid")) as f:
        os.kill(int(f.read()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while daemon.running():
        assert time.monotonic() < deadline, "the killed daemon still answers"
        time.sleep(0.05)


def test_the_watch_replaces_a_killed_daemon_and_start_removes_orphan_exports(conf,
                                                                             volume_host):
    """issue 11 faults: the volume service's periodic watch starts a new
    daemon under a running service; a start removes an export whose volume
    has no attachment (left by an attach reverted while it was down)."""
    from volume import recovery
    daemon, backend, port = volume_host
    attached = _attached_volume(backend, "vol1")
    orphan = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_AVAILABLE, "host": "vol1",
                                "project_id": "p1"}, {"volumes": -1, "gigabytes": -1}).id
    daemon.ensure_running()
    daemon.export(orphan, backend.create(orphan, 1))
    manager = VolumeManager(conf, host="vol1", backend=backend, daemon=daemon)
    manager.init_host()
    assert daemon.exports() == {export_id(attached)}
    _nbd(port, attached, "-c", "write -P 0x6b 0 4k")
    assert recovery.watch_storage_daemon(manager) is False

    _kill_daemon(conf, daemon)
    assert recovery.watch_storage_daemon(manager) is True
    assert daemon.exports() == {export_id(attached)}
    assert "read 4096/4096" in _nbd(port, attached, "-c", "read -P 0x6b 0 4k")


def test_a_stopped_daemon_is_not_replaced(conf, volume_host):
    """A daemon that lives but does not answer (here SIGSTOPped) keeps its
    socket and port: ensure_running refuses instead of starting a second."""
    daemon, _backend, _port = volume_host
    assert daemon.ensure_running() is True
    assert daemon.ensure_running() is False
    with open(os.path.join(conf.volume.run_path, "qsd.pid")) as f:
        pid = int(f.read())
    daemon.qmp_timeout = 1
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(RuntimeError, match="lives but does not answer"):
            daemon.ensure_running()
        assert os.path.exists(daemon.socket_path)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert daemon.running()


def test_a_daemon_that_cannot_bind_its_port_fails_the_start_saying_why(volume_host):
    """The start's error carries what the daemon said, not only where its
    log is: a CI run once lost the reason with the log's directory."""
    daemon, _backend, port = volume_host
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(RuntimeError, match=r"exited with 1: .*[Aa]ddress already in use"):
            daemon.ensure_running()
    assert not daemon.running()


def test_a_daemon_started_again_by_an_export_serves_the_other_volumes_too(conf,
                                                                         volume_host):
    """Whoever finds the daemon gone (here an attach's export, before the
    watch's next turn) starts it again, and every attached volume of the
    host is exported again, not only the one asked for."""
    daemon, backend, port = volume_host
    attached = _attached_volume(backend, "vol1")
    manager = VolumeManager(conf, host="vol1", backend=backend, daemon=daemon)
    manager.init_host()
    _nbd(port, attached, "-c", "write -P 0x7c 0 4k")
    _kill_daemon(conf, daemon)
    other = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_AVAILABLE, "host": "vol1",
                               "project_id": "p1"}, {"volumes": -1, "gigabytes": -1}).id
    daemon.export(other, backend.create(other, 1))
    assert daemon.exports() == {export_id(attached), export_id(other)}
    assert "read 4096/4096" in _nbd(port, attached, "-c", "read -P 0x7c 0 4k")


def test_the_watch_never_waits_for_a_copy_job(conf, volume_host):
    """The watch runs where the heartbeat does: while a call holds the
    daemon (a volume snapshot's copy may for minutes) it returns at once."""
    from volume import recovery
    daemon, backend, _port = volume_host
    manager = VolumeManager(conf, host="vol1", backend=backend, daemon=daemon)
    manager.init_host()
    held = threading.Event()
    release = threading.Event()
    outcome = []

    def copy_job():     # what backup() does for the length of its job
        with daemon._lock:
            held.set()
            outcome.append("released" if release.wait(30) else "the watch waited")
    worker = threading.Thread(target=copy_job)
    worker.start()
    try:
        assert held.wait(5)
        assert recovery.watch_storage_daemon(manager) is False
    finally:
        release.set()
        worker.join()
    assert outcome == ["released"]


def test_a_grow_that_fails_after_removing_the_export_serves_the_volume_again(
        volume_host, monkeypatch):
    """The export goes before the node's resize: a resize that then fails
    must not leave the guest's disk without an export (its guest would
    stay paused on I/O errors)."""
    from volume.qmp import QMPError
    daemon, backend, port = volume_host
    vid = str(uuidlib.uuid4())
    path = backend.create(vid, 1)
    daemon.export(vid, path)
    _nbd(port, vid, "-c", "write -P 0x5a 0 4k")

    def export_removed_then_resize_refused(qmp, volume_id, size_bytes, timeout):
        qmp.execute("block-export-del", id=export_id(volume_id), mode="hard")
        raise QMPError("block_resize", {"class": "GenericError", "desc": "refused"})

    monkeypatch.setattr(StorageDaemon, "_regrow", staticmethod(
        export_removed_then_resize_refused))
    with pytest.raises(QMPError):
        daemon.grow_export(vid, path, 32 << 20)
    assert export_id(vid) in daemon.exports()
    assert "read 4096/4096" in _nbd(port, vid, "-c", "read -P 0x5a 0 4k")
    daemon.unexport(vid)


def test_a_read_only_volume_is_exported_read_only_and_stays_so(conf, volume_host):
    """A read-only volume's export refuses writes, whatever the client asks
    (an agent older than RPC 1.13 would plug it writable): when exported for
    an attach, restored after the daemon died, and served again grown."""
    daemon, backend, port = volume_host
    ro = _attached_volume(backend, "vol1")
    rw = _attached_volume(backend, "vol1")
    with open(vdb.volume_get(ro).path, "r+b") as f:
        f.write(b"\x5a" * 4096)
    vdb.volume_update(ro, {"readonly": True})
    manager = VolumeManager(conf, host="vol1", backend=backend, daemon=daemon)

    def refuses_writes() -> bool:
        out = _nbd(port, ro, "-c", "write -P 0x77 0 4k", ok=False)
        assert "read 4096/4096" in _nbd(port, ro, "-r", "-c", "read -P 0x5a 0 4k")
        # QEMU's client refuses to open a read-only export for writing.
        return "wrote 4096/4096" not in out and "Permission denied" in out

    assert manager.export_volume(None, ro)["read_only"] is True
    assert refuses_writes()
    _nbd(port, rw, "-c", "write -P 0x5a 0 4k")       # not every export: rw writes

    _kill_daemon(conf, daemon)
    assert set(VolumeManager(conf, host="vol1", backend=backend,
                             daemon=StorageDaemon(conf)).restore_exports()) == {ro, rw}
    assert refuses_writes()
    assert "wrote 4096/4096" in _nbd(port, rw, "-c", "write -P 0x5a 0 4k")

    vdb.volume_update(ro, {"status": st.VOLUME_EXTENDING, "size_gb": 2})
    manager.extend_volume_online(None, ro, 2)
    assert refuses_writes()
    with open(vdb.volume_get(ro).path, "rb") as f:
        assert f.read(4096) == b"\x5a" * 4096

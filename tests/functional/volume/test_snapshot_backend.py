"""The volume service's side of snapshots and volumes from a source, on
the real qemu-storage-daemon and qemu-img with files in a temporary
directory (no rig: the libvirt pool's copy is exercised on the rig, in
tests/integration/e2e/test_volume_snapshots.py).

* a snapshot is the volume as it was: written later through the NBD
  export, the volume changes and the snapshot does not; a volume nobody
  exports is copied through a temporary node that goes afterwards;
* a volume from a snapshot holds the snapshot's bytes;
* an image becomes a raw volume; a qcow2 naming a backing file or an
  external data file is refused before anything is written, the volume is
  in error with the reason and no file is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid as uuidlib

import pytest

from flotilla import states as st
from flotilla.db import images as images_db
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from tests.functional.volume.test_storage_daemon import (  # noqa: F401 - fixture
    FileBackend,
    _nbd,
    volume_host,
)
from volume.manager import VolumeManager
from volume.nbd import node_name

MIB = 1 << 20
QUOTA = {"volumes": -1, "gigabytes": -1, "snapshots": -1}


class SnapshotFileBackend(FileBackend):
    """FileBackend with snapshot files beside the volumes (16 MiB each)."""

    def create_snapshot_file(self, snapshot_id: str, size_gb: int) -> str:
        path = os.path.join(self.directory, "snapshot-" + snapshot_id)
        with open(path, "wb") as f:
            f.truncate(16 * MIB)
        return path

    def snapshot_path(self, snapshot_id: str) -> str | None:
        path = os.path.join(self.directory, "snapshot-" + snapshot_id)
        return path if os.path.exists(path) else None

    def delete_snapshot(self, snapshot_id: str) -> None:
        path = os.path.join(self.directory, "snapshot-" + snapshot_id)
        if os.path.exists(path):
            os.unlink(path)

    def create_from_snapshot(self, volume_id: str, snapshot_id: str, size_gb: int) -> str:
        path = os.path.join(self.directory, volume_id)
        shutil.copyfile(self.snapshot_path(snapshot_id), path)
        self.volumes[volume_id] = size_gb
        return path

    def delete(self, volume_id: str) -> None:
        super().delete(volume_id)
        path = os.path.join(self.directory, volume_id)
        if os.path.exists(path):
            os.unlink(path)


def _read(path: str, length: int, offset: int = 0) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _volume(backend, status=st.VOLUME_AVAILABLE, **values) -> str:
    row = vdb.volume_create({"size_gb": 1, "status": status, "host": "vol1",
                             "project_id": "p1", **values}, QUOTA)
    if status != st.VOLUME_CREATING:
        vdb.volume_update(row.id, {"path": backend.create(row.id, 1)})
    return row.id


def _snapshot(volume_id: str) -> str:
    return sdb.snapshot_create({"volume_id": volume_id, "status": st.SNAPSHOT_CREATING},
                               QUOTA, st.SNAPSHOT_VOLUME_STATUSES).id


@pytest.fixture
def manager(conf, volume_host):  # noqa: F811
    daemon, _, port = volume_host
    backend = SnapshotFileBackend(os.path.dirname(conf.volume.run_path))
    manager = VolumeManager(conf, host="vol1", backend=backend, daemon=daemon)
    manager.init_host()
    manager.port = port
    return manager


def test_a_snapshot_of_an_exported_volume_is_the_volume_as_it_was(manager):
    backend, daemon = manager.backend, manager.daemon
    vid = _volume(backend, st.VOLUME_IN_USE)
    path = vdb.volume_get(vid).path
    daemon.export(vid, path)
    _nbd(manager.port, vid, "-c", "write -P 0x5a 0 64k")

    sid = _snapshot(vid)
    manager.create_snapshot(None, sid)
    snap = sdb.snapshot_get(sid)
    assert snap.status == st.SNAPSHOT_AVAILABLE and snap.path == backend.snapshot_path(sid)
    assert _read(snap.path, 64 * 1024) == b"\x5a" * 64 * 1024

    # Written afterwards through the export: the volume changes, the copy not.
    _nbd(manager.port, vid, "-c", "write -P 0xa5 0 64k")
    assert _read(path, 4) == b"\xa5" * 4
    assert _read(snap.path, 64 * 1024) == b"\x5a" * 64 * 1024
    assert daemon.exports() == {"e" + vid.replace("-", "")}
    daemon.unexport(vid)

    # A volume from the snapshot holds the snapshot's bytes.
    new = _volume(backend, st.VOLUME_CREATING, snapshot_id=sid)
    manager.create_volume(None, new)
    row = vdb.volume_get(new)
    assert row.status == st.VOLUME_AVAILABLE and row.bootable is False
    assert _read(row.path, 64 * 1024) == b"\x5a" * 64 * 1024

    # Deleted: the file goes, the row is soft-deleted.
    sdb.snapshot_update(sid, {"status": st.SNAPSHOT_DELETING}, st.SNAPSHOT_AVAILABLE)
    manager.delete_snapshot(None, sid)
    assert backend.snapshot_path(sid) is None
    with pytest.raises(sdb.SnapshotNotFound):
        sdb.snapshot_get(sid)


def test_a_volume_nobody_exports_is_copied_through_a_temporary_node(manager):
    backend, daemon = manager.backend, manager.daemon
    vid = _volume(backend)
    with open(vdb.volume_get(vid).path, "r+b") as f:
        f.write(b"FLOTILLA" * 512)
    sid = _snapshot(vid)
    manager.create_snapshot(None, sid)
    assert sdb.snapshot_get(sid).status == st.SNAPSHOT_AVAILABLE
    assert _read(backend.snapshot_path(sid), 4096) == b"FLOTILLA" * 512
    # The temporary read-only node is gone: the volume can be exported
    # (writable) at once.
    qmp = daemon._session()
    try:
        nodes = {n.get("node-name") for n in qmp.execute("query-named-block-nodes",
                                                         flat=True)}
    finally:
        qmp.close()
    assert node_name(vid) not in nodes and daemon.exports() == set()
    daemon.export(vid, vdb.volume_get(vid).path)
    _nbd(manager.port, vid, "-c", "write -P 0x11 0 4k")
    daemon.unexport(vid)


def test_a_snapshot_whose_volume_file_is_gone_ends_in_error(manager):
    vid = _volume(manager.backend)
    os.unlink(vdb.volume_get(vid).path)
    vdb.volume_update(vid, {"path": None})
    manager.backend.volumes.pop(vid)
    sid = _snapshot(vid)
    manager.create_snapshot(None, sid)
    snap = sdb.snapshot_get(sid)
    assert snap.status == st.SNAPSHOT_ERROR and "create failed" in snap.status_reason
    assert manager.backend.snapshot_path(sid) is None


def _image(path: str, disk_format: str) -> str:
    image_id = str(uuidlib.uuid4())
    images_db.image_create({"id": image_id, "name": "img", "status": "active",
                            "disk_format": disk_format, "container_format": "bare",
                            "visibility": "public", "owner": "p1", "location": path,
                            "size": os.path.getsize(path)})
    return image_id


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def test_an_image_becomes_a_raw_bootable_volume(manager, tmp_path):
    image = str(tmp_path / "good.qcow2")
    _qemu_img("create", "-f", "qcow2", image, "8M")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x42 1M 64k", image],
                   check=True, capture_output=True, timeout=60)
    new = _volume(manager.backend, st.VOLUME_CREATING, image_id=_image(image, "qcow2"))
    manager.create_volume(None, new)
    row = vdb.volume_get(new)
    assert (row.status, row.bootable) == (st.VOLUME_AVAILABLE, True), row.status_reason
    assert _read(row.path, 64 * 1024, MIB) == b"\x42" * 64 * 1024
    assert _read(row.path, 4096) == b"\0" * 4096


@pytest.mark.parametrize("make", ["backing", "data_file"])
def test_a_qcow2_reaching_outside_itself_is_refused(manager, tmp_path, make):
    image = str(tmp_path / "hostile.qcow2")
    secret = tmp_path / "secret"
    secret.write_bytes(b"SECRET" * 1000)
    if make == "backing":
        _qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", str(secret), image, "8M")
    else:
        _qemu_img("create", "-f", "qcow2", "-o", "data_file=%s,data_file_raw=on"
                  % secret, image, "8M")
    new = _volume(manager.backend, st.VOLUME_CREATING, image_id=_image(image, "qcow2"))
    manager.create_volume(None, new)
    row = vdb.volume_get(new)
    assert row.status == st.VOLUME_ERROR
    assert "refused" in row.status_reason, row.status_reason
    assert manager.backend.path(new) is None      # the half-made file is gone
    if make == "backing":
        assert secret.read_bytes() == b"SECRET" * 1000


def test_an_image_declared_raw_but_qcow2_is_refused(manager, tmp_path):
    image = str(tmp_path / "liar.img")
    _qemu_img("create", "-f", "qcow2", image, "8M")
    new = _volume(manager.backend, st.VOLUME_CREATING, image_id=_image(image, "raw"))
    manager.create_volume(None, new)
    assert vdb.volume_get(new).status == st.VOLUME_ERROR

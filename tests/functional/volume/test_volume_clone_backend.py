"""The volume service's side of volume clones (RPC 1.4), on the real
qemu-storage-daemon with files in a temporary directory (no rig: the
libvirt pool is exercised in tests/integration/e2e/test_volume_snapshots.py).

* a clone of a volume a client writes through its NBD export is the
  volume as it was when the copy ran (later writes change the source, not
  the clone); a volume nobody exports is copied through a temporary node;
* the clone is a file of its own, grown to its size (the new bytes zeros);
* a failure (the source's file gone, the source grown past the clone, the
  source being deleted, the daemon refusing the copy) ends the clone in
  ``error`` with the reason and leaves no file.
"""

from __future__ import annotations

import os

import pytest

from flotilla import states as st
from flotilla.db import volumes as vdb
from tests.functional.volume.test_snapshot_backend import (
    QUOTA,
    SnapshotFileBackend,
    _read,
)
from tests.functional.volume.test_storage_daemon import (  # noqa: F401 - fixture
    _nbd,
    volume_host,
)
from volume.manager import VolumeManager
from volume.nbd import export_id, node_name

MIB = 1 << 20
#: What a "GiB" of these test volumes is on disk (small files, real sizes).
UNIT = 4 * MIB


class SizedFileBackend(SnapshotFileBackend):
    """Files of ``size_gb`` * UNIT bytes, so sizes can be checked."""

    def create(self, volume_id: str, size_gb: int) -> str:
        path = os.path.join(self.directory, volume_id)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.truncate(size_gb * UNIT)
        self.volumes[volume_id] = size_gb
        return path

    def extend(self, volume_id: str, size_gb: int) -> None:
        super().extend(volume_id, size_gb)
        path = os.path.join(self.directory, volume_id)
        if os.path.getsize(path) < size_gb * UNIT:
            os.truncate(path, size_gb * UNIT)


@pytest.fixture
def manager(conf, volume_host):  # noqa: F811
    daemon, _, port = volume_host
    backend = SizedFileBackend(os.path.dirname(conf.volume.run_path))
    manager = VolumeManager(conf, host="vol1", backend=backend, daemon=daemon)
    manager.init_host()
    manager.port = port
    return manager


def _source(backend, status=st.VOLUME_AVAILABLE, size_gb: int = 1) -> str:
    row = vdb.volume_create({"size_gb": size_gb, "status": status, "host": "vol1",
                             "project_id": "p1"}, QUOTA)
    vdb.volume_update(row.id, {"path": backend.create(row.id, size_gb)})
    return row.id


def _clone(manager, source_id: str, size_gb: int = 1):
    row = vdb.volume_create({"size_gb": size_gb, "status": st.VOLUME_CREATING,
                             "host": "vol1", "project_id": "p1",
                             "source_volid": source_id}, QUOTA)
    manager.create_volume(None, row.id)
    return vdb.volume_get(row.id)


def test_a_clone_of_an_exported_volume_is_the_volume_as_it_was(manager):
    backend, daemon = manager.backend, manager.daemon
    vid = _source(backend, st.VOLUME_IN_USE)
    path = vdb.volume_get(vid).path
    daemon.export(vid, path)
    _nbd(manager.port, vid, "-c", "write -P 0x5a 0 64k")

    clone = _clone(manager, vid, size_gb=2)
    assert (clone.status, clone.status_reason) == (st.VOLUME_AVAILABLE, None)
    assert clone.path == backend.path(clone.id) and clone.path != path
    assert _read(clone.path, 64 * 1024) == b"\x5a" * 64 * 1024
    # Its own file, grown to its size: the bytes past the source's are zeros.
    assert os.path.getsize(clone.path) == 2 * UNIT
    assert _read(clone.path, 4096, UNIT) == b"\0" * 4096

    # Written afterwards through the export: the source changes, the clone not.
    _nbd(manager.port, vid, "-c", "write -P 0xa5 0 64k")
    assert _read(path, 4) == b"\xa5" * 4
    assert _read(clone.path, 64 * 1024) == b"\x5a" * 64 * 1024
    # The source is still served, and only it.
    assert daemon.exports() == {export_id(vid)}
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE
    daemon.unexport(vid)


def test_a_volume_nobody_exports_is_cloned_through_a_temporary_node(manager):
    backend, daemon = manager.backend, manager.daemon
    vid = _source(backend)
    with open(vdb.volume_get(vid).path, "r+b") as f:
        f.write(b"FLOTILLA" * 512)
    clone = _clone(manager, vid)
    assert clone.status == st.VOLUME_AVAILABLE, clone.status_reason
    assert _read(clone.path, 4096) == b"FLOTILLA" * 512
    assert os.path.getsize(clone.path) == UNIT
    qmp = daemon._session()
    try:
        nodes = {n.get("node-name") for n in qmp.execute("query-named-block-nodes",
                                                         flat=True)}
    finally:
        qmp.close()
    assert node_name(vid) not in nodes and daemon.exports() == set()
    # The clone is a volume like any other: it can be exported and written.
    daemon.export(clone.id, clone.path)
    _nbd(manager.port, clone.id, "-c", "write -P 0x11 0 4k")
    daemon.unexport(clone.id)
    assert _read(vdb.volume_get(vid).path, 8) == b"FLOTILLA"


def _gone(backend, vid: str) -> None:
    os.unlink(vdb.volume_get(vid).path)
    vdb.volume_update(vid, {"path": None})
    backend.volumes.pop(vid)


def _grown(backend, vid: str) -> None:
    vdb.volume_update(vid, {"size_gb": 2})
    backend.extend(vid, 2)


def _bigger_file(backend, vid: str) -> None:
    # The daemon refuses to copy into a target of another size.
    os.truncate(vdb.volume_get(vid).path, 3 * UNIT)


@pytest.mark.parametrize("spoil, reason", [
    (_gone, "could not be found"),
    (_grown, "more than the clone's"),
    (lambda backend, vid: vdb.volume_update(vid, {"status": st.VOLUME_DELETING}),
     "is deleting"),
    (_bigger_file, "QMPError"),
], ids=["file-gone", "source-grown", "source-deleting", "daemon-refuses"])
def test_a_failed_clone_ends_in_error_and_leaves_no_file(manager, spoil, reason):
    vid = _source(manager.backend)
    spoil(manager.backend, vid)
    clone = _clone(manager, vid)
    assert clone.status == st.VOLUME_ERROR
    assert "create failed" in clone.status_reason and reason in clone.status_reason, \
        clone.status_reason
    assert manager.backend.path(clone.id) is None and clone.path is None
    assert manager.daemon.exports() == set()

"""The volume service's side of ``os-volume_upload_image`` (RPC 1.5) on the
real qemu-storage-daemon: an attached volume a client writes through its
NBD export is read through a point-in-time copy, whose temporary volume
and node go afterwards; the export keeps serving the guest."""

from __future__ import annotations

import hashlib
import os
import uuid as uuidlib

import pytest

from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import volumes as vdb
from tests.functional.volume.test_snapshot_backend import QUOTA
from tests.functional.volume.test_storage_daemon import (  # noqa: F401 - fixture
    _nbd,
    volume_host,
)
from tests.functional.volume.test_volume_upload_api import DownloadBackend
from volume.manager import VolumeManager
from volume.nbd import export_id, node_name


@pytest.fixture
def manager(conf, volume_host, tmp_path):  # noqa: F811
    daemon, _, port = volume_host
    conf.set_override("store_path", str(tmp_path / "images"), group="image")
    (tmp_path / "pool").mkdir()
    manager = VolumeManager(conf, host="vol1", backend=DownloadBackend(str(tmp_path / "pool")),
                            daemon=daemon)
    manager.init_host()
    manager.port = port
    return manager


def _uploading_attached_volume(backend) -> str:
    server = str(uuidlib.uuid4())
    db.instance_create({"uuid": server, "name": "vm", "project_id": "p1", "user_id": "u1",
                        "flavor": {"memory_mb": 64, "vcpus": 1, "root_gb": 1},
                        "vm_state": st.ACTIVE, "host": "host1"})
    row = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_UPLOADING, "host": "vol1",
                             "project_id": "p1"}, QUOTA)
    vdb.volume_update(row.id, {"path": backend.create(row.id, 1)})
    attachment = vdb.attachment_create(row.id, server, "host1")
    vdb.attachment_update(attachment.uuid, {"status": "attached", "device": "vdb"})
    return row.id


def test_an_exported_volume_is_uploaded_through_a_point_in_time_copy(manager):
    backend, daemon = manager.backend, manager.daemon
    vid = _uploading_attached_volume(backend)
    daemon.export(vid, vdb.volume_get(vid).path)
    _nbd(manager.port, vid, "-c", "write -P 0x5a 0 64k")
    image = images_db.image_create({
        "id": str(uuidlib.uuid4()), "name": "img", "owner": "p1", "status": "queued",
        "disk_format": "raw", "container_format": "bare",
        "properties": {"_volume_upload": vid}})

    assert manager.upload_to_image(None, vid, image.id) is None
    image = images_db.image_get(image.id)
    assert image.status == "active"
    with open(image.location, "rb") as f:
        data = f.read()
    with open(vdb.volume_get(vid).path, "rb") as f:
        assert data == f.read()
    assert data[:65536] == b"\x5a" * 65536 and image.size == os.path.getsize(image.location)
    assert image.checksum == hashlib.sha256(data).hexdigest()
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE
    # The temporary copy and its node went; the guest's export stays.
    assert sorted(os.listdir(backend.directory)) == [vid]
    assert daemon.exports() == {export_id(vid)}
    qmp = daemon._session()
    try:
        nodes = {n.get("node-name") for n in qmp.execute("query-named-block-nodes",
                                                         flat=True)}
    finally:
        qmp.close()
    # The copy's target node (see StorageDaemon.backup) is gone; the export's stays.
    assert "t" + vid.replace("-", "")[:30] not in nodes and node_name(vid) in nodes
    _nbd(manager.port, vid, "-c", "write -P 0x11 0 4k")
    daemon.unexport(vid)

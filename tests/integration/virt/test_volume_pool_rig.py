"""The libvirt storage pool volume backend on a rig host's libvirtd
(issue 11): its space as the pool reports it, and a volume's bytes written
and read by stream (virStorageVolUpload / virStorageVolDownload) over the
daemon's connection."""

from __future__ import annotations

import hashlib
import os
import uuid as uuidlib

import pytest

from volume.libvirt_pool import LibvirtPoolBackend, volume_name

GIB = 1024 ** 3
MIB = 1024 ** 2


@pytest.fixture
def backend(conf, rig_host, tmp_path):
    conf.set_override("connection_uri", rig_host["uri"], "volume")
    conf.set_override("pool_name", "flotilla-test-%s" % uuidlib.uuid4().hex[:8], "volume")
    conf.set_override("pool_path", str(tmp_path / "pool"), "volume")
    pool_backend = LibvirtPoolBackend(conf)
    pool_backend.start()
    yield pool_backend
    pool = pool_backend._pool()
    for vol in pool.listAllVolumes(0):
        vol.delete(0)
    pool.destroy()
    pool.undefine()
    pool_backend.stop()


def _chunks(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _small_volume(backend, volume_id: str, capacity: int) -> None:
    """A volume smaller than the 1 GiB create() makes, through the pool."""
    xml = ("<volume><name>%s</name><capacity unit='bytes'>%d</capacity>"
           "<allocation unit='bytes'>0</allocation><target><format type='raw'/>"
           "</target></volume>" % (volume_name(volume_id), capacity))
    backend._pool().createXML(xml, 0)


def test_upload_then_download_by_stream(backend):
    vid = str(uuidlib.uuid4())
    path = backend.create(vid, 1)
    data = os.urandom(3 * MIB + 123)     # not a whole number of chunks
    assert backend.upload(vid, _chunks(data)) == len(data)
    with open(path, "rb") as f:
        assert f.read(len(data)) == data
    assert os.path.getsize(path) == GIB            # the size stays
    # Every byte comes back: the upload, then zeros.
    received, nonzero_after = 0, 0
    head = hashlib.sha256()
    for chunk in backend.download(vid):
        split = max(0, min(len(chunk), len(data) - received))
        head.update(chunk[:split])
        nonzero_after += len(chunk) - split - chunk[split:].count(0)
        received += len(chunk)
    assert received == GIB
    assert head.digest() == hashlib.sha256(data).digest() and nonzero_after == 0


def test_an_upload_larger_than_the_volume_is_refused(backend):
    vid = str(uuidlib.uuid4())
    _small_volume(backend, vid, 2 * MIB)
    with pytest.raises(ValueError, match="more than the 2097152 bytes"):
        backend.upload(vid, _chunks(os.urandom(2 * MIB + 1)))
    # The aborted stream left the daemon usable: a full upload and download.
    data = os.urandom(2 * MIB)
    assert backend.upload(vid, _chunks(data)) == len(data)
    assert hashlib.sha256(b"".join(backend.download(vid))).digest() == \
        hashlib.sha256(data).digest()


def test_a_download_stopped_early_ends_the_transfer(backend):
    vid = str(uuidlib.uuid4())
    _small_volume(backend, vid, 4 * MIB)
    data = os.urandom(4 * MIB)
    backend.upload(vid, _chunks(data))
    reader = backend.download(vid, chunk_size=64 * 1024)
    first = next(reader)
    assert 0 < len(first) <= 64 * 1024 and data.startswith(first)
    reader.close()                        # aborts the stream
    assert b"".join(backend.download(vid)) == data


def test_a_missing_volume_and_the_pool_space(backend):
    with pytest.raises(FileNotFoundError):
        backend.upload(str(uuidlib.uuid4()), [b"x"])
    with pytest.raises(FileNotFoundError):
        list(backend.download(str(uuidlib.uuid4())))
    vid = str(uuidlib.uuid4())
    backend.create(vid, 1)
    before = backend.capacity()
    assert 0 < before.free_bytes <= before.total_bytes
    # What the service's user may still write, not the root-reserved blocks
    # libvirt's "available" includes.
    fs = os.statvfs(backend.pool_path)
    assert before.free_bytes <= fs.f_bavail * fs.f_frsize + 64 * MIB
    assert backend.free_bytes() <= fs.f_bavail * fs.f_frsize + 64 * MIB
    assert before.allocated_bytes < MIB          # sparse: 1 GiB, nothing written
    backend.upload(vid, _chunks(os.urandom(8 * MIB)))
    after = backend.capacity()
    assert after.allocated_bytes >= 8 * MIB
    assert after.total_bytes == before.total_bytes

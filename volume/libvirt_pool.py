"""A volume backend on a libvirt directory storage pool.

Volumes are raw files created and deleted through libvirt's storage API
(``virStoragePool.createXML``, ``virStorageVol.delete``) on the libvirt
daemon at ``[volume] connection_uri``. The pool is a ``dir`` pool at
``[volume] pool_path``, defined, built and started here when missing. The
storage daemon that exports the volumes opens the same files, so the path
must be the same for libvirtd and for this service (on the rig: outside the
directories a rig host bind-mounts privately).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator

import libvirt
from lxml import etree

from compute.virt.libvirt.host import is_connection_error
from volume.backend import Capacity, VolumeBackend

LOG = logging.getLogger(__name__)
GIB = 1024 ** 3


def _pool_xml(name: str, path: str) -> str:
    pool = etree.Element("pool", type="dir")
    etree.SubElement(pool, "name").text = name
    target = etree.SubElement(pool, "target")
    etree.SubElement(target, "path").text = path
    return etree.tostring(pool, encoding="unicode")


def _volume_xml(name: str, size_gb: int) -> str:
    vol = etree.Element("volume")
    etree.SubElement(vol, "name").text = name
    etree.SubElement(vol, "capacity", unit="bytes").text = str(size_gb * GIB)
    # A sparse file: no allocation up front.
    etree.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = etree.SubElement(vol, "target")
    etree.SubElement(target, "format", type="raw")
    permissions = etree.SubElement(target, "permissions")
    etree.SubElement(permissions, "mode").text = "0600"
    # libvirtd (root) creates the file; the storage daemon this service
    # starts (as the service's user, e.g. flotilla under systemd) opens it.
    etree.SubElement(permissions, "owner").text = str(os.geteuid())
    etree.SubElement(permissions, "group").text = str(os.getegid())
    return etree.tostring(vol, encoding="unicode")


def volume_name(volume_id: str) -> str:
    return "volume-%s" % volume_id


def snapshot_name(snapshot_id: str) -> str:
    return "snapshot-%s" % snapshot_id


class LibvirtPoolBackend(VolumeBackend):
    def __init__(self, conf) -> None:
        self.conf = conf
        self.uri = conf.volume.connection_uri
        self.pool = conf.volume.pool_name
        self.pool_path = os.path.abspath(conf.volume.pool_path)
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    def _connection(self) -> libvirt.virConnect:
        if self._conn is None or not self._conn.isAlive():
            self._conn = libvirt.open(self.uri)
        return self._conn

    def _pool(self) -> libvirt.virStoragePool:
        try:
            return self._pool_on(self._connection())
        except libvirt.libvirtError as exc:
            # A libvirtd that restarted: without an event loop the client
            # only learns it when it next calls (isAlive() still said yes).
            if not is_connection_error(exc):
                raise
            LOG.warning("connection to %s lost (%s): connecting again", self.uri,
                        exc.get_error_message())
            self._conn = None
            return self._pool_on(self._connection())

    def _pool_on(self, conn: libvirt.virConnect) -> libvirt.virStoragePool:
        try:
            pool = conn.storagePoolLookupByName(self.pool)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            os.makedirs(self.pool_path, mode=0o700, exist_ok=True)
            LOG.info("defining storage pool %s at %s", self.pool, self.pool_path)
            pool = conn.storagePoolDefineXML(_pool_xml(self.pool, self.pool_path), 0)
            pool.build(0)
            pool.setAutostart(1)
        if not pool.isActive():
            pool.create(0)
        return pool

    def start(self) -> None:
        with self._lock:
            self._pool().refresh(0)

    def _lookup(self, pool, volume_id: str, name=volume_name
                ) -> libvirt.virStorageVol | None:
        try:
            return pool.storageVolLookupByName(name(volume_id))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise

    # --- snapshots (copies in the same pool) ------------------------------------

    def create_snapshot_file(self, snapshot_id: str, size_gb: int) -> str:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            vol = self._lookup(pool, snapshot_id, snapshot_name)
            if vol is None:
                vol = pool.createXML(_volume_xml(snapshot_name(snapshot_id), size_gb), 0)
            return vol.path()

    def snapshot_path(self, snapshot_id: str) -> str | None:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            vol = self._lookup(pool, snapshot_id, snapshot_name)
            return vol.path() if vol is not None else None

    def delete_snapshot(self, snapshot_id: str) -> None:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            vol = self._lookup(pool, snapshot_id, snapshot_name)
            if vol is not None:
                vol.delete(0)

    def create_from_snapshot(self, volume_id: str, snapshot_id: str, size_gb: int) -> str:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            source = self._lookup(pool, snapshot_id, snapshot_name)
            if source is None:
                raise FileNotFoundError("snapshot %s has no file in pool %s"
                                        % (snapshot_id, self.pool))
            stale = self._lookup(pool, volume_id)
            if stale is not None:
                stale.delete(0)      # a partial copy of an earlier attempt
            source_gb = -(-int(source.info()[1]) // GIB)
            vol = pool.createXMLFrom(_volume_xml(volume_name(volume_id), source_gb),
                                     source, 0)
            if size_gb * GIB > int(vol.info()[1]):
                vol.resize(size_gb * GIB, 0)
            return vol.path()

    def create(self, volume_id: str, size_gb: int) -> str:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            vol = self._lookup(pool, volume_id)
            if vol is None:
                vol = pool.createXML(_volume_xml(volume_name(volume_id), size_gb), 0)
            return vol.path()

    def delete(self, volume_id: str) -> None:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            vol = self._lookup(pool, volume_id)
            if vol is not None:
                vol.delete(0)

    def extend(self, volume_id: str, size_gb: int) -> None:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            vol = self._lookup(pool, volume_id)
            if vol is None:
                raise FileNotFoundError("volume %s has no file in pool %s"
                                        % (volume_id, self.pool))
            if int(vol.info()[1]) >= size_gb * GIB:
                return      # grown already (a repeated request)
            # Sparse: only the capacity grows, nothing is allocated.
            vol.resize(size_gb * GIB, 0)

    def path(self, volume_id: str) -> str | None:
        with self._lock:
            pool = self._pool()
            vol = self._lookup(pool, volume_id)
            return vol.path() if vol is not None else None

    def volume_ids(self) -> list[str]:
        prefix = volume_name("")
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            return sorted(v.name()[len(prefix):] for v in pool.listAllVolumes(0)
                          if v.name().startswith(prefix))

    def free_bytes(self) -> int:
        return self.capacity().free_bytes

    def capacity(self) -> Capacity:
        """The pool's capacity and available bytes (for a dir pool: its
        filesystem's), and the bytes its volume and snapshot files take.

        Free is the smaller of libvirt's ``available`` and what the
        filesystem leaves to this service's user: libvirt counts the blocks
        only root may use (statvfs ``f_bfree``), but the bytes are written
        by the storage daemon this service starts, as its own user
        (``f_bavail``)."""
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            _state, total, _used, free = pool.info()
            allocated = sum(int(vol.info()[2]) for vol in pool.listAllVolumes(0))
        free = int(free)
        try:
            fs = os.statvfs(self.pool_path)
            free = min(free, fs.f_bavail * fs.f_frsize)
        except OSError as exc:
            # The pool's daemon sees a path this host does not: libvirt's
            # figure is all there is.
            LOG.debug("pool path %s not visible here (%s)", self.pool_path, exc)
        return Capacity(total_bytes=int(total), free_bytes=free,
                        allocated_bytes=allocated)

    # --- streams (virStorageVolUpload / virStorageVolDownload) -----------------

    def _volume(self, volume_id: str) -> libvirt.virStorageVol:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            vol = self._lookup(pool, volume_id)
            if vol is None:
                raise FileNotFoundError("volume %s has no file in pool %s"
                                        % (volume_id, self.pool))
            return vol

    def upload(self, volume_id: str, chunks: Iterable[bytes]) -> int:
        """Through a libvirt stream to the pool's daemon (a remote one too:
        the bytes travel over its connection). The backend lock is not held
        while the bytes flow: other calls go on meanwhile."""
        vol = self._volume(volume_id)
        capacity = int(vol.info()[1])
        stream = vol.connect().newStream(0)
        # Length 0: as many bytes as the stream brings, checked here.
        vol.upload(stream, 0, 0, 0)
        written = 0
        try:
            for chunk in chunks:
                if written + len(chunk) > capacity:
                    raise ValueError("more than the %d bytes of volume %s"
                                     % (capacity, volume_id))
                view = memoryview(chunk)
                while view:
                    sent = stream.send(view.tobytes())
                    if sent < 0:
                        raise OSError("libvirt stream refused the bytes (%d)" % sent)
                    view = view[sent:]
                written += len(chunk)
            stream.finish()
        except BaseException:
            _abort(stream)
            raise
        LOG.info("volume %s: %d bytes uploaded", volume_id, written)
        return written

    def download(self, volume_id: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        vol = self._volume(volume_id)
        stream = vol.connect().newStream(0)
        vol.download(stream, 0, 0, 0)
        done = False
        try:
            while True:
                chunk = stream.recv(chunk_size)
                if isinstance(chunk, int):      # -2: would block (never, blocking)
                    raise OSError("libvirt stream receive failed (%d)" % chunk)
                if not chunk:
                    break
                yield chunk
            stream.finish()
            done = True
        finally:
            if not done:
                _abort(stream)

    def stop(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except libvirt.libvirtError:
                    pass
                self._conn = None


def _abort(stream: libvirt.virStream) -> None:
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass    # already ended by the failure that brought us here

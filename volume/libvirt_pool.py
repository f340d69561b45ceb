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

import libvirt
from lxml import etree

from compute.virt.libvirt.host import is_connection_error
from volume.backend import VolumeBackend

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

    def free_bytes(self) -> int:
        with self._lock:
            pool = self._pool()
            pool.refresh(0)
            return int(pool.info()[3])

    def stop(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except libvirt.libvirtError:
                    pass
                self._conn = None

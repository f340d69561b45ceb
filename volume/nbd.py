"""NBD exports of volumes: one qemu-storage-daemon per volume host, driven
through its QMP socket (:mod:`volume.qmp`).

The daemon is started once with an NBD server on ``[volume] nbd_host``:
``nbd_port`` and a QMP monitor on a UNIX socket under ``[volume] run_path``.
Exporting a volume adds a raw block node over its file and an NBD export
named after the volume id, writable unless the volume is read-only (then no
client can write it, whatever its disk XML says); unexporting removes both. The daemon
runs in its own session: it outlives a restart of the volume service, so
attached volumes stay served; the service re-adds, from the database,
whatever exports a crashed daemon lost (VolumeManager.restore_exports), at
its start and, while it runs, after a periodic check started a daemon that
died again (volume.recovery). A daemon whose pid lives but does not
answer is never replaced (a second could not take the port).

TLS (``[volume] nbd_tls``): the daemon is started with a ``tls-creds-x509``
object (endpoint server, verify-peer: only clients with a certificate from
the CA of ``nbd_tls_x509_dir`` get through the handshake) and its NBD
server uses it (``tls-creds``, the ``nbd-server-start`` argument), so no
export can be reached in the clear. Each connection then says ``tls``: the
compute host's libvirt connects with its qemu.conf
``nbd_tls_x509_cert_dir``. The files are checked at start (a ConfigError
naming the option). The setting is the daemon's, fixed when it starts: a
daemon still running from before a change keeps serving as it did (logged)
until it is stopped with no export left.

Throughput (tools/bench/volume.py, perf; QEMU 7.2): malloc tunables, see
:data:`MALLOC_TUNABLES`. Measured and left out: an export iothread (7.2's
daemon aborts when a client leaves it: ``nbd_blockdev_client_closed:
Assertion qemu_in_main_thread()``), ``aio: io_uring`` (slower buffered
writes; container seccomp profiles block it), ``cache.direct`` (reads at
the device's speed instead of the page cache's, unlike local guest disks).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from flotilla.conf.loader import ConfigError
from volume.qmp import QMP, QMPError, wait_job

LOG = logging.getLogger(__name__)


def node_name(volume_id: str) -> str:
    # QEMU node names are at most 31 characters and start with a letter.
    return "v" + volume_id.replace("-", "")[:30]


def export_id(volume_id: str) -> str:
    return "e" + volume_id.replace("-", "")


def volume_of_export(export: str) -> str | None:
    """The volume id an export id names (see :func:`export_id`), None for
    an export that is not a volume's."""
    if not export.startswith("e"):
        return None
    try:
        return str(uuidlib.UUID(hex=export[1:]))
    except ValueError:
        return None


def _pid_alive(pid_path: str, socket_path: str) -> int | None:
    """The pid in ``pid_path`` when that process still lives and is the
    daemon of ``socket_path`` (its command line names it; a pid reused by
    another process is not), else None. A zombie (a killed daemon its parent
    has not reaped yet) does not live."""
    try:
        with open(pid_path) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rpartition(")")[2].split()[0]
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError, IndexError):
        return None
    if state in ("Z", "X") or socket_path.encode() not in cmdline:
        return None
    return pid


#: The server's files in ``[volume] nbd_tls_x509_dir`` (QEMU's layout).
TLS_SERVER_FILES = ("ca-cert.pem", "server-cert.pem", "server-key.pem")
#: The id of the daemon's tls-creds-x509 object.
TLS_OBJECT_ID = "nbd-tls0"


def tls_dir(conf) -> str | None:
    """The directory of the NBD server's TLS files when ``[volume] nbd_tls``
    is on, else None. Raises ConfigError naming ``nbd_tls_x509_dir`` when a
    file is missing or unreadable (QEMU would fail later, less clearly)."""
    if not getattr(conf.volume, "nbd_tls", False):
        return None
    directory = os.path.abspath(conf.volume.nbd_tls_x509_dir)
    for name in TLS_SERVER_FILES:
        path = os.path.join(directory, name)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(
                "[volume] nbd_tls is true but [volume] nbd_tls_x509_dir %s has no "
                "readable %s (%s); it needs %s" % (directory, name, exc.strerror,
                                                   ", ".join(TLS_SERVER_FILES))) from None
    return directory


def _qemu_opt(value: str) -> str:
    # QEMU's key=value,... syntax: a comma inside a value is doubled.
    return value.replace(",", ",,")


#: glibc malloc tunables for the daemon. Its NBD server allocates a buffer
#: per request (up to 32 MiB) and frees it once answered; by default glibc
#: mmaps each of 128 KiB or more afresh, so every request page-faults and
#: zeroes its buffer before pread or recv fills it (perf: that cost more
#: than the copies). Served from a heap that keeps 64 MiB free instead, the
#: daemon's CPU per GiB fell from ~1.0 s to ~0.4 s and throughput about
#: doubled (1 MiB requests, depth 16, TCP); the price is keeping about its
#: peak of in-flight buffers (RSS 48 MiB after 16 x 1 MiB, 116 after 16 x 4).
MALLOC_TUNABLES = ("glibc.malloc.mmap_threshold=33554432",
                   "glibc.malloc.trim_threshold=67108864")


def daemon_env(base: dict[str, str]) -> dict[str, str]:
    """The daemon's environment: ``base`` with :data:`MALLOC_TUNABLES`
    added to GLIBC_TUNABLES; whatever is set there already is kept, and
    wins over ours for the same tunable (an operator's choice)."""
    env = dict(base)
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    names = {t.partition("=")[0] for t in tunables}
    tunables += [t for t in MALLOC_TUNABLES if t.partition("=")[0] not in names]
    env["GLIBC_TUNABLES"] = ":".join(tunables)
    return env


def daemon_args(binary: str, socket_path: str, pid_path: str, host: str, port: int,
                tls: str | None = None) -> list[str]:
    """The qemu-storage-daemon command line: a QMP monitor on
    ``socket_path`` and an NBD server on ``host``:``port``; with ``tls``
    (a directory of TLS_SERVER_FILES) a tls-creds-x509 object the NBD
    server requires of every client."""
    args = [binary,
            "--chardev", "socket,id=qmp0,path=%s,server=on,wait=off" % socket_path,
            "--monitor", "chardev=qmp0"]
    nbd = "addr.type=inet,addr.host=%s,addr.port=%d" % (host, port)
    if tls is not None:
        args += ["--object", "tls-creds-x509,id=%s,endpoint=server,verify-peer=on,dir=%s"
                 % (TLS_OBJECT_ID, _qemu_opt(tls))]
        nbd += ",tls-creds=%s" % TLS_OBJECT_ID
    return args + ["--nbd-server", nbd, "--pidfile", pid_path]


class StorageDaemon:
    def __init__(self, conf) -> None:
        self.conf = conf
        self.run_path = os.path.abspath(conf.volume.run_path)
        self.socket_path = os.path.join(self.run_path, "qmp.sock")
        self.pid_path = os.path.join(self.run_path, "qsd.pid")
        self.host = conf.volume.nbd_host
        self.port = conf.volume.nbd_port
        self.tls_dir = tls_dir(conf)      # ConfigError at start, not at export
        self._lock = threading.Lock()
        # Called after a new daemon started, whoever asked (an export, a
        # copy, the periodic watch): the volume service exports its attached
        # volumes again (a new daemon exports nothing).
        self.on_restart: Callable[[], object] | None = None
        self._proc: subprocess.Popen | None = None
        self.qmp_timeout = 10.0   # seconds a QMP answer may take
        self._tls_checked = False

    # --- the daemon -----------------------------------------------------------

    def _session(self) -> QMP:
        return QMP(self.socket_path, timeout=self.qmp_timeout)

    def running(self) -> bool:
        try:
            self._session().close()
            return True
        except OSError:
            return False

    def ensure_running(self, timeout: float = 15, wait: bool = True) -> bool:
        """Start the daemon unless one answers on the QMP socket; True when
        a new one was started (``on_restart`` has then run). A daemon whose
        pid still lives but does not answer (stopped, or hung) is not
        replaced: a second one could not take the NBD port, and removing
        its socket would make the first unreachable for good. ``wait=False``
        returns False at once while another call holds the daemon (a copy
        job may for minutes: it proves the daemon alive)."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            started = self._start_unless_running(timeout)
        finally:
            self._lock.release()
        if started and self.on_restart is not None:
            self.on_restart()
        return started

    def _start_unless_running(self, timeout: float) -> bool:
        # Under self._lock.
        if self.running():
            self._check_tls()
            return False
        pid = _pid_alive(self.pid_path, self.socket_path)
        if pid is not None:
            raise RuntimeError("qemu-storage-daemon %d lives but does not answer on %s"
                               % (pid, self.socket_path))
        os.makedirs(self.run_path, mode=0o700, exist_ok=True)
        for stale in (self.socket_path, self.pid_path):
            if os.path.exists(stale):
                os.unlink(stale)
        log = open(os.path.join(self.run_path, "qsd.log"), "ab")
        args = daemon_args(self.conf.volume.storage_daemon, self.socket_path,
                           self.pid_path, self.host, self.port, self.tls_dir)
        LOG.info("starting %s (NBD on %s:%d, %s)", args[0], self.host, self.port,
                 "TLS from %s" % self.tls_dir if self.tls_dir else "plain")
        # Its own session: it keeps serving attached volumes while the
        # volume service restarts.
        if self._proc is not None:
            self._proc.poll()         # reap the one that died
        proc = self._proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=daemon_env(dict(os.environ)))
        log.close()
        deadline = time.monotonic() + timeout
        while not self.running():
            if proc.poll() is not None:
                log_path = os.path.join(self.run_path, "qsd.log")
                with open(log_path, errors="replace") as f:
                    said = " | ".join(f.read().strip().splitlines()[-3:])
                raise RuntimeError("qemu-storage-daemon exited with %s: %s (in %s)"
                                   % (proc.returncode, said or "it said nothing",
                                      log_path))
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("qemu-storage-daemon did not answer on %s"
                                   % self.socket_path)
            time.sleep(0.05)
        return True

    def serves_tls(self) -> bool:
        """Whether the running daemon holds the TLS object its NBD server
        is started with (see :func:`daemon_args`)."""
        qmp = self._session()
        try:
            objects = qmp.execute("qom-list", path="/objects")
        except QMPError as exc:
            if exc.error_class != "DeviceNotFound":
                raise
            return False          # no object at all: no /objects container
        finally:
            qmp.close()
        return any(o.get("name") == TLS_OBJECT_ID for o in objects)

    def _check_tls(self) -> None:
        if self._tls_checked:
            return
        self._tls_checked = True
        try:
            serves = self.serves_tls()
        except (OSError, QMPError) as exc:
            LOG.warning("cannot tell whether the storage daemon serves TLS: %s", exc)
            return
        if serves != (self.tls_dir is not None):
            LOG.error("the running qemu-storage-daemon serves NBD %s but [volume] "
                      "nbd_tls is %s: it keeps doing so until it is stopped with no "
                      "export left", "with TLS" if self.tls_dir is None else "in the clear",
                      self.tls_dir is not None)

    def stop_if_idle(self) -> bool:
        """Quit the daemon when it exports nothing; True when it quit."""
        with self._lock:
            try:
                qmp = self._session()
            except OSError:
                return True
            try:
                if qmp.execute("query-block-exports"):
                    return False
                try:
                    qmp.execute("quit")
                except (OSError, ConnectionError):
                    pass
            finally:
                qmp.close()
            return True

    # --- exports ----------------------------------------------------------------

    def exports(self) -> set[str]:
        """Names of the exports served now (the volume ids)."""
        with self._lock:
            qmp = self._session()
            try:
                ids = {e["id"] for e in qmp.execute("query-block-exports")}
            finally:
                qmp.close()
        return {i for i in ids if i.startswith("e")}

    def remove_orphans(self, keep: set[str]) -> list[str]:
        """Unexport every volume export whose volume is not in ``keep`` (the
        volume ids that must stay exported); the ids removed."""
        if not self.running():
            return []
        removed = []
        for export in sorted(self.exports()):
            volume_id = volume_of_export(export)
            if volume_id is None or volume_id in keep:
                continue
            self.unexport(volume_id)
            removed.append(volume_id)
        return removed

    def connection(self, volume_id: str) -> dict[str, Any]:
        return {"volume_id": volume_id, "export": volume_id, "host": self.host,
                "port": self.port, "protocol": "nbd", "format": "raw",
                "tls": self.tls_dir is not None}

    def export(self, volume_id: str, path: str, writable: bool = True) -> dict[str, Any]:
        """Export the volume file at ``path`` (idempotent); the connection
        a compute host uses (block_device.VolumeConnection's fields). An
        export is writable or not from when it is added: an export already
        there is kept as it is (a volume's read-only flag changes only while
        it is available, so unexported)."""
        self.ensure_running()
        with self._lock:
            qmp = self._session()
            try:
                exports = {e["id"] for e in qmp.execute("query-block-exports")}
                if export_id(volume_id) not in exports:
                    nodes = {n.get("node-name") for n in
                             qmp.execute("query-named-block-nodes", flat=True)}
                    if node_name(volume_id) not in nodes:
                        qmp.execute("blockdev-add", **{
                            "driver": "raw", "node-name": node_name(volume_id),
                            "file": {"driver": "file", "filename": path,
                                     "cache": {"direct": False}}})
                    qmp.execute("block-export-add", type="nbd", id=export_id(volume_id),
                                **{"node-name": node_name(volume_id)},
                                name=volume_id, writable=writable)
            finally:
                qmp.close()
        LOG.info("volume %s exported over NBD%s", volume_id,
                 "" if writable else " (read-only)")
        return self.connection(volume_id)

    def unexport(self, volume_id: str, timeout: float = 10) -> None:
        """Remove the volume's export and block node (idempotent). Clients
        still connected are cut off: the caller has detached them."""
        if not self.running():
            return
        with self._lock:
            qmp = self._session()
            try:
                try:
                    qmp.execute("block-export-del", id=export_id(volume_id), mode="hard")
                except QMPError as exc:
                    LOG.debug("no export of %s to remove: %s", volume_id, exc)
                # The export goes away asynchronously; then the node is free.
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        qmp.execute("blockdev-del", **{"node-name": node_name(volume_id)})
                        break
                    except QMPError as exc:
                        nodes = {n.get("node-name") for n in
                                 qmp.execute("query-named-block-nodes", flat=True)}
                        if node_name(volume_id) not in nodes:
                            break
                        if time.monotonic() > deadline:
                            raise RuntimeError("block node of volume %s still busy: %s"
                                               % (volume_id, exc)) from exc
                        time.sleep(0.1)
            finally:
                qmp.close()
        LOG.info("volume %s no longer exported", volume_id)

    def grow_export(self, volume_id: str, path: str, size_bytes: int,
                    timeout: float = 10, writable: bool = True) -> dict[str, Any]:
        """Serve the exported volume at ``size_bytes`` (its file grown
        already, or grown here by the node): the export is removed, the node
        resized and the export added again under the same name; the
        connection (unchanged). An NBD client cannot learn a new size on an
        open connection and an export forbids resizing its node, so clients
        are cut off for those few milliseconds; QEMU's NBD client connects
        again on a later request and takes the new size then (what the
        compute host's extend_volume makes happen). A volume not exported
        is exported at that size. Idempotent."""
        self.ensure_running()
        node = node_name(volume_id)
        try:
            with self._lock:
                qmp = self._session()
                try:
                    sizes = {n.get("node-name"): n.get("image", {}).get("virtual-size")
                             for n in qmp.execute("query-named-block-nodes", flat=True)}
                    if node in sizes and sizes[node] is not None \
                            and int(sizes[node]) >= size_bytes:
                        LOG.info("volume %s is served at %s bytes already", volume_id,
                                 sizes[node])
                    elif node in sizes:
                        self._regrow(qmp, volume_id, size_bytes, timeout)
                finally:
                    qmp.close()
        except Exception:
            # The export may be gone already (removed before the resize that
            # failed): serve the volume again at the size its node has, so
            # the guest is not left without its disk; then the failure.
            try:
                self.export(volume_id, path, writable)
            except Exception:
                LOG.exception("volume %s could not be exported again after a failed "
                              "grow", volume_id)
            raise
        # (Re-)adds the export (and a node over the grown file) when missing.
        return self.export(volume_id, path, writable)

    @staticmethod
    def _regrow(qmp: QMP, volume_id: str, size_bytes: int, timeout: float) -> None:
        # Under self._lock. Whatever fails, grow_export adds the export back
        # at the size the node has then (success or not).
        node = node_name(volume_id)
        try:
            qmp.execute("block-export-del", id=export_id(volume_id), mode="hard")
        except QMPError as exc:
            LOG.debug("no export of %s to remove: %s", volume_id, exc)
        # The export goes away asynchronously; until then the node is busy.
        deadline = time.monotonic() + timeout
        while any(e["id"] == export_id(volume_id)
                  for e in qmp.execute("query-block-exports")):
            if time.monotonic() > deadline:
                raise RuntimeError("export of volume %s did not go away" % volume_id)
            time.sleep(0.01)
        qmp.execute("block_resize", **{"node-name": node}, size=size_bytes)
        LOG.info("volume %s: node grown to %d bytes", volume_id, size_bytes)

    # --- point-in-time copies -------------------------------------------------

    def backup(self, volume_id: str, source_path: str, target_path: str,
               timeout: float = 3600) -> None:
        """Copy the volume into the raw file ``target_path`` (as large as the
        volume) as it was when the copy started, while NBD clients may keep
        writing: QEMU's ``blockdev-backup`` with ``sync: full`` copies each
        block before a new write overwrites it (copy-before-write). A volume
        not exported gets a temporary read-only node over ``source_path``,
        removed afterwards; an export asked for meanwhile waits for the copy
        (one lock), so it can never write under a half-done copy.

        What it guarantees: crash consistency — the copy holds every write
        the daemon acknowledged before the job started and none after, as a
        disk would after a power cut at that instant. What a guest still
        keeps in its own page cache is not in it (application consistency
        would need a guest-side freeze, which the NBD path cannot ask for)."""
        self.ensure_running()
        source = node_name(volume_id)
        target = "t" + volume_id.replace("-", "")[:30]
        job = "b" + volume_id.replace("-", "")[:30]
        with self._lock:
            qmp = self._session()
            try:
                nodes = {n.get("node-name") for n in
                         qmp.execute("query-named-block-nodes", flat=True)}
                temporary = source not in nodes
                if temporary:
                    qmp.execute("blockdev-add", **{
                        "driver": "raw", "node-name": source, "read-only": True,
                        "file": {"driver": "file", "filename": source_path}})
                if target in nodes:      # left by an interrupted attempt
                    qmp.execute("blockdev-del", **{"node-name": target})
                try:
                    qmp.execute("blockdev-add", **{
                        "driver": "raw", "node-name": target,
                        "file": {"driver": "file", "filename": target_path}})
                    try:
                        qmp.execute("blockdev-backup", **{
                            "job-id": job, "device": source, "target": target,
                            "sync": "full", "auto-dismiss": False})
                        wait_job(qmp, job, timeout)
                    finally:
                        qmp.execute("blockdev-del", **{"node-name": target})
                finally:
                    if temporary:
                        qmp.execute("blockdev-del", **{"node-name": source})
            finally:
                qmp.close()
        LOG.info("volume %s copied to %s (point in time)", volume_id, target_path)

"""The volume service's RPC endpoint (topic ``volume.<host>``).

One per volume host. Volumes live in the backend (a libvirt storage pool);
attached ones are exported over NBD by the host's storage daemon. The
volume service is part of the control plane: it reads and writes the
volumes table itself, every status change a compare-and-swap.

At start it makes sure the storage daemon runs and that every volume of
this host with an attachment in the database is exported again (a daemon
that crashed, or a machine that rebooted, lost them), then repairs what a
killed service left (volume.recovery: interrupted creates end in error,
deletes are done again, exports without an attachment go); a periodic task
starts the storage daemon again when it died.
"""

from __future__ import annotations

import logging

from oslo_config import cfg

from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.periodic import periodic_task
from flotilla.rpc import private
from volume import backend as backends
from volume import capacity, recovery, reimage, snapshots
from volume import upload as uploads
from volume.nbd import StorageDaemon

LOG = logging.getLogger(__name__)


class VolumeManager:
    RPC_API_VERSION = "1.6"

    def __init__(self, conf: cfg.ConfigOpts, host: str | None = None,
                 backend: backends.VolumeBackend | None = None,
                 daemon: StorageDaemon | None = None) -> None:
        self.conf = conf
        self.host = host or conf.host
        self.backend = backend or backends.load(conf)
        self.daemon = daemon or StorageDaemon(conf)
        # A storage daemon started again, by whichever call found it gone,
        # gets this host's attached volumes back.
        self.daemon.on_restart = self.restore_exports
        # Volumes a flow unexported since their last export: a restore that
        # read their attachment just before (the detach flow deletes it
        # after unexporting) must not leave them exported. No lock: the
        # storage daemon serialises the calls, and a restore must never
        # wait behind a copy job holding it (the watch shares the heartbeat).
        self._unexported: set[str] = set()

    # --- service hooks --------------------------------------------------------

    @private
    def init_host(self) -> None:
        self.backend.start()
        if not self.daemon.ensure_running():
            self.restore_exports()     # one that outlived us may lack some
        recovery.recover_host(self)    # what a killed service left (issue 11 faults)
        capacity.report(self)          # placement reads it from the first heartbeat

    @periodic_task(spacing=lambda self: self.conf.volume.storage_daemon_check_interval)
    def _watch_storage_daemon(self) -> None:
        recovery.watch_storage_daemon(self)

    @periodic_task(spacing=lambda self: self.conf.volume.capacity_report_interval)
    def _report_capacity(self) -> None:
        capacity.report(self)

    @private
    def restore_exports(self) -> list[str]:
        """Export again every attached volume of this host; the ids."""
        restored = []
        for volume in vdb.exported_volumes(self.host):
            if volume.id in self._unexported:
                continue                # a detach is ending: its flow unexported it
            path = volume.path or self.backend.path(volume.id)
            if not path:
                LOG.error("volume %s is attached but its file is gone", volume.id)
                continue
            try:
                self.daemon.export(volume.id, path, writable=not volume.readonly)
            except Exception:
                LOG.exception("could not export volume %s again", volume.id)
                continue
            if volume.id in self._unexported:
                # Unexported while this export was on its way: take it back.
                self.daemon.unexport(volume.id)
                continue
            restored.append(volume.id)
        if restored:
            LOG.info("exports of %d attached volumes in place", len(restored))
        return restored

    @private
    def cleanup_host(self) -> None:
        # A daemon still exporting keeps serving the guests; an idle one goes.
        self.daemon.stop_if_idle()
        self.backend.stop()

    # --- RPC --------------------------------------------------------------------

    def create_volume(self, ctxt: RequestContext, volume_id: str) -> None:
        volume = vdb.volume_get(volume_id)
        if volume.status != st.VOLUME_CREATING:
            # Recovery at start already ended an interrupted create.
            LOG.info("volume %s is %s: create skipped", volume_id, volume.status)
            return
        try:
            if volume.snapshot_id or volume.image_id or volume.source_volid:
                path = snapshots.fill_volume(self.conf, self.backend, volume, self.daemon)
            else:
                path = self.backend.create(volume_id, volume.size_gb)
        except Exception as exc:
            LOG.exception("creating volume %s failed", volume_id)
            vdb.volume_update(volume_id, {"status": st.VOLUME_ERROR,
                                          "status_reason": "create failed: %s"
                                          % snapshots.reason(exc)},
                              expected_status=st.VOLUME_CREATING)
            return
        try:
            vdb.volume_update(volume_id, {"status": st.VOLUME_AVAILABLE, "path": path,
                                          "pool": self.backend.pool, "status_reason": None},
                              expected_status=st.VOLUME_CREATING)
        except (vdb.VolumeNotFound, vdb.VolumeStatusConflict) as exc:
            # The create outlived its deadline: the reaper ended it in error
            # and the tenant may have deleted it meanwhile. Nothing will
            # ever own this file: remove it (a later delete finds none).
            LOG.warning("volume %s left creating while it was made (%s): its file "
                        "is removed", volume_id, exc)
            self.backend.delete(volume_id)
            return
        LOG.info("volume %s created (%d GiB)", volume_id, volume.size_gb)

    def delete_volume(self, ctxt: RequestContext, volume_id: str) -> None:
        try:
            self.daemon.unexport(volume_id)
            self.backend.delete(volume_id)
        except Exception as exc:
            LOG.exception("deleting volume %s failed", volume_id)
            vdb.volume_update(volume_id, {"status": st.VOLUME_ERROR_DELETING,
                                          "status_reason": "delete failed: %s"
                                          % type(exc).__name__},
                              expected_status=st.VOLUME_DELETING)
            return
        vdb.volume_destroy(volume_id, expected_status=st.VOLUME_DELETING)
        LOG.info("volume %s deleted", volume_id)

    def extend_volume(self, ctxt: RequestContext, volume_id: str, new_size_gb: int,
                      old_size_gb: int) -> None:
        """Grow an available volume the API marked extending (offline: no
        export serves it, so nothing else must learn the size)."""
        try:
            self.backend.extend(volume_id, new_size_gb)
        except Exception as exc:
            LOG.exception("extending volume %s failed", volume_id)
            vdb.volume_extend_failed(volume_id, old_size_gb,
                                     "extend failed: %s" % type(exc).__name__)
            return
        vdb.volume_update(volume_id, {"status": st.VOLUME_AVAILABLE, "size_gb": new_size_gb,
                                      "status_reason": None},
                          expected_status=st.VOLUME_EXTENDING)
        LOG.info("volume %s extended from %d to %d GiB", volume_id, old_size_gb,
                 new_size_gb)

    def extend_volume_online(self, ctxt: RequestContext, volume_id: str,
                             new_size_gb: int) -> int:
        """1.3, a call from the conductor's extend flow for an attached
        volume (status extending, its record holding the new size already):
        grow the file and serve it at the new size (StorageDaemon.grow_export:
        the export is removed and added again). Returns the size in bytes.
        The status is the flow's to move on; errors propagate to it."""
        volume = vdb.volume_get(volume_id)
        if volume.status != st.VOLUME_EXTENDING:
            raise vdb.VolumeStatusConflict(volume_id=volume_id, actual=volume.status,
                                           expected=st.VOLUME_EXTENDING)
        self.backend.extend(volume_id, new_size_gb)
        path = volume.path or self.backend.path(volume_id)
        size = new_size_gb * 2 ** 30
        self._unexported.discard(volume_id)
        self.daemon.grow_export(volume_id, path, size, writable=not volume.readonly)
        LOG.info("volume %s grown to %d GiB and exported again", volume_id, new_size_gb)
        return size

    def export_volume(self, ctxt: RequestContext, volume_id: str) -> dict:
        volume = vdb.volume_get(volume_id)
        path = volume.path or self.backend.path(volume_id)
        if not path:
            raise vdb.VolumeNotFound(volume_id=volume_id)
        self._unexported.discard(volume_id)
        connection = self.daemon.export(volume_id, path, writable=not volume.readonly)
        if volume.readonly:
            # os-update_readonly_flag: every host plugs it read-only (the
            # compute agent honours it from RPC 1.13; the API refuses the
            # attach while agents are capped below). The export itself is
            # read-only too: an agent older than 1.13 (reached by a move in
            # an uncapped mixed cloud) cannot plug it writable.
            connection = dict(connection, read_only=True)
        return connection

    def unexport_volume(self, ctxt: RequestContext, volume_id: str) -> None:
        self._unexported.add(volume_id)     # before: see restore_exports
        self.daemon.unexport(volume_id)

    def reimage_volume(self, ctxt: RequestContext, volume_id: str, image_id: str) -> dict:
        """1.6, a call from the conductor's rebuild flow of a volume-backed
        server: write ``image_id`` over the (downloading, unexported) volume;
        ``{"error", "written"}`` (volume.reimage)."""
        self._unexported.add(volume_id)   # no restore may serve it meanwhile
        return reimage.reimage(self.conf, self.backend, volume_id, image_id)

    def create_snapshot(self, ctxt: RequestContext, snapshot_id: str) -> None:
        """Copy the snapshot's volume, point in time (see
        volume.nbd.StorageDaemon.backup): creating -> available, or error."""
        snapshots.create_snapshot(self.backend, self.daemon, sdb.snapshot_get(snapshot_id))

    def delete_snapshot(self, ctxt: RequestContext, snapshot_id: str) -> None:
        """deleting -> gone, or error_deleting."""
        snapshots.delete_snapshot(self.backend, snapshot_id)

    def upload_to_image(self, ctxt: RequestContext, volume_id: str, image_id: str) -> None:
        """1.5: copy the uploading volume into the queued image, then put the
        volume back (volume.upload states the rules)."""
        uploads.upload_to_image(self, volume_id, image_id)

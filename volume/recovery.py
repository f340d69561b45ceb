"""What a volume service repairs when it starts, and while it runs.

A volume service killed mid-operation (SIGKILL, a crash, a reboot) leaves
the work it was doing half done; RPC is at-most-once, so nobody repeats the
request. At start (:func:`recover_host`, after the attached volumes'
exports are in place), for the volumes of this host:

* ``creating``: the create was interrupted. Its half-made file is removed
  and the volume ends in ``error`` with the reason (as Cinder does); the
  user deletes it. A create request still queued for this service finds the
  volume no longer ``creating`` and does nothing.
* ``deleting``: the delete is done again (every part of it is idempotent).
* ``downloading``: a re-image (a volume-backed server's rebuild,
  volume.reimage) was interrupted and may have half written the volume: it
  ends in ``error`` with the reason (as Cinder's failed reimage); its
  attachment stays and it is exported again with the attached volumes
  before this runs (the server's rebuild flow fails, exports it again too,
  and leaves the server in ERROR). A new rebuild at 2.93 re-images it
  again (conductor/flows/rebuild_volume.py); otherwise an administrator
  resets its status (``os-reset_status``), or the server is deleted (which
  releases it).
* ``uploading``: an upload to an image was interrupted. Its unfinished
  image is discarded, its temporary copy removed and the volume put back to
  ``available`` or ``in-use`` (as Cinder does; volume.upload.recover).
  The unfinished images of this host's uploads whose volume was released
  meanwhile are discarded too, and leftover ``upload-*`` temporary copies
  removed.
* Exports: every NBD export of the storage daemon whose volume has no
  attachment is removed (an attach flow reverted while this service was
  down could not unexport it). A volume that has an attachment stays
  exported, whatever its status: an attach or detach flow in progress owns
  it, and its revert or last step unexports.

While the service runs, :func:`watch_storage_daemon` (a periodic task)
starts the storage daemon again when it died and exports the attached
volumes again; compute hosts' NBD clients reconnect by themselves (the
disk's ``<reconnect delay>``), so the guests are served again.
"""

from __future__ import annotations

import logging

from flotilla import exception
from flotilla import states as st
from flotilla.context import get_admin_context
from flotilla.db import volumes as vdb
from volume import upload

LOG = logging.getLogger(__name__)

INTERRUPTED_CREATE = "create interrupted: the volume service restarted"
INTERRUPTED_REIMAGE = "re-image interrupted: the volume service restarted"


def recover_host(manager) -> dict[str, list[str]]:
    """Repair what a killed volume service left on ``manager.host`` (see
    the module rules); ``{"errored": ids, "deleted": ids, "unexported": ids,
    "uploads_ended": ids}``."""
    done: dict[str, list[str]] = {"errored": [], "deleted": [], "unexported": []}
    for volume in vdb.volume_get_all(host=manager.host, statuses=(st.VOLUME_CREATING,)):
        try:
            manager.backend.delete(volume.id)
        except Exception:
            LOG.exception("half-made volume %s not removed", volume.id)
        if _interrupted(volume, st.VOLUME_CREATING, INTERRUPTED_CREATE):
            done["errored"].append(volume.id)
    for volume in vdb.volume_get_all(host=manager.host, statuses=(st.VOLUME_DOWNLOADING,)):
        if _interrupted(volume, st.VOLUME_DOWNLOADING, INTERRUPTED_REIMAGE):
            done["errored"].append(volume.id)
    for volume in vdb.volume_get_all(host=manager.host, statuses=(st.VOLUME_DELETING,)):
        LOG.warning("volume %s: its delete was interrupted; deleting again", volume.id)
        manager.delete_volume(get_admin_context(), volume.id)
        done["deleted"].append(volume.id)
    done["uploads_ended"] = upload.recover(manager)
    keep = {v.id for v in vdb.exported_volumes(manager.host)}
    try:
        done["unexported"] = manager.daemon.remove_orphans(keep)
    except Exception:
        LOG.exception("orphaned exports not removed")
    for volume_id in done["unexported"]:
        LOG.warning("export of volume %s had no attachment: removed", volume_id)
    return done


def _interrupted(volume, status: str, reason: str) -> bool:
    """``volume`` from ``status`` to ``error`` with ``reason``, if it is
    still in ``status`` (compare-and-swap); False when it moved on."""
    try:
        vdb.volume_update(volume.id, {"status": st.VOLUME_ERROR, "status_reason": reason},
                          expected_status=status)
    except exception.FlotillaException as exc:
        LOG.info("volume %s moved on meanwhile: %s", volume.id, exc)
        return False
    LOG.warning("volume %s: %s", volume.id, reason)
    return True


def watch_storage_daemon(manager) -> bool:
    """Start the storage daemon again if it died (its ``on_restart``, the
    manager's restore_exports, exports the attached volumes again); True
    when it had to. Never waits for a call that holds the daemon (a copy
    job can for minutes, and this runs where the heartbeat does)."""
    if not manager.daemon.ensure_running(wait=False):
        return False
    LOG.warning("the storage daemon was gone: started again, attached volumes exported")
    return True

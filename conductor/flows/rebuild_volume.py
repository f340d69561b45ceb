"""The rebuild flow's steps for a server booted from a volume (compute 2.93:
its root volume re-imaged in place; Cinder's ``reimage``).

The API has checked the image (active, visible, no larger than the root
volume, min_ram/min_disk) and the RPC caps (conductor and compute 1.14,
volume 1.6). Before ``rebuild_on_host`` (conductor/flows/rebuild.py), the
rebuild flow of such a server runs, when it re-images:

1. ``stop_guest``: checks the root volume (boot_index 0) is in-use (or in
   ``error`` left by a failed re-image, see below) and attached to the
   server, then has the agent power the guest off (compute
   1.14 ``set_guest_power``: a clean shutdown, then destroyed), so nothing
   writes the volume. Revert: the guest on again when the server was
   active and the volume was not written.
2. ``unexport_root``: the volume in-use (or error) -> ``downloading`` (with a deadline
   the reaper reads; on timeout: error), and its NBD export removed (volume
   1.0 ``unexport_volume``), so the storage daemon neither serves nor
   caches the old bytes while they change. Revert: exported again (the
   guest and its agent can reach the disk), and the volume as it was
   (in-use, or error with its reason), or ``error`` with the reason when
   the re-image may have written it.
3. ``reimage_root``: right before the call, the ``downloading`` deadline is
   pushed to the call's timeout plus :data:`DEADLINE_MARGIN` (the reaper
   must not end a re-image its call still waits for); the volume host
   writes the image over the volume file (volume 1.6 ``reimage_volume``,
   volume.reimage): same volume id, size, file and attachment. Its answer
   says whether the bytes changed; a lost answer (or a conductor restart
   during the call) counts as changed. No revert of its own (step 2's).
4. ``export_root``: exported again (the same connection: the export is
   named after the volume), the volume in-use with the new image's id and
   metadata (``volume_image_metadata``). No revert (step 2's).

``rebuild_on_host`` then has the agent define the guest again around its
volumes and start it unless the server was stopped (compute 1.14
``rebuild_instance`` with ``volume_backed``); ``record_image`` leaves the
server's ``image_ref`` "" (volume-backed). A server rebuilt with its own
image below 2.93 (Nova's behaviour) runs only those two steps: the guest
defined again and restarted, the volume untouched.

A failure whose volume was written leaves the server in ERROR with a fault
saying so (the root volume holds the new image, or part of it); a failed
or lost re-image leaves the volume in ``error`` with the reason, exported
again and still attached. A new 2.93 rebuild may start from that volume
(:func:`left_by_failed_reimage`: ``error`` with a re-image's reason) and
writes it afresh; otherwise an administrator resets its status
(``os-reset_status``) or the server is deleted. A failure before the write
leaves both as they were.

A server deleted during the rebuild leaves its root volume to this flow
(``downloading`` is not released by the delete): the flow releases it at
its end, whatever the outcome, honouring ``delete_on_termination`` as the
delete would (``release_if_gone``, conductor/flows/volume.py).
"""

from __future__ import annotations

import logging

from oslo_config import cfg

from conductor.flows.runner import Step
from conductor.flows.volume import _status
from flotilla import exception, images
from flotilla import states as st
from flotilla.db import volumes as vdb
from flotilla.volume_placement import image_metadata

LOG = logging.getLogger(__name__)

#: Seconds the agent may take to power the guest off (a clean shutdown
#: waits up to [compute] shutdown_timeout, then destroys).
POWER_TIMEOUT = 180
#: Seconds the ``downloading`` deadline outlasts the re-image call's
#: timeout: the call's answer travels and ``export_root`` follows it.
DEADLINE_MARGIN = 120


#: The status_reason starts of a root volume a failed or lost re-image
#: left in error (this flow's revert, volume.recovery, the reaper).
REIMAGE_ERROR_REASONS = ("re-image", "downloading timed out")


def left_by_failed_reimage(volume) -> bool:
    """The volume is in error because a re-image failed (a new re-image
    may start from it)."""
    return volume.status == st.VOLUME_ERROR and \
        (volume.status_reason or "").startswith(REIMAGE_ERROR_REASONS)


class ReimageFailed(exception.FlotillaException):
    msg_fmt = "Re-image of root volume %(volume_id)s failed: %(reason)s"
    public_msg = "The server's root volume could not be re-imaged."


def root_attachment(instance_uuid: str):
    """The attachment of the volume the server boots from, or None."""
    for attachment in vdb.attachments_of_instance(instance_uuid):
        if attachment.boot_index == 0:
            return attachment
    return None


class StopGuest(Step):
    """The guest off. Revert: on again when it ran and its disk was not
    written."""

    name = "stop_guest"

    def __init__(self, compute, volumes) -> None:
        self.compute = compute
        self.volumes = volumes

    def check(self, state) -> None:
        if not self.compute.can_rebuild_volume_backed():
            raise exception.Conflict(reason="the compute agents are capped below RPC "
                                     "1.14 ([upgrade_levels] compute)")
        if not self.volumes.can_reimage():
            raise exception.Conflict(reason="the volume services are capped below RPC "
                                     "1.6 ([upgrade_levels] volume)")
        attachment = root_attachment(state.instance_uuid)
        if attachment is None or attachment.volume_id != state.root_volume_id:
            raise exception.Conflict(reason="the server's root volume changed")
        volume = vdb.volume_get(state.root_volume_id)
        if volume.readonly:
            raise exception.Conflict(reason="its root volume %s is read-only" % volume.id)
        if volume.status != st.VOLUME_IN_USE and not left_by_failed_reimage(volume):
            raise vdb.VolumeStatusConflict(volume_id=volume.id, actual=volume.status,
                                           expected=st.VOLUME_IN_USE)

    def execute(self, state) -> None:
        self.compute.set_guest_power(state.ctxt, state.host, state.instance_uuid, False,
                                     timeout=POWER_TIMEOUT)

    def revert(self, state) -> None:
        if state.power_on and not state.may_be_written:
            self.compute.set_guest_power(state.ctxt, state.host, state.instance_uuid, True,
                                         timeout=POWER_TIMEOUT)


class UnexportRoot(Step):
    """in-use -> downloading, export removed. Revert: exported, in-use (or
    error when written)."""

    name = "unexport_root"

    def __init__(self, conf: cfg.ConfigOpts, volumes) -> None:
        self.conf = conf
        self.volumes = volumes

    def execute(self, state) -> None:
        volume = vdb.volume_get(state.root_volume_id)
        # A failed re-image's error is re-imaged again; kept for the revert.
        state.root_was = {"status": volume.status, "status_reason": volume.status_reason} \
            if left_by_failed_reimage(volume) else {}
        _status(self.conf, state.root_volume_id, st.VOLUME_DOWNLOADING,
                st.VOLUME_ERROR if state.root_was else st.VOLUME_IN_USE,
                status_reason=None)
        self.volumes.unexport_volume(state.ctxt, state.volume_host, state.root_volume_id)

    def revert(self, state) -> None:
        self.volumes.export_volume(state.ctxt, state.volume_host, state.root_volume_id)
        values = dict(state.root_was or {"status": st.VOLUME_IN_USE,
                                         "status_reason": None})
        if state.may_be_written:
            what = ("re-imaged from image %s, then not exported again" % state.image_id
                    if state.reimaged else "re-image from image %s failed: %s"
                    % (state.image_id, state.reimage_error or "no answer"))
            values = {"status": st.VOLUME_ERROR, "status_reason": what[:255]}
        try:
            vdb.volume_update(state.root_volume_id, values,
                              expected_status=st.VOLUME_DOWNLOADING)
        except exception.FlotillaException as exc:
            LOG.info("volume %s not moved back: %s", state.root_volume_id, exc)


class ReimageRoot(Step):
    """The volume host writes the image over the volume. No revert."""

    name = "reimage_root"

    def __init__(self, conf: cfg.ConfigOpts, volumes) -> None:
        self.conf = conf
        self.volumes = volumes

    def execute(self, state) -> None:
        image = images.check_image_usable(state.ctxt, state.image_id)
        state.image_meta = image_metadata(image)
        timeout = self.conf.volume.operation_timeout
        # The reaper must not end the re-image while its call may still
        # answer: the deadline covers the call (a CAS: a volume no longer
        # downloading is not written).
        vdb.volume_update(state.root_volume_id,
                          {"status_deadline": vdb.deadline(timeout + DEADLINE_MARGIN)},
                          expected_status=st.VOLUME_DOWNLOADING)
        # Saved before the call: a conductor restarted during it counts the
        # volume as written (reimage_pending) until an answer says otherwise.
        state.reimage_pending = True
        state.recorder.save(flow_data=state.to_data())
        try:
            result = self.volumes.reimage_volume(state.ctxt, state.volume_host,
                                                 state.root_volume_id, state.image_id,
                                                 timeout=timeout)
        except Exception as exc:
            state.written = True     # a lost answer counts as changed
            state.reimage_error = "no answer: %s" % type(exc).__name__
            raise
        finally:
            state.reimage_pending = False
        state.written = bool(result.get("written"))
        state.reimaged = not result.get("error")
        if result.get("error"):
            state.reimage_error = str(result["error"])
            raise ReimageFailed(volume_id=state.root_volume_id, reason=result["error"])

    def details(self, state) -> str:
        return "root volume re-imaged from image %s" % state.image_id


class ExportRoot(Step):
    """Exported again, in-use with the new image's metadata. No revert."""

    name = "export_root"

    def __init__(self, conf: cfg.ConfigOpts, volumes) -> None:
        self.conf = conf
        self.volumes = volumes

    def execute(self, state) -> None:
        connection = self.volumes.export_volume(state.ctxt, state.volume_host,
                                                state.root_volume_id)
        attachment = root_attachment(state.instance_uuid)
        if attachment is not None and connection:
            vdb.attachment_update(attachment.uuid, {"connection_info": dict(connection)})
        vdb.volume_update(state.root_volume_id,
                          {"status": st.VOLUME_IN_USE, "status_reason": None,
                           "image_id": state.image_id, "bootable": True,
                           "image_metadata": dict(state.image_meta or {})},
                          expected_status=st.VOLUME_DOWNLOADING)


def reimage_steps(conf: cfg.ConfigOpts, compute, volumes) -> list[Step]:
    """The steps before ``rebuild_on_host`` that re-image the root volume."""
    return [StopGuest(compute, volumes), UnexportRoot(conf, volumes),
            ReimageRoot(conf, volumes), ExportRoot(conf, volumes)]

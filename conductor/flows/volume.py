"""The volume attach and detach flows (issue 11).

The API has already reserved the volume (available -> reserved, an
attachment row naming the server and its host) or marked it detaching
(in-use -> detaching), recorded the instance action (``attach_volume`` /
``detach_volume``) under the request id, on which the runner keeps the
flow's state. Every volume status change is a compare-and-swap.

Attach steps (each reverted in reverse on failure):

1. ``reserve``: reserved -> attaching. Revert: back to available and the
   attachment row removed.
2. ``export``: the volume host exports the volume over NBD (a call).
   Revert: unexport.
3. ``attach_on_host``: the compute host plugs the export into the guest,
   live and persistent, at the device the API had it reserve (the next
   free one if that was taken since), and says which it took (a call). Revert:
   detach it again (waiting for the guest up to [volume] detach_timeout).
4. ``in_use``: attaching -> in-use, the attachment attached with its
   device and connection.

Detach steps:

1. ``detach_on_host``: the compute host asks the guest to let go and waits
   for libvirt's device-removed event, asking again, up to [volume]
   detach_timeout. A failure leaves the volume in error with the reason,
   still attached and exported (the user may ask again) - unless the host,
   asked once more, says the disk is gone after all (an agent killed while
   it waited: the guest let go meanwhile); then the detach completes.
2. ``unexport``: the volume host removes the export.
3. ``available``: the attachment removed, detaching -> available.

A server's delete releases its volumes once its guest is gone
(:meth:`VolumeFlow.release_instance`; a volume whose attach or detach is in
flight is released by that flow when it ends) and deletes those attached with
``delete_on_termination`` (boot from volume, conductor.flows.build_volumes). The reaper ends a transitional
status past its deadline (:meth:`VolumeFlow.reap`).
"""

from __future__ import annotations

import dataclasses
import logging

from oslo_config import cfg

from conductor.flows import runner, snapshot_reaper
from conductor.flows.base import Flow
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import exception, volume_upload
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from flotilla.objects import BlockDeviceMapping

LOG = logging.getLogger(__name__)

ATTACH = "attach_volume"
DETACH = "detach_volume"
# The statuses a server's delete releases; the other ones with an
# attachment (reserved, attaching, detaching) belong to a flow in flight.
RELEASABLE = (st.VOLUME_IN_USE, st.VOLUME_ERROR, st.VOLUME_ERROR_EXTENDING)
# An upload to an image reads an attached volume through a point-in-time
# copy, so its server may go (as Cinder lets a detach end an upload); the
# upload then finds the volume released and leaves it so.
RELEASABLE += (st.VOLUME_UPLOADING,)


def attached_volumes(instance_uuid: str) -> list[BlockDeviceMapping]:
    """The instance's plugged volumes as another host defines them (a live
    migration's destination, an evacuation's, a cold move's, a rebuild's):
    the same NBD connections (the volume host serves every host) and devices.

    Raises VolumeNotSettled for an attachment without its connection (an
    attach or detach under way, which the API refuses to start a move
    beside but which may have begun since): leaving it out would define the
    guest without that disk, silently."""
    found = []
    for a in vdb.attachments_of_instance(instance_uuid):
        if not a.connection_info:
            raise exception.VolumeNotSettled(
                volume_id=a.volume_id, instance_uuid=instance_uuid,
                attachment_id=a.uuid, status=a.status)
        found.append(BlockDeviceMapping(
            source_type="volume", destination_type="volume", boot_index=a.boot_index,
            device_name=a.device, volume_id=a.volume_id,
            connection_info=a.connection_info, attachment_id=a.uuid,
            delete_on_termination=a.delete_on_termination))
    return found


@dataclasses.dataclass
class VolumeState(FlowState):
    volume_id: str = ""
    attachment_id: str = ""
    volume_host: str = ""
    host: str = ""
    connection: dict | None = None
    device: str | None = None


def _status(conf, volume_id: str, status: str, expected, **values) -> None:
    if status in st.VOLUME_TRANSITIONAL:
        values["status_deadline"] = vdb.deadline(conf.volume.operation_timeout)
    vdb.volume_update(volume_id, {"status": status, **values}, expected_status=expected)


def delete_volume(conf: cfg.ConfigOpts, volumes, ctxt, volume_id: str) -> None:
    """Delete a volume the cloud made for a server (its build failed, or
    the server went with ``delete_on_termination``): deleting by
    compare-and-swap, then flotilla-volume removes it; a volume never made
    on a host is removed at once. One already gone is no error."""
    try:
        volume = vdb.volume_get(volume_id)
        vdb.volume_update(volume_id, {
            "status": st.VOLUME_DELETING,
            "status_deadline": vdb.deadline(conf.volume.operation_timeout)},
            expected_status=(st.VOLUME_AVAILABLE, st.VOLUME_ERROR, st.VOLUME_CREATING))
    except vdb.VolumeNotFound:
        return
    except vdb.VolumeStatusConflict as exc:
        LOG.warning("volume %s not deleted: %s", volume_id, exc)
        return
    if volume.host:
        volumes.delete_volume(ctxt, volume.host, volume_id)
    else:
        vdb.volume_destroy(volume_id, expected_status=st.VOLUME_DELETING)


class Reserve(Step):
    """reserved -> attaching. Revert: available again, attachment removed."""

    name = "reserve"

    def __init__(self, conf) -> None:
        self.conf = conf

    def check(self, state: VolumeState) -> None:
        volume = vdb.volume_get(state.volume_id)
        if volume.status != st.VOLUME_RESERVED:
            raise vdb.VolumeStatusConflict(volume_id=volume.id, actual=volume.status,
                                           expected=st.VOLUME_RESERVED)
        vdb.attachment_get(state.attachment_id)
        inst = db.instance_get(state.instance_uuid)
        if inst.host != state.host or inst.vm_state not in st.VOLUME_ATTACH_VM_STATES:
            raise exception.Conflict(reason="the server is %s on %s" % (inst.vm_state,
                                                                         inst.host))

    def execute(self, state: VolumeState) -> None:
        _status(self.conf, state.volume_id, st.VOLUME_ATTACHING, st.VOLUME_RESERVED)

    def revert(self, state: VolumeState) -> None:
        vdb.attachment_delete(state.attachment_id)
        try:
            vdb.volume_update(state.volume_id, {"status": st.VOLUME_AVAILABLE},
                              expected_status=(st.VOLUME_RESERVED, st.VOLUME_ATTACHING))
        except exception.FlotillaException as exc:
            LOG.warning("volume %s not made available again: %s", state.volume_id, exc)


class Export(Step):
    """The volume host exports the volume. Revert: unexport it."""

    name = "export"

    def __init__(self, volumes) -> None:
        self.volumes = volumes

    def execute(self, state: VolumeState) -> None:
        state.connection = self.volumes.export_volume(state.ctxt, state.volume_host,
                                                      state.volume_id)

    def revert(self, state: VolumeState) -> None:
        self.volumes.unexport_volume(state.ctxt, state.volume_host, state.volume_id)


class AttachOnHost(Step):
    """The compute host plugs the export in. Revert: detach it again."""

    name = "attach_on_host"

    def __init__(self, conf, compute) -> None:
        self.conf = conf
        self.compute = compute

    def execute(self, state: VolumeState) -> None:
        # The device the API had the agent reserve (None: let it choose).
        state.device = self.compute.attach_volume(state.ctxt, state.host, state.instance_uuid,
                                                  state.connection, state.device)

    def revert(self, state: VolumeState) -> None:
        self.compute.detach_volume(state.ctxt, state.host, state.instance_uuid,
                                   state.volume_id, self.conf.volume.detach_timeout)

    def details(self, state: VolumeState) -> str | None:
        return "device %s" % state.device


class InUse(Step):
    """attaching -> in-use; the attachment records device and connection."""

    name = "in_use"

    def execute(self, state: VolumeState) -> None:
        vdb.attachment_update(state.attachment_id, {
            "status": "attached", "device": state.device,
            "connection_info": state.connection})
        vdb.volume_update(state.volume_id, {"status": st.VOLUME_IN_USE},
                          expected_status=st.VOLUME_ATTACHING)


class DetachOnHost(Step):
    """The guest lets go (waiting for the device-removed event). No revert:
    a detach that failed leaves the disk attached; the flow's failure
    handler puts the volume in error with the reason."""

    name = "detach_on_host"

    def __init__(self, conf, compute) -> None:
        self.conf = conf
        self.compute = compute

    def check(self, state: VolumeState) -> None:
        volume = vdb.volume_get(state.volume_id)
        if volume.status != st.VOLUME_DETACHING:
            raise vdb.VolumeStatusConflict(volume_id=volume.id, actual=volume.status,
                                           expected=st.VOLUME_DETACHING)

    def execute(self, state: VolumeState) -> None:
        state.device = self.compute.detach_volume(state.ctxt, state.host, state.instance_uuid,
                                                  state.volume_id,
                                                  self.conf.volume.detach_timeout)


class Unexport(Step):
    """The volume host removes the export. No revert (nothing uses it)."""

    name = "unexport"

    def __init__(self, volumes) -> None:
        self.volumes = volumes

    def execute(self, state: VolumeState) -> None:
        self.volumes.unexport_volume(state.ctxt, state.volume_host, state.volume_id)


class Available(Step):
    """Attachment removed, detaching -> available."""

    name = "available"

    def execute(self, state: VolumeState) -> None:
        vdb.attachment_delete(state.attachment_id)
        vdb.volume_update(state.volume_id, {"status": st.VOLUME_AVAILABLE,
                                            "status_reason": None},
                          expected_status=st.VOLUME_DETACHING)


class VolumeFlow(Flow):
    name = "volume"

    def __init__(self, conf: cfg.ConfigOpts, host: str, compute, volumes) -> None:
        super().__init__(conf, host)
        self.compute = compute
        self.volumes = volumes

    def attach_steps(self) -> list[Step]:
        return [Reserve(self.conf), Export(self.volumes),
                AttachOnHost(self.conf, self.compute), InUse()]

    def detach_steps(self) -> list[Step]:
        return [DetachOnHost(self.conf, self.compute), Unexport(self.volumes), Available()]

    def _state(self, ctxt, instance_uuid, volume_id, attachment_id) -> VolumeState:
        volume = vdb.volume_get(volume_id)
        attachment = vdb.attachment_get(attachment_id)
        return VolumeState(ctxt, instance_uuid, volume_id=volume_id,
                           attachment_id=attachment_id, volume_host=volume.host or "",
                           host=attachment.host or "",
                           connection=attachment.connection_info,
                           device=attachment.device)

    def attach(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
               attachment_id: str) -> None:
        recorder = self.recorder(instance_uuid, ctxt.request_id, ATTACH)
        try:
            state = self._state(ctxt, instance_uuid, volume_id, attachment_id)
            runner.run_flow("volume_attach", self.attach_steps(), state, recorder)
        except FlowFailed as failed:
            self._attach_failed(ctxt, instance_uuid, volume_id, attachment_id, failed)
            return
        except exception.NotFound as exc:
            LOG.warning("attach of volume %s to %s: %s", volume_id, instance_uuid, exc)
            recorder.reporter.finish(ctxt, instance_uuid, failed=True)
            return
        # Deleted between the guest's attach and in-use: free the volume.
        self.release_if_gone(ctxt, instance_uuid, volume_id)
        recorder.reporter.finish(ctxt, instance_uuid)

    def _attach_failed(self, ctxt, instance_uuid, volume_id, attachment_id,
                       failed: FlowFailed) -> None:
        # A failed check reverted nothing: undo the API's reservation here.
        Reserve(self.conf).revert(VolumeState(ctxt, instance_uuid, volume_id=volume_id,
                                              attachment_id=attachment_id))
        reporter = self.recorder(instance_uuid, ctxt.request_id, ATTACH).reporter
        reporter.fault(ctxt, instance_uuid, failed.cause)
        reporter.finish(ctxt, instance_uuid, failed=True)
        LOG.warning("attach of volume %s to %s failed: %s", volume_id, instance_uuid, failed)

    def detach(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
               attachment_id: str) -> None:
        recorder = self.recorder(instance_uuid, ctxt.request_id, DETACH)
        try:
            state = self._state(ctxt, instance_uuid, volume_id, attachment_id)
            runner.run_flow("volume_detach", self.detach_steps(), state, recorder)
        except FlowFailed as failed:
            if failed.step == DetachOnHost.name and self._complete_released(state):
                recorder.reporter.finish(ctxt, instance_uuid)
                return
            reason = "detach failed at %s: %s" % (failed.step, failed.cause)
            try:
                vdb.volume_update(volume_id, {"status": st.VOLUME_ERROR,
                                              "status_reason": reason[:1000]},
                                  expected_status=st.VOLUME_DETACHING)
            except exception.FlotillaException as exc:
                LOG.warning("volume %s: %s", volume_id, exc)
            # The server deleted meanwhile (its guest, and the disk, gone):
            # its release left the volume to this flow, which frees it.
            self.release_if_gone(ctxt, instance_uuid, volume_id)
            recorder.reporter.fault(ctxt, instance_uuid, failed.cause)
            recorder.reporter.finish(ctxt, instance_uuid, failed=True)
            LOG.warning("detach of volume %s from %s failed: %s", volume_id,
                        instance_uuid, failed)
            return
        except exception.NotFound as exc:
            LOG.warning("detach of volume %s from %s: %s", volume_id, instance_uuid, exc)
            recorder.reporter.finish(ctxt, instance_uuid, failed=True)
            return
        recorder.reporter.finish(ctxt, instance_uuid)

    def _complete_released(self, state: VolumeState) -> bool:
        """After a failed detach_on_host: if the host (asked again) no longer
        has the disk, unexport and make the volume available; whether it did.
        Only for a volume still detaching (not one whose check failed)."""
        try:
            if vdb.volume_get(state.volume_id).status != st.VOLUME_DETACHING:
                return False
            devices = self.compute.get_volume_devices(state.ctxt, state.host,
                                                      state.instance_uuid)
        except Exception as exc:
            LOG.info("volume %s: %s not asked whether the disk is gone: %s",
                     state.volume_id, state.host, exc)
            return False
        if state.volume_id in devices:
            return False
        try:
            Unexport(self.volumes).execute(state)
            Available().execute(state)
        except Exception as exc:
            LOG.warning("volume %s: released by the guest, but not completed: %s",
                        state.volume_id, exc)
            return False
        LOG.warning("volume %s: its detach failed, but %s says the guest let go: "
                    "detached", state.volume_id, state.host)
        return True

    def release_instance(self, ctxt: RequestContext, instance_uuid: str) -> int:
        """The server is gone (its guest destroyed): unexport its volumes,
        remove their attachments and make them available; how many.

        Only an ``in-use`` or ``error`` volume is released here (each
        change a compare-and-swap). One in ``reserved``, ``attaching`` or
        ``detaching`` belongs to a flow in flight: it is left to that flow,
        which ends it itself when it finds the server gone (an attach
        reverts; a detach completes, see :meth:`release_if_gone`) - making
        it available under the flow would let a new attach be exported and
        then unexported by the old flow's next step."""
        released = 0
        for attachment in vdb.attachments_of_instance(instance_uuid):
            if self._release(ctxt, instance_uuid, attachment):
                released += 1
        if released:
            LOG.info("released %d volume(s) of deleted server %s", released, instance_uuid)
        return released

    def _release(self, ctxt: RequestContext, instance_uuid: str, attachment) -> bool:
        try:
            volume = vdb.volume_get(attachment.volume_id)
        except vdb.VolumeNotFound:
            vdb.attachment_delete(attachment.uuid)
            return False
        if volume.status not in RELEASABLE:
            LOG.info("volume %s of deleted server %s is %s: left to its flow in flight",
                     volume.id, instance_uuid, volume.status)
            return False
        try:
            if volume.host:
                self.volumes.unexport_volume(ctxt, volume.host, volume.id)
        except Exception as exc:
            LOG.error("volume %s of deleted server %s not unexported: %s",
                      volume.id, instance_uuid, exc)
            try:
                vdb.volume_update(volume.id, {"status": st.VOLUME_ERROR,
                                              "status_reason": "unexport failed after "
                                              "the server's delete"},
                                  expected_status=RELEASABLE)
            except exception.FlotillaException as conflict:
                LOG.warning("volume %s: %s", volume.id, conflict)
            return False
        try:
            vdb.attachment_release(attachment.uuid, volume.id,
                                   {"status": st.VOLUME_AVAILABLE, "status_reason": None},
                                   expected_status=RELEASABLE)
        except exception.FlotillaException as conflict:
            # A detach began meanwhile: its flow ends the volume (and the
            # attachment) itself.
            LOG.warning("volume %s of deleted server %s not released: %s", volume.id,
                        instance_uuid, conflict)
            return False
        if attachment.delete_on_termination:
            LOG.info("deleting volume %s with its server %s (delete_on_termination)",
                     volume.id, instance_uuid)
            delete_volume(self.conf, self.volumes, ctxt, volume.id)
        return True

    def release_if_gone(self, ctxt: RequestContext, instance_uuid: str,
                         volume_id: str) -> bool:
        """After an attach or detach flow: when the server was deleted while
        it ran (its release left this volume to the flow), release the
        volume now; whether the server is gone."""
        try:
            db.instance_get(instance_uuid)
            return False
        except exception.InstanceNotFound:
            pass
        for attachment in vdb.attachments_of_instance(instance_uuid):
            if attachment.volume_id == volume_id:
                LOG.info("server %s was deleted during a flow of volume %s: released",
                         instance_uuid, volume_id)
                self._release(ctxt, instance_uuid, attachment)
        return True

    def reap(self) -> int:
        """End every transitional volume status past its deadline."""
        ended = 0
        for volume in vdb.volume_get_expired():
            if volume.status == st.VOLUME_UPLOADING:
                # Only the upload that is still past its deadline and still
                # owns the volume (flotilla.volume_upload: a heartbeat or a
                # later upload of the same volume wins).
                to = volume_upload.reap_upload(self.conf, volume)
                if to is not None:
                    LOG.warning("volume %s: uploading timed out, now %s", volume.id, to)
                    ended += 1
                continue
            to = st.VOLUME_ON_TIMEOUT[volume.status]
            if volume.status == st.VOLUME_EXTENDING and \
                    vdb.attachments_of_volume(volume.id):
                to = st.VOLUME_IN_USE   # attached: usable again (see volume_extend)
            try:
                vdb.volume_update(volume.id, {
                    "status": to, "status_reason": "%s timed out (deadline %s)"
                    % (volume.status, volume.status_deadline.isoformat())},
                    expected_status=volume.status)
            except exception.FlotillaException:
                continue   # it moved on by itself
            LOG.warning("volume %s: %s timed out, now %s", volume.id, volume.status, to)
            ended += 1
        # Images of uploads released and then abandoned (their service died).
        volume_upload.discard_orphans(self.conf, older_than=self.conf.volume.operation_timeout)
        return ended + snapshot_reaper.reap()

    def resume(self, record: db.FlowRecord) -> None:
        """A conductor restarted in a volume flow: revert what it did (an
        attach) or end the detach in error; the reaper catches the rest."""
        state = VolumeState.from_data(record.flow_data or {})
        recorder = self.recorder(record.instance_uuid, record.ref.key[1],
                                 ATTACH if record.flow == "volume_attach" else DETACH)
        steps = self.attach_steps() if record.flow == "volume_attach" else self.detach_steps()
        try:
            runner.resume_flow(steps, state, recorder, record)
        except FlowFailed:
            recorder.reporter.finish(state.ctxt, state.instance_uuid, failed=True)
            return
        recorder.reporter.finish(state.ctxt, state.instance_uuid)

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        return False   # volume operations put no task on the server

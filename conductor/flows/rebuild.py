"""The rebuild flow: the server's root disk replaced from an image, on its host.

The API has already checked the image, put the server in task
``rebuilding`` (with any new name or metadata) and recorded the
``rebuild`` action under the request id, on which this flow keeps its
state.

Steps (conductor/flows/runner.py):

0. a server booted from a volume, rebuilt from compute 2.93 (conductor
   1.14 ``reimage_boot_volume``), first has its root volume re-imaged in
   place: ``stop_guest``, ``unexport_root``, ``reimage_root``,
   ``export_root`` (conductor/flows/rebuild_volume.py states them and
   their reverts);
1. ``rebuild_on_host``: cast ``rebuild_instance`` to the server's host with
   what to fetch (a signed download URL of the image), whether to start
   the guest (a stopped server stays stopped) and the volumes attached to
   it (compute 1.9: the guest is defined again with them); wait for the agent's report
   (``rebuild_done``). The agent enters ``rebuild_spawning``, replaces the
   disk, and after its report leaves the server active (or stopped) with no
   task; on a failure it leaves it as it was when its old disk survived,
   else in ERROR, and reports why. A lost report is found by the poll: the
   task over means done, unless the server is in ERROR. A server booted
   from a volume is cast with ``volume_backed`` (compute 1.14): no image to
   fetch, the guest defined again around its volumes.
2. ``record_image``: the server's ``image_ref`` becomes the new image (a
   server booted from a volume keeps "", as Nova's; its root volume's
   image metadata names the image).

A failure ends the action in Error with a fault; a task the agent could not
clear (the cast found no agent) is cleared here. A failure once the root
volume may have been written (a re-image answered written, or lost), at
whatever step, ends the server in ERROR (even one the agent left active or
stopped) with a fault saying the root volume holds the new image (or may be
half written): never "unchanged". A server deleted during a rebuild that
re-images has its root volume released at the flow's end (the delete left
it to this flow). The reaper ends a rebuild past its deadline in ERROR:
the disk may be half replaced.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from oslo_config import cfg

from conductor.flows import runner
from conductor.flows.base import Flow
from conductor.flows.rebuild_volume import reimage_steps, root_attachment
from conductor.flows.runner import FlowFailed, FlowState, Step
from conductor.flows.volume import attached_volumes
from flotilla import exception, images
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from flotilla.objects import ImageMeta

LOG = logging.getLogger(__name__)

OPERATION = st.operation("rebuild")
REBUILD_TASKS = OPERATION.task_states


class RebuildNotDone(exception.FlotillaException):
    """A rebuild failed; ``public`` says why to the server's owner."""

    msg_fmt = "Rebuild from image %(image_id)s failed: %(reason)s"
    public_msg = "The rebuild of the server failed."

    def __init__(self, public: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if public:
            self.public_msg = public


@dataclasses.dataclass
class RebuildState(FlowState):
    image_id: str = ""
    host: str = ""
    power_on: bool = True
    #: a server booted from a volume (compute 1.14: no image to fetch)
    volume_backed: bool = False
    #: its root volume is re-imaged first (compute 2.93)
    reimage: bool = False
    root_volume_id: str = ""
    volume_host: str = ""
    #: the re-image may have changed the root volume's bytes (its answer)
    written: bool = False
    #: the re-image call was sent and not answered yet (saved before it:
    #: a conductor restarted during the call counts the volume as written)
    reimage_pending: bool = False
    #: the re-image answered success: the root volume holds the new image
    reimaged: bool = False
    reimage_error: str = ""
    #: the root volume's status and reason when a failed re-image had left
    #: it in error (unexport_root's revert puts it back)
    root_was: dict = dataclasses.field(default_factory=dict)
    image_meta: dict = dataclasses.field(default_factory=dict)

    @property
    def may_be_written(self) -> bool:
        return self.written or self.reimage_pending


def clear_task(instance_uuid: str, values: dict | None = None) -> bool:
    """End a rebuild task (with ``values``); False when the server is gone
    or no longer rebuilding."""
    try:
        db.instance_update(instance_uuid,
                           {"task_state": None, "task_deadline": None, **(values or {})},
                           expected_task_state=REBUILD_TASKS)
        return True
    except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
        LOG.info("rebuild task of %s not cleared: %s", instance_uuid, exc)
        return False


class RootVolumeWritten(exception.FlotillaException):
    msg_fmt = "Rebuild from image %(image_id)s failed after its root volume was %(how)s: " \
              "%(reason)s"
    public_msg = None

    def __init__(self, public: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.public_msg = public


class RebuildOnHost(Step):
    """Cast the rebuild to the server's host and wait for its report.

    Revert: clear a rebuild task the agent did not (it never received the
    cast); an agent that failed left the server as its report says.
    """

    name = "rebuild_on_host"
    waits_for_report = True

    def __init__(self, conf: cfg.ConfigOpts, compute) -> None:
        self.conf = conf
        self.compute = compute

    def check(self, state: RebuildState) -> None:
        inst = db.instance_get(state.instance_uuid)
        if inst.task_state != st.REBUILDING or inst.host != state.host:
            raise exception.InstanceStateConflict(
                instance_uuid=state.instance_uuid, actual_vm_state=inst.vm_state,
                actual_task_state=inst.task_state, expected_vm_state="any",
                expected_task_state=st.REBUILDING)

        if state.volume_backed and not self.compute.client.can_send_version("1.14"):
            raise RebuildNotDone(
                public="The server's host cannot rebuild a server booted from a volume "
                       "yet.", image_id=state.image_id,
                reason="the compute agents are capped below RPC 1.14 "
                       "([upgrade_levels] compute)")
        if attached_volumes(state.instance_uuid) and \
                not self.compute.client.can_send_version("1.9"):
            raise RebuildNotDone(
                public="The server's host cannot rebuild it with its volumes yet.",
                image_id=state.image_id,
                reason="its volumes would be dropped: the compute agents are capped "
                       "below RPC 1.9 ([upgrade_levels] compute)")

    def execute(self, state: RebuildState) -> None:
        # The guest is defined anew around its new root disk: with the
        # volumes it has now, on the same NBD exports.
        volumes = attached_volumes(state.instance_uuid)
        extra = {"block_device_mapping": volumes} if volumes else {}
        if state.volume_backed:
            # No image to fetch (its root volume holds it): the image may
            # even be deleted by now.
            self.compute.rebuild_instance(state.ctxt, state.host, state.instance_uuid, None,
                                          state.power_on, block_device_mapping=volumes,
                                          volume_backed=True)
            return
        image = ImageMeta.from_record(images.compute_image_ref(self.conf, state.image_id))
        self.compute.rebuild_instance(state.ctxt, state.host, state.instance_uuid, image,
                                      state.power_on, **extra)

    def on_report(self, state: RebuildState, report: dict[str, Any]) -> None:
        if report.get("error"):
            raise RebuildNotDone(public=report.get("message"), image_id=state.image_id,
                                 reason=report["error"])

    def poll(self, state: RebuildState) -> dict[str, Any] | None:
        try:
            inst = db.instance_get(state.instance_uuid)
        except exception.InstanceNotFound:
            return {"error": "the server was deleted",
                    "message": "The server was deleted during the rebuild."}
        if inst.task_state in REBUILD_TASKS:
            return None
        if inst.vm_state == st.ERROR:
            return {"error": "the server ended its rebuild in ERROR"}
        return {}

    def revert(self, state: RebuildState) -> None:
        clear_task(state.instance_uuid)


class RecordImage(Step):
    """The server's image is the new one. Resumable. Revert: none (last)."""

    name = "record_image"
    resumable = True

    def execute(self, state: RebuildState) -> None:
        if state.volume_backed:
            return   # image_ref stays "": the root volume's metadata names the image
        try:
            db.instance_update(state.instance_uuid, {"image_ref": state.image_id})
        except exception.InstanceNotFound:
            pass   # deleted right after: nothing to record on

    def details(self, state: RebuildState) -> str:
        return "rebuilt from image %s" % state.image_id


class RebuildFlow(Flow):
    name = "rebuild"

    def __init__(self, conf: cfg.ConfigOpts, host: str, compute, volumes=None) -> None:
        super().__init__(conf, host)
        self.compute = compute
        self.volumes = volumes
        # (ctxt, instance_uuid, volume_id) -> whether the server was gone:
        # the volume flow's release of a deleted server's volume (set by
        # the conductor manager).
        self.release_if_gone = None

    def steps(self, state: RebuildState | None = None) -> list[Step]:
        first = reimage_steps(self.conf, self.compute, self.volumes) \
            if state is not None and state.reimage else []
        return [*first, RebuildOnHost(self.conf, self.compute), RecordImage()]

    def start(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
              volume_backed: bool = False, reimage_boot_volume: bool = False) -> None:
        try:
            inst = db.instance_get(instance_uuid)
        except exception.InstanceNotFound:
            return
        state = RebuildState(ctxt, instance_uuid, image_id=image_id, host=inst.host or "",
                             power_on=inst.vm_state != st.STOPPED,
                             volume_backed=bool(volume_backed),
                             reimage=bool(volume_backed and reimage_boot_volume))
        if state.reimage:
            root = root_attachment(instance_uuid)
            if root is not None:
                state.root_volume_id = root.volume_id
                try:
                    state.volume_host = vdb.volume_get(root.volume_id).host or ""
                except vdb.VolumeNotFound:
                    pass   # stop_guest's check fails the flow with the reason
        recorder = self.recorder(instance_uuid, ctxt.request_id, OPERATION.action)
        try:
            status = runner.run_flow(self.name, self.steps(state), state, recorder)
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        self._finish_if_completed(state, status)

    def report(self, ctxt: RequestContext, instance_uuid: str, host: str,
               report: dict[str, Any]) -> None:
        """An agent's report (``{"error", "message"}``) on its rebuild."""
        record = None
        for candidate in self._candidates(ctxt, instance_uuid):
            if candidate.flow == self.name and candidate.flow_status in runner.UNFINISHED:
                record = candidate
                break
        if record is None:
            LOG.info("rebuild report for %s, which no rebuild flow waits for", instance_uuid)
            return
        state = RebuildState.from_data(record.flow_data or {})
        recorder = self.recorder(instance_uuid, record.ref.key[1], OPERATION.action)
        try:
            status = runner.continue_flow(self.steps(state), state, recorder, report)
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        self._finish_if_completed(state, status)

    def resume(self, record: db.FlowRecord) -> None:
        state = RebuildState.from_data(record.flow_data or {})
        recorder = self.recorder(record.instance_uuid, record.ref.key[1], OPERATION.action)
        try:
            status = runner.resume_flow(self.steps(state), state, recorder, record)
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        self._finish_if_completed(state, status)

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        """A rebuild outlived its deadline: ERROR (its disk may be half
        replaced), the flow failed, the action Error."""
        try:
            db.flow_record_update(db.FlowRecordRef.action(instance.uuid, ctxt.request_id),
                                  expected_status=runner.UNFINISHED,
                                  flow_status=runner.FAILED)
        except exception.NotFound:
            pass
        if not clear_task(instance.uuid, {"vm_state": st.ERROR}):
            return False
        reporter = self.recorder(instance.uuid, ctxt.request_id, OPERATION.action).reporter
        reporter.fault(ctxt, instance.uuid, reason)
        reporter.finish(ctxt, instance.uuid, failed=True)
        return True

    # --- outcomes ---------------------------------------------------------------------

    @staticmethod
    def _candidates(ctxt: RequestContext, instance_uuid: str) -> list[db.FlowRecord]:
        found = []
        if ctxt.request_id:
            try:
                found.append(db.flow_record_get(
                    db.FlowRecordRef.action(instance_uuid, ctxt.request_id)))
            except exception.NotFound:
                pass
        newest = db.flow_record_for_instance(instance_uuid)
        if newest is not None:
            found.append(newest)
        return found

    def _release_root_if_gone(self, state: RebuildState) -> None:
        # The delete of a server left its downloading root volume to this
        # flow: released now (delete_on_termination honoured).
        if not state.reimage or not state.root_volume_id or self.release_if_gone is None:
            return
        try:
            self.release_if_gone(state.ctxt, state.instance_uuid, state.root_volume_id)
        except Exception:
            LOG.exception("root volume %s of server %s not released",
                          state.root_volume_id, state.instance_uuid)

    def _finish_if_completed(self, state: RebuildState, status: str) -> None:
        if status == runner.COMPLETED:
            self._release_root_if_gone(state)
            recorder = self.recorder(state.instance_uuid, state.ctxt.request_id,
                                     OPERATION.action)
            recorder.reporter.finish(state.ctxt, state.instance_uuid)

    def _failed(self, state: RebuildState, failed: FlowFailed) -> None:
        # A check that failed reverted nothing; once the root volume may
        # have been written the server is not as it was, whatever the step
        # and whatever the agent left: ERROR, and a fault saying so.
        cause: exception.FlotillaException | BaseException = failed.cause
        if state.reimage and state.may_be_written:
            how = "re-imaged" if state.reimaged else "partly written"
            public = ("The rebuild failed after the server's root volume was re-imaged: "
                      "it now holds image %s." % state.image_id if state.reimaged else
                      "The server's root volume could not be re-imaged: it may be "
                      "partly written.")
            cause = RootVolumeWritten(public, image_id=state.image_id, how=how,
                                      reason="%s at %s" % (failed.cause, failed.step))
        # The fault first: a client that sees the task over sees why.
        reporter = self.recorder(state.instance_uuid, state.ctxt.request_id,
                                 OPERATION.action).reporter
        reporter.fault(state.ctxt, state.instance_uuid, cause)
        if state.reimage and state.may_be_written:
            try:
                db.instance_update(state.instance_uuid,
                                   {"vm_state": st.ERROR, "task_state": None,
                                    "task_deadline": None},
                                   expected_task_state=(None, *REBUILD_TASKS))
            except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
                LOG.info("rebuilt %s not put in ERROR: %s", state.instance_uuid, exc)
        else:
            clear_task(state.instance_uuid)
        self._release_root_if_gone(state)
        reporter.finish(state.ctxt, state.instance_uuid, failed=True)
        LOG.warning("rebuild of %s failed: %s", state.instance_uuid, failed)

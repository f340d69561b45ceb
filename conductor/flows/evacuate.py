"""The evacuate flow: a server whose host is down is rebuilt on another host.

The API has checked the request (the source's compute service is down or
forced down, the target, if named, is another host that is up and
enabled), put the server in task ``rebuilding`` (the same task as a
rebuild: the destination agent's rebuild does the work), created the
migration record of type ``evacuation`` (status ``accepted``, on which this
flow keeps its state) and recorded the action ``evacuate``.

Steps (conductor/flows/runner.py), every check before any execute:

1. ``choose_destination``: a capacity claim on the destination whose
   consumer is the migration: through the scheduler (the source ignored,
   restricted to the requested host when there is one), or straight on the
   requested host with ``force``. Check: the source is still down (an agent
   that came back keeps its server). Revert: the migration's claim freed.
2. ``move_to_destination``: in one transaction the instance's host becomes
   the destination and the claims swap (flotilla.db.evacuations). From here
   the server belongs to the destination: the dead host's agent, when it
   comes back, finds the instance recorded elsewhere and destroys its stale
   domain and disks at start-up, without touching the database. Resumable;
   no revert (the source is down: there is nowhere to go back to).
3. ``rebuild_on_destination``: cast ``rebuild_instance`` to the destination
   with the server's image (compute RPC 1.2: the agent has no guest, so its
   driver spawns one from the image; a stopped server stays stopped) and
   wait for its ``rebuild_done``; a lost report is found by the poll (the
   task over). Revert: a task the agent never took is ended in ERROR (the
   server has no guest anywhere).
4. ``reattach_volumes``: the server's attached volumes (network volumes:
   their data never was on the dead host) are connected again on the
   destination with the connection recorded on their attachments. One that
   fails stays attached in the database (its data kept) and a fault says
   so. Resumable; no revert.

The migration ends ``done``, or ``failed`` with the reason (the server then
in ERROR on the destination if it had moved, a fault saying why, as Nova).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from oslo_config import cfg

from conductor.flows import runner
from conductor.flows import volume as volume_flows
from conductor.flows.base import Flow
from conductor.flows.rebuild import REBUILD_TASKS, RebuildNotDone, clear_task
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import concurrency, exception, images
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import evacuations as evac_db
from flotilla.db import migration_records as mig_db
from flotilla.db import volumes as volumes_db
from flotilla.objects import ImageMeta, Instance, RequestSpec

LOG = logging.getLogger(__name__)

ACTION = "evacuate"
COMPUTE = "flotilla-compute"


def _boots_from_volume(instance_uuid: str) -> bool:
    """Its root disk is a volume (an attachment with boot index 0)."""
    return any(a.boot_index == 0 for a in volumes_db.attachments_of_instance(instance_uuid))


class EvacuationFailed(exception.FlotillaException):
    msg_fmt = "Evacuation of %(instance_uuid)s failed: %(reason)s"
    public_msg = "The evacuation of the server failed."


@dataclasses.dataclass
class EvacuateState(FlowState):
    migration_uuid: str = ""
    source: str = ""
    dest: str = ""
    requested_host: str | None = None
    force: bool = False
    image_id: str = ""
    power_on: bool = True
    moved: bool = False
    volumes_failed: list = dataclasses.field(default_factory=list)


def source_is_down(conf: cfg.ConfigOpts, host: str) -> bool:
    """Whether ``host``'s compute service is down (no heartbeat within
    ``service_down_time``, or forced down by an operator)."""
    try:
        service = db.service_get(host, COMPUTE)
    except exception.ServiceNotFound:
        return True
    return not db.service_is_up(service, conf.service_down_time)


class ChooseDestination(Step):
    """Claim on the destination for the migration. Revert: claim freed."""

    name = "choose_destination"

    def __init__(self, conf: cfg.ConfigOpts, scheduler) -> None:
        self.conf = conf
        self.scheduler = scheduler

    def check(self, state: EvacuateState) -> None:
        inst = db.instance_get(state.instance_uuid)
        if inst.task_state != st.REBUILDING or inst.host != state.source:
            raise exception.InstanceStateConflict(
                instance_uuid=state.instance_uuid, actual_vm_state=inst.vm_state,
                actual_task_state=inst.task_state, expected_vm_state="any",
                expected_task_state=st.REBUILDING)
        if not source_is_down(self.conf, state.source):
            raise EvacuationFailed(instance_uuid=state.instance_uuid,
                                   reason="the compute service of host %s is up again"
                                   % state.source)
        if state.requested_host == state.source:
            raise EvacuationFailed(instance_uuid=state.instance_uuid,
                                   reason="it is on that host already")
        if not state.image_id and not _boots_from_volume(state.instance_uuid):
            raise EvacuationFailed(instance_uuid=state.instance_uuid,
                                   reason="the server has no image to rebuild from")

    def execute(self, state: EvacuateState) -> None:
        instance = Instance.from_record(db.instance_get(state.instance_uuid).to_dict())
        if state.requested_host and state.force:
            node = db.compute_node_get(state.requested_host)
            db.allocation_claim(state.requested_host, state.migration_uuid,
                                {"vcpus": instance.flavor.vcpus,
                                 "memory_mb": instance.flavor.memory_mb,
                                 "disk_gb": instance.flavor.root_gb}, node.generation)
            state.dest = state.requested_host
        else:
            others = {n.host for n in db.compute_node_get_all()} - {state.requested_host} \
                if state.requested_host else set()
            spec = RequestSpec(flavor=instance.flavor, project_id=instance.project_id,
                               user_id=instance.user_id,
                               ignore_hosts=tuple(sorted(others | {state.source})))
            chosen = self.scheduler.select_destinations(state.ctxt, spec,
                                                        [state.migration_uuid])
            state.dest = chosen[0]["host"]
        mig_db.migration_update(state.migration_uuid, {"dest_host": state.dest,
                                                       "status": evac_db.PRE_MIGRATING})

    def revert(self, state: EvacuateState) -> None:
        if not state.moved:
            db.allocation_free(state.migration_uuid)

    def details(self, state: EvacuateState) -> str:
        return "destination chosen"


class MoveToDestination(Step):
    """The instance belongs to the destination (claims swapped). Resumable;
    no revert."""

    name = "move_to_destination"
    resumable = True

    def execute(self, state: EvacuateState) -> None:
        evac_db.evacuation_move(state.migration_uuid, st.REBUILDING)
        state.moved = True

    def details(self, state: EvacuateState) -> str:
        return "the server belongs to host %s" % state.dest


class RebuildOnDestination(Step):
    """Cast the rebuild to the destination and wait for its report. Revert:
    a task the agent never took ends in ERROR (no guest anywhere)."""

    name = "rebuild_on_destination"
    waits_for_report = True

    def __init__(self, conf: cfg.ConfigOpts, compute) -> None:
        self.conf = conf
        self.compute = compute

    def execute(self, state: EvacuateState) -> None:
        if _boots_from_volume(state.instance_uuid):
            # Its root is a volume: the guest is defined anew around its
            # volumes, the data kept (no image; ReattachVolumes finds them).
            self.compute.rebuild_instance(
                state.ctxt, state.dest, state.instance_uuid, None, state.power_on,
                block_device_mapping=volume_flows.attached_volumes(state.instance_uuid))
            return
        image = ImageMeta.from_record(images.compute_image_ref(self.conf, state.image_id))
        self.compute.rebuild_instance(state.ctxt, state.dest, state.instance_uuid, image,
                                      state.power_on)

    def on_report(self, state: EvacuateState, report: dict[str, Any]) -> None:
        if report.get("error"):
            raise RebuildNotDone(public=report.get("message"), image_id=state.image_id,
                                 reason=report["error"])

    def poll(self, state: EvacuateState) -> dict[str, Any] | None:
        try:
            inst = db.instance_get(state.instance_uuid)
        except exception.InstanceNotFound:
            return {"error": "the server was deleted",
                    "message": "The server was deleted during its evacuation."}
        if inst.task_state in REBUILD_TASKS:
            return None
        if inst.vm_state == st.ERROR:
            return {"error": "the server ended its rebuild in ERROR"}
        return {}

    def revert(self, state: EvacuateState) -> None:
        clear_task(state.instance_uuid, {"vm_state": st.ERROR})


class ReattachVolumes(Step):
    """Connect the server's volumes on the destination. Resumable (a volume
    already connected there is left as it is); no revert."""

    name = "reattach_volumes"
    resumable = True

    def __init__(self, compute) -> None:
        self.compute = compute

    def execute(self, state: EvacuateState) -> None:
        try:
            present = self.compute.get_volume_devices(state.ctxt, state.dest,
                                                      state.instance_uuid)
        except Exception as exc:
            LOG.info("volumes of %s on %s unknown: %s", state.instance_uuid, state.dest, exc)
            present = {}
        state.volumes_failed = []
        for attachment in volumes_db.attachments_of_instance(state.instance_uuid):
            if not attachment.connection_info:
                continue
            if attachment.volume_id in (present or {}):
                # Plugged there already (the rebuild defined the guest with
                # it, or a resumed step): the row names its host now.
                volumes_db.attachment_update(attachment.uuid, {
                    "host": state.dest, "device": present[attachment.volume_id]})
                continue
            try:
                device = self.compute.attach_volume(
                    state.ctxt, state.dest, state.instance_uuid,
                    attachment.connection_info, attachment.device)
                volumes_db.attachment_update(attachment.uuid, {"host": state.dest,
                                                       "device": device})
            except Exception as exc:
                # Its data is on the volume host, not lost: the attachment
                # stays recorded so it can be detached and attached again.
                LOG.error("volume %s of %s not reattached on %s: %s", attachment.volume_id,
                          state.instance_uuid, state.dest, exc)
                state.volumes_failed.append(attachment.volume_id)

    def details(self, state: EvacuateState) -> str:
        if state.volumes_failed:
            return "volumes not reattached: %s" % ", ".join(state.volumes_failed)
        return "volumes attached on the new host"


class EvacuateFlow(Flow):
    name = "evacuate"

    def __init__(self, conf: cfg.ConfigOpts, host: str, scheduler, compute) -> None:
        super().__init__(conf, host)
        self.scheduler = scheduler
        self.compute = compute

    def steps(self) -> list[Step]:
        return [ChooseDestination(self.conf, self.scheduler), MoveToDestination(),
                RebuildOnDestination(self.conf, self.compute), ReattachVolumes(self.compute)]

    def _recorder(self, state: EvacuateState) -> runner.MigrationRecorder:
        return runner.MigrationRecorder(state.migration_uuid, state.instance_uuid, ACTION,
                                        self.host)

    # --- entry points -----------------------------------------------------------------

    def start(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
              host: str | None = None, force: bool = False) -> None:
        state = EvacuateState(ctxt, instance_uuid, migration_uuid=migration_uuid,
                              requested_host=host or None, force=bool(force))
        try:
            inst = db.instance_get(instance_uuid)
            state.source = inst.host or ""
            state.power_on = inst.vm_state != st.STOPPED
            if inst.image_ref and images.is_valid_id(inst.image_ref):
                state.image_id = inst.image_ref
        except exception.FlotillaException as exc:
            self._failed(state, FlowFailed("start", exc))
            return
        self._run(state, lambda: runner.run_flow(self.name, self.steps(), state,
                                                 self._recorder(state)))

    def waiting_record(self, instance_uuid: str) -> db.FlowRecord | None:
        """The evacuation of ``instance_uuid`` waiting for its rebuild report
        (the conductor routes ``rebuild_done`` here when there is one)."""
        for migration in mig_db.migration_list(instance_uuid, in_progress=True,
                                               migration_type=evac_db.EVACUATION):
            try:
                record = db.flow_record_get(db.FlowRecordRef.migration(migration.uuid))
            except exception.NotFound:
                continue
            if record.flow == self.name and record.flow_status in runner.UNFINISHED:
                return record
        return None

    def report(self, ctxt: RequestContext, record: db.FlowRecord,
               report: dict[str, Any]) -> None:
        """The destination agent's rebuild report. The flow goes on in the
        background: the agent reports while it holds the instance's lock, and
        the next step calls it to attach volumes (inline, both would wait on
        each other until the RPC timeout)."""
        state = EvacuateState.from_data(record.flow_data or {})

        def go_on() -> None:
            try:
                self._run(state, lambda: runner.continue_flow(self.steps(), state,
                                                              self._recorder(state), report))
            except Exception:
                LOG.exception("evacuation of %s after its rebuild report failed",
                              state.instance_uuid)
        concurrency.spawn(go_on)

    def resume(self, record: db.FlowRecord) -> None:
        state = EvacuateState.from_data(record.flow_data or {})
        self._run(state, lambda: runner.resume_flow(self.steps(), state,
                                                    self._recorder(state), record))

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        """Not called by the reaper (task ``rebuilding`` is the rebuild
        flow's, which ends it in ERROR); a waiting evacuation then finds the
        server in ERROR through its poll and ends failed."""
        return False

    # --- outcomes ---------------------------------------------------------------------

    def _run(self, state: EvacuateState, run) -> None:
        try:
            status = run()
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        if status == runner.COMPLETED:
            mig_db.migration_update(state.migration_uuid, {"status": evac_db.DONE})
            reporter = self._recorder(state).reporter
            if state.volumes_failed:
                reporter.fault(state.ctxt, state.instance_uuid, EvacuationFailed(
                    instance_uuid=state.instance_uuid,
                    reason="volumes %s could not be attached on host %s; they stay "
                    "attached in the database" % (", ".join(state.volumes_failed),
                                                  state.dest)))
            reporter.finish(state.ctxt, state.instance_uuid)
            LOG.info("evacuated %s from %s to %s", state.instance_uuid, state.source,
                     state.dest)

    def _failed(self, state: EvacuateState, failed: FlowFailed) -> None:
        if not state.moved:
            db.allocation_free(state.migration_uuid)
            clear_task(state.instance_uuid)   # still on the dead host, as it was
        else:
            clear_task(state.instance_uuid, {"vm_state": st.ERROR})
        reporter = self._recorder(state).reporter
        reporter.fault(state.ctxt, state.instance_uuid, failed.cause)
        reporter.finish(state.ctxt, state.instance_uuid, failed=True)
        mig_db.migration_update(state.migration_uuid,
                                {"status": evac_db.FAILED,
                                 "error_reason": str(failed.cause)[:2000]})
        LOG.warning("evacuation of %s failed: %s", state.instance_uuid, failed)

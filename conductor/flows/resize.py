"""Resize and cold migration (a cold migration is a resize to the same
flavor), then confirm or revert.

The API has checked the request (flavor, host, state), put the server in
task ``resize_prep``, created the migration record (``accepted``, type
``resize`` or ``migration``; this flow keeps its state on it) and recorded
the action (``resize`` or ``migrate``).

Steps (conductor/flows/runner.py), every check before any execute:

1. ``choose_destination``: a claim of the new flavor on another host (or,
   resizing with ``[DEFAULT] allow_resize_to_same_host``, possibly its own)
   whose consumer is the migration (the instance keeps its claim on the
   source), through the scheduler (restricted to the requested host if
   any); then both drivers' cold checks. Revert: the migration's claim is
   freed. Volumes: conductor/flows/resize_volumes.py.
2. ``migrate_disk`` (task ``resize_migrating``, then ``resize_migrated``):
   a cast to the source, which powers the guest off and sends its root
   disk to the destination through the two hypervisors (libvirt: a storage
   volume upload stream; no shared filesystem), then reports
   (``resize_disk_done``); no conductor worker waits meanwhile, and a lost
   report is the reaper's (at the task's deadline it reverts). The guest
   stays defined, off, on the source. Revert: the destination drops what it
   received, the source boots its guest again (if it was active) with the
   old flavor.
3. ``finish_on_destination`` (task ``resize_finish``): the destination
   defines the guest with the new flavor (its own XML, the disk grown to
   the new size) and boots it if it was active. Revert: the destination
   destroys it.
4. ``switch``: one transaction moves the instance to the destination with
   its new flavor, vm_state ``resized`` (VERIFY_RESIZE), both claims kept,
   migration ``finished``. No revert.

On any failure the completed steps are reverted, the server is back on its
source with its old flavor and state, a fault says why and the migration
ends ``error``.

Confirm (API: task ``resize_confirming``, migration ``confirming``): the
source removes its copy, then one transaction frees the source claim and
makes the migration's claim the instance's; the server is active (or
stopped, as it was), the migration ``confirmed``. Revert (task
``resize_reverting``): the destination destroys its guest, the source
boots its kept copy with the old flavor, then one transaction frees the
destination claim and puts the instance back on the source; migration
``reverted``. A confirm or revert that fails on a host leaves the server in
VERIFY_RESIZE with a fault (try again); a revert whose source cannot boot
ends the server in ERROR on its source. ``[DEFAULT] resize_confirm_window``
seconds after a resize finished, :meth:`ResizeFlow.auto_confirm` confirms
it. The reaper's :meth:`ResizeFlow.cleanup` reverts a resize that outlived
its deadline and finishes a confirm or revert that did.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from oslo_config import cfg

from conductor.flows import resize_volumes, runner
from conductor.flows.base import Flow
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import exception, images
from flotilla import states as st
from flotilla.context import RequestContext, get_admin_context
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.db import resizes as rs_db
from flotilla.deadlines import task_deadline
from flotilla.objects import Flavor, ImageMeta, RequestSpec

LOG = logging.getLogger(__name__)

OPERATION = st.operation("resize")
RESIZE_TASKS = OPERATION.task_states


class ResizeFailed(exception.FlotillaException):
    msg_fmt = "Resize of %(instance_uuid)s failed: %(reason)s"
    public_msg = "The resize failed; the server is back on its host with its old flavor."


@dataclasses.dataclass
class ResizeState(FlowState):
    migration_uuid: str = ""
    source: str = ""
    dest: str = ""
    requested_host: str | None = None
    old_flavor: dict = dataclasses.field(default_factory=dict)
    new_flavor: dict = dataclasses.field(default_factory=dict)
    was_active: bool = True
    migrate_data: dict = dataclasses.field(default_factory=dict)
    image: ImageMeta | None = None
    action: str = "resize"


def _set_task(conf, state: ResizeState, task: str, expected: tuple[str, ...]) -> None:
    db.instance_update(state.instance_uuid,
                       {"task_state": task, "task_deadline": task_deadline(conf, task)},
                       expected_task_state=expected)


def _old_vm_state(state: ResizeState) -> str:
    return st.ACTIVE if state.was_active else st.STOPPED


class ChooseDestination(Step):
    """Claim the new flavor elsewhere for the migration, then both drivers'
    cold checks. Revert: the migration's claim freed."""

    name = "choose_destination"

    def __init__(self, scheduler, compute, conf=None) -> None:
        self.scheduler = scheduler
        self.compute = compute
        self.conf = conf

    def check(self, state: ResizeState) -> None:
        resize_volumes.check_volumes_movable(self.compute, state.instance_uuid)
        inst = db.instance_get(state.instance_uuid)
        if inst.task_state != st.RESIZE_PREP or inst.host != state.source:
            raise exception.InstanceStateConflict(
                instance_uuid=state.instance_uuid, actual_vm_state=inst.vm_state,
                actual_task_state=inst.task_state, expected_vm_state="any",
                expected_task_state=st.RESIZE_PREP)
        if state.requested_host == state.source:
            raise exception.MigrationPreCheckError(
                instance_uuid=state.instance_uuid, reason="it is on that host already")

    def execute(self, state: ResizeState) -> None:
        inst = db.instance_get(state.instance_uuid)
        same_ok = self.conf is not None and resize_volumes.same_host_allowed(
            self.conf, state.action)
        spec = RequestSpec(flavor=Flavor.from_record(state.new_flavor),
                           project_id=inst.project_id, user_id=inst.user_id,
                           requested_host=state.requested_host,
                           ignore_hosts=() if same_ok else (state.source,))
        chosen = self.scheduler.select_destinations(state.ctxt, spec, [state.migration_uuid])
        state.dest = chosen[0]["host"]
        if state.dest == state.source and not same_ok:   # ignore_hosts ignored
            raise exception.MigrationPreCheckError(
                instance_uuid=state.instance_uuid, reason="no other host was found")
        mig_db.migration_update(state.migration_uuid, {"dest_host": state.dest,
                                                       "status": rs_db.PRE_MIGRATING})
        data = self.compute.check_can_cold_migrate_source(state.ctxt, state.source,
                                                          state.instance_uuid)
        if state.dest == state.source:
            data = dict(data, same_host=True)
        state.migrate_data = self.compute.check_can_cold_migrate_destination(
            state.ctxt, state.dest, state.instance_uuid, data)

    def revert(self, state: ResizeState) -> None:
        db.allocation_free(state.migration_uuid)

    def details(self, state: ResizeState) -> str:
        return "destination chosen and checked"


class MigrateDisk(Step):
    """Cast the copy to the source (power off, send the root disk), wait
    for its report. Revert: the destination drops what arrived; the source
    boots its guest again."""

    name = "migrate_disk"
    waits_for_report = True

    def __init__(self, conf, compute) -> None:
        self.conf = conf
        self.compute = compute

    def execute(self, state: ResizeState) -> None:
        _set_task(self.conf, state, st.RESIZE_MIGRATING, (st.RESIZE_PREP,))
        mig_db.migration_update(state.migration_uuid, {"status": rs_db.MIGRATING})
        self.compute.resize_instance(state.ctxt, state.source, state.instance_uuid,
                                     state.migration_uuid, state.migrate_data)

    def on_report(self, state: ResizeState, report: dict) -> None:
        if report.get("error"):
            failure = ResizeFailed(instance_uuid=state.instance_uuid, reason=report["error"])
            if report.get("message"):
                failure.public_msg = report["message"]
            raise failure
        state.migrate_data = dict(report.get("migrate_data") or state.migrate_data)
        _set_task(self.conf, state, st.RESIZE_MIGRATED, (st.RESIZE_MIGRATING,))

    def revert(self, state: ResizeState) -> None:
        _revert_on_hosts(self.compute, state)


class FinishOnDestination(Step):
    """The destination defines and boots the guest with the new flavor.
    Revert: it destroys it."""

    name = "finish_on_destination"

    def __init__(self, conf, compute) -> None:
        self.conf = conf
        self.compute = compute

    def execute(self, state: ResizeState) -> None:
        _set_task(self.conf, state, st.RESIZE_FINISH, (st.RESIZE_MIGRATED,))
        mig_db.migration_update(state.migration_uuid, {"status": rs_db.POST_MIGRATING})
        self.compute.finish_resize(
            state.ctxt, state.dest, state.instance_uuid, state.new_flavor, state.image,
            state.migrate_data, state.was_active,
            block_device_mapping=resize_volumes.block_device_mapping(state.instance_uuid))

    def revert(self, state: ResizeState) -> None:
        try:
            self.compute.revert_resize(state.ctxt, state.dest, state.instance_uuid,
                                       state.migrate_data)
        except Exception as exc:
            LOG.warning("destination %s did not destroy %s: %s", state.dest,
                        state.instance_uuid, exc)


class Switch(Step):
    """The instance moves to the destination with its new flavor, vm_state
    resized, both claims kept (one transaction). No revert."""

    name = "switch"

    def execute(self, state: ResizeState) -> None:
        rs_db.resize_finish(state.migration_uuid, state.new_flavor)

    def details(self, state: ResizeState) -> str:
        return "the server runs on its new host or flavor: confirm or revert it"


def _revert_on_hosts(compute, state: ResizeState) -> None:
    """Undo a disk move: the destination drops its copy, the source gets
    its guest back with the old flavor (booted if it was active)."""
    if state.dest:
        try:
            compute.revert_resize(state.ctxt, state.dest, state.instance_uuid,
                                  state.migrate_data)
        except Exception as exc:
            LOG.warning("destination %s of %s not cleaned: %s", state.dest,
                        state.instance_uuid, exc)
    try:
        compute.finish_revert_resize(
            state.ctxt, state.source, state.instance_uuid, state.old_flavor,
            state.migrate_data, state.was_active,
            block_device_mapping=resize_volumes.block_device_mapping(state.instance_uuid))
    except Exception as exc:
        LOG.warning("source %s did not restore %s: %s", state.source,
                    state.instance_uuid, exc)


class ResizeFlow(Flow):
    name = "resize"

    def __init__(self, conf: cfg.ConfigOpts, host: str, scheduler, compute) -> None:
        super().__init__(conf, host)
        self.scheduler = scheduler
        self.compute = compute

    def steps(self) -> list[Step]:
        return [ChooseDestination(self.scheduler, self.compute, self.conf),
                MigrateDisk(self.conf, self.compute),
                FinishOnDestination(self.conf, self.compute), Switch()]

    def _recorder(self, state: ResizeState) -> runner.MigrationRecorder:
        return runner.MigrationRecorder(state.migration_uuid, state.instance_uuid,
                                        state.action, self.host)

    # --- entry points -----------------------------------------------------------------

    def start(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
              flavor: dict, host: str | None = None, action: str = "resize") -> None:
        """Run the resize to ``flavor`` (a flavor snapshot) on the accepted
        ``migration_uuid``; ``host``: the only destination allowed."""
        state = ResizeState(ctxt, instance_uuid, migration_uuid=migration_uuid,
                            requested_host=host or None, new_flavor=dict(flavor),
                            action=action)
        try:
            inst = db.instance_get(instance_uuid)
            state.source = inst.host or ""
            state.old_flavor = dict(inst.flavor or {})
            state.was_active = inst.vm_state == st.ACTIVE
            if inst.image_ref and images.is_valid_id(inst.image_ref):
                state.image = ImageMeta.from_record(
                    images.compute_image_ref(self.conf, inst.image_ref))
        except exception.FlotillaException as exc:
            self._failed(state, FlowFailed("start", exc))
            return
        self._run(state, lambda: runner.run_flow(self.name, self.steps(), state,
                                                 self._recorder(state)))

    def report(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
               report: dict) -> None:
        """The source agent's report on its disk copy."""
        state = self._state(migration_uuid)
        if state.instance_uuid != instance_uuid:
            raise exception.Forbidden(reason="migration %s is not a resize of %s"
                                      % (migration_uuid, instance_uuid))
        self._run(state, lambda: runner.continue_flow(self.steps(), state,
                                                      self._recorder(state), report))

    def _run(self, state: ResizeState, run) -> None:
        try:
            status = run()
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        if status == runner.COMPLETED:
            self._recorder(state).reporter.finish(state.ctxt, state.instance_uuid)
            LOG.info("resize of %s to %s finished: waiting for confirmation",
                     state.instance_uuid, state.dest)

    def _state(self, migration_uuid: str) -> ResizeState:
        record = db.flow_record_get(db.FlowRecordRef.migration(migration_uuid))
        if record.flow != self.name:
            raise exception.Conflict(reason="migration %s is not a resize" % migration_uuid)
        return ResizeState.from_data(record.flow_data or {})

    def confirm(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str) -> None:
        """Remove the source copy and the source claim (the API set task
        resize_confirming and the migration confirming)."""
        state = self._state(migration_uuid)
        reporter = self._recorder(state).reporter
        try:
            with reporter.event(ctxt, instance_uuid, "confirmResize",
                                "conductor_confirm_resize", fault=False):
                self.compute.confirm_resize(ctxt, state.source, instance_uuid,
                                            state.migrate_data)
                rs_db.resize_confirm(migration_uuid, _old_vm_state(state))
        except Exception as exc:
            LOG.warning("confirm of the resize of %s failed: %s", instance_uuid, exc)
            self._back_to_verify(ctxt, state, st.RESIZE_CONFIRMING, exc)
            reporter.finish(ctxt, instance_uuid, failed=True)
            return
        reporter.finish(ctxt, instance_uuid)
        LOG.info("resize of %s confirmed", instance_uuid)

    def revert(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str) -> None:
        """Destroy on the destination, boot the original on the source (the
        API set task resize_reverting and the migration reverting)."""
        state = self._state(migration_uuid)
        reporter = self._recorder(state).reporter
        try:
            with reporter.event(ctxt, instance_uuid, "revertResize",
                                "conductor_revert_on_destination", fault=False):
                self.compute.revert_resize(ctxt, state.dest, instance_uuid,
                                           state.migrate_data)
        except Exception as exc:
            LOG.warning("destination %s did not destroy %s: %s", state.dest,
                        instance_uuid, exc)
            self._back_to_verify(ctxt, state, st.RESIZE_REVERTING, exc)
            reporter.finish(ctxt, instance_uuid, failed=True)
            return
        try:
            with reporter.event(ctxt, instance_uuid, "revertResize",
                                "conductor_revert_on_source", fault=False):
                self.compute.finish_revert_resize(
                    ctxt, state.source, instance_uuid, state.old_flavor,
                    state.migrate_data, state.was_active,
                    block_device_mapping=resize_volumes.block_device_mapping(
                        instance_uuid))
        except Exception as exc:
            # Its only copy is the source's, which did not come back.
            LOG.error("source %s did not restore %s: %s", state.source, instance_uuid, exc)
            reporter.fault(ctxt, instance_uuid, exc)
            rs_db.resize_revert(migration_uuid, state.old_flavor, st.ERROR,
                                status=rs_db.ERROR, reason=str(exc))
            reporter.finish(ctxt, instance_uuid, failed=True)
            return
        rs_db.resize_revert(migration_uuid, state.old_flavor, _old_vm_state(state))
        reporter.finish(ctxt, instance_uuid)
        LOG.info("resize of %s reverted", instance_uuid)

    def _back_to_verify(self, ctxt: RequestContext, state: ResizeState, task: str,
                        exc: BaseException) -> None:
        self._recorder(state).reporter.fault(ctxt, state.instance_uuid, exc)
        try:
            db.instance_update(state.instance_uuid, {"task_state": None,
                                                     "task_deadline": None},
                               expected_task_state=task)
        except (exception.InstanceStateConflict, exception.InstanceNotFound):
            pass
        mig_db.migration_update(state.migration_uuid, {"status": rs_db.FINISHED})

    def auto_confirm(self, now: datetime.datetime | None = None) -> int:
        """Confirm resizes waiting longer than ``[DEFAULT]
        resize_confirm_window`` (0: never); how many it confirmed."""
        window = self.conf.resize_confirm_window
        if not window:
            return 0
        now = now or datetime.datetime.now(datetime.UTC)
        done = 0
        for migration in rs_db.resizes_to_confirm(now - datetime.timedelta(seconds=window)):
            ctxt = get_admin_context()
            try:
                _start_confirm(self.conf, migration.instance_uuid, migration.uuid)
            except exception.FlotillaException as exc:
                LOG.info("resize of %s not confirmed automatically: %s",
                         migration.instance_uuid, exc)
                continue
            db.action_start(migration.instance_uuid, "confirmResize", ctxt.request_id,
                            ctxt.user_id, ctxt.project_id)
            self.confirm(ctxt, migration.instance_uuid, migration.uuid)
            done += 1
        return done

    def release_instance(self, ctxt: RequestContext, instance_uuid: str) -> bool:
        """The server was deleted (its guest destroyed on its host) while a
        resize waited for confirmation: the source's kept copy and the
        migration's claim go, the migration ends confirmed (as Nova does on
        such a delete). True when there was one."""
        migration = next((m for m in mig_db.migration_list(instance_uuid, in_progress=True)
                          if m.flow == self.name), None)
        if migration is None:
            return False
        state = ResizeState.from_data(migration.flow_data or {})
        if migration.status in (rs_db.FINISHED, rs_db.CONFIRMING, rs_db.REVERTING) \
                and state.source:
            try:
                # The guest on the destination is gone already; a revert may
                # have left it on the source instead: both copies go.
                self.compute.confirm_resize(ctxt, state.source, instance_uuid,
                                            state.migrate_data)
            except Exception as exc:
                LOG.error("source %s did not remove the copy of deleted server %s: %s",
                          state.source, instance_uuid, exc)
            if state.dest:
                try:
                    self.compute.revert_resize(ctxt, state.dest, instance_uuid,
                                               state.migrate_data)
                except Exception as exc:
                    LOG.warning("destination %s of deleted server %s not cleaned: %s",
                                state.dest, instance_uuid, exc)
        db.allocation_free(migration.uuid)
        mig_db.migration_update(migration.uuid, {"status": rs_db.CONFIRMED})
        return True

    # --- after a crash or a deadline --------------------------------------------------

    def resume(self, record: db.FlowRecord) -> None:
        state = ResizeState.from_data(record.flow_data or {})
        self._run(state, lambda: runner.resume_flow(self.steps(), state,
                                                    self._recorder(state), record))

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        migration = mig_db.migration_in_progress(instance.uuid)
        if migration is None or migration.flow != self.name:
            return _clear_task(instance.uuid, (instance.task_state,))
        if instance.task_state == st.RESIZE_CONFIRMING:
            self.confirm(ctxt, instance.uuid, migration.uuid)
            return True
        if instance.task_state == st.RESIZE_REVERTING:
            self.revert(ctxt, instance.uuid, migration.uuid)
            return True
        state = ResizeState.from_data(migration.flow_data or {})
        db.flow_record_update(db.FlowRecordRef.migration(migration.uuid),
                              expected_status=runner.UNFINISHED, flow_status=runner.FAILED)
        if state.source:
            _revert_on_hosts(self.compute, state)
        self._failed(state, FlowFailed("cleanup", reason))
        return True

    def _failed(self, state: ResizeState, failed: FlowFailed) -> None:
        # The reverts ran (a failed preflight had nothing to undo but the
        # claim). The migration's status comes last: once it says ended,
        # all is done.
        db.allocation_free(state.migration_uuid)
        reporter = self._recorder(state).reporter
        reporter.fault(state.ctxt, state.instance_uuid, failed.cause)
        _clear_task(state.instance_uuid, RESIZE_TASKS)
        reporter.finish(state.ctxt, state.instance_uuid, failed=True)
        mig_db.migration_update(state.migration_uuid,
                                {"status": rs_db.ERROR,
                                 "error_reason": str(failed.cause)[:2000]})
        LOG.warning("resize of %s failed: %s", state.instance_uuid, failed)


def _clear_task(instance_uuid: str, tasks: tuple) -> bool:
    try:
        db.instance_update(instance_uuid, {"task_state": None, "task_deadline": None},
                           expected_task_state=tasks)
        return True
    except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
        LOG.debug("task of %s not cleared: %s", instance_uuid, exc)
        return False


def _start_confirm(conf, instance_uuid: str, migration_uuid: str) -> None:
    """Enter the confirm (what the API's confirmResize does): task
    resize_confirming on a server in VERIFY_RESIZE, migration confirming.
    InstanceStateConflict when the server is not waiting for it."""
    db.instance_update(instance_uuid, {"task_state": st.RESIZE_CONFIRMING,
                                       "task_deadline": task_deadline(
                                           conf, st.RESIZE_CONFIRMING)},
                       expected_vm_state=st.RESIZED, expected_task_state=None)
    mig_db.migration_update(migration_uuid, {"status": rs_db.CONFIRMING})


start_confirm = _start_confirm

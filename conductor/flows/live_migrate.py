"""The live migration flow (os-migrateLive): the running guest moves to
another host; the database says the destination only once it runs there.

The API has checked the request, put the server in task ``migrating``,
created the migration record (status ``accepted``, on which this flow keeps
its state) and recorded the action ``live-migration`` under the request id.

Steps (conductor/flows/runner.py), every check before any execute:

1. ``choose_destination``: a capacity claim on the destination whose
   consumer is the migration (the instance keeps its own claim on the
   source): through the scheduler, restricted to the requested host when
   there is one, or straight on the requested host with ``force``; then the
   source's and the destination's drivers check the guest can go
   (compute RPC, calls). Revert: the migration's claim is freed.
2. ``prepare_destination``: compute ``pre_live_migration`` on the
   destination (its instance directory, the base image in its cache, the
   overlay, its own domain XML). Revert: the destination removes all of
   it (``rollback_live_migration_at_destination``), never a guest that
   arrived.
3. ``migrate_on_source``: cast ``live_migration`` to the source and wait
   for its report (``live_migration_done``); meanwhile the source sends
   the job's progress, written on the migration record. A lost report is
   found by the poll when the guest runs on the destination and is gone
   from the source (a lost failure is the reaper's). Revert: none on the
   source (a failed job leaves the guest running there).
4. ``finalize``: the destination finalizes (resumes a guest a forced
   completion paused), the source removes what is left of it; then in one
   transaction the instance moves to the destination, its source claim is
   freed, the migration's claim becomes the instance's and the migration is
   ``completed``. Resumable; no revert (the guest runs on the destination).

On any failure: the migration ends ``error`` (``cancelled`` when aborted)
with the reason, the guest keeps running on the source, the destination
is cleaned and its claim freed, the server's task is cleared (its vm_state
never changed: ACTIVE or PAUSED) and a fault says why.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from oslo_config import cfg

from conductor.flows import runner
from conductor.flows import volume as volume_flows
from conductor.flows.base import Flow
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import exception, images
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.objects import ImageMeta, Instance, RequestSpec

LOG = logging.getLogger(__name__)

OPERATION = st.operation("live_migrate")
ACTION = OPERATION.action


class LiveMigrationFailed(exception.FlotillaException):
    msg_fmt = "Live migration of %(instance_uuid)s failed: %(reason)s"
    public_msg = "The live migration failed; the server runs where it was."

    def __init__(self, public: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if public:
            self.public_msg = public


@dataclasses.dataclass
class LiveMigrateState(FlowState):
    migration_uuid: str = ""
    source: str = ""
    dest: str = ""
    requested_host: str | None = None
    force: bool = False
    migrate_data: dict = dataclasses.field(default_factory=dict)
    image: ImageMeta | None = None


def _instance(state: LiveMigrateState) -> Instance:
    return Instance.from_record(db.instance_get(state.instance_uuid).to_dict())


class ChooseDestination(Step):
    """Claim on the destination for the migration (scheduler, or the forced
    host), then both drivers' checks. Revert: the migration's claim freed."""

    name = "choose_destination"

    def __init__(self, scheduler, compute) -> None:
        self.scheduler = scheduler
        self.compute = compute

    def check(self, state: LiveMigrateState) -> None:
        inst = db.instance_get(state.instance_uuid)
        if inst.task_state != st.MIGRATING or inst.host != state.source:
            raise exception.InstanceStateConflict(
                instance_uuid=state.instance_uuid, actual_vm_state=inst.vm_state,
                actual_task_state=inst.task_state, expected_vm_state="any",
                expected_task_state=st.MIGRATING)
        if state.requested_host == state.source:
            raise exception.MigrationPreCheckError(
                instance_uuid=state.instance_uuid, reason="it is on that host already")

    def execute(self, state: LiveMigrateState) -> None:
        instance = _instance(state)
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
        # The destination agent may act on the instance from here on.
        mig_db.migration_update(state.migration_uuid, {"dest_host": state.dest,
                                                       "status": mig_db.PREPARING})
        data = self.compute.check_can_live_migrate_source(state.ctxt, state.source,
                                                          state.instance_uuid)
        state.migrate_data = self.compute.check_can_live_migrate_destination(
            state.ctxt, state.dest, state.instance_uuid, data)

    def revert(self, state: LiveMigrateState) -> None:
        db.allocation_free(state.migration_uuid)

    def details(self, state: LiveMigrateState) -> str:
        return "destination chosen and checked"


class PrepareDestination(Step):
    """The destination makes its directory, base, overlay and XML (with the
    volumes it keeps). Revert: it removes them (never a guest that arrived)."""

    name = "prepare_destination"

    def __init__(self, compute) -> None:
        self.compute = compute

    def execute(self, state: LiveMigrateState) -> None:
        state.migrate_data = self.compute.pre_live_migration(
            state.ctxt, state.dest, state.instance_uuid, state.image, state.migrate_data,
            block_device_mapping=volume_flows.attached_volumes(state.instance_uuid))

    def revert(self, state: LiveMigrateState) -> None:
        if not state.dest:
            return
        try:
            self.compute.rollback_live_migration_at_destination(
                state.ctxt, state.dest, state.instance_uuid, state.migrate_data)
        except Exception as exc:
            LOG.warning("destination %s of %s not rolled back: %s", state.dest,
                        state.instance_uuid, exc)


class MigrateOnSource(Step):
    """Cast the job to the source, wait for its report. Revert: none (a
    failed job leaves the guest running on the source)."""

    name = "migrate_on_source"
    waits_for_report = True

    def __init__(self, compute) -> None:
        self.compute = compute

    def execute(self, state: LiveMigrateState) -> None:
        mig_db.migration_update(state.migration_uuid, {"status": mig_db.RUNNING})
        self.compute.live_migration(state.ctxt, state.source, state.instance_uuid,
                                    state.migration_uuid, state.migrate_data)

    def on_report(self, state: LiveMigrateState, report: dict[str, Any]) -> None:
        if report.get("error"):
            # Where the guest runs has the last word: a job that succeeded
            # while its agent was down may be reported failed.
            if self.poll(state) is not None:
                LOG.warning("live migration of %s reported failed (%s), but the guest "
                            "runs on %s and not on %s: completing it", state.instance_uuid,
                            report["error"], state.dest, state.source)
                return
            raise LiveMigrationFailed(public=report.get("message"),
                                      instance_uuid=state.instance_uuid,
                                      reason=report["error"])

    def poll(self, state: LiveMigrateState) -> dict[str, Any] | None:
        # Only success can be concluded from where the guest is: a job not
        # started yet looks like a failed one.
        try:
            dest = self.compute.find_guest(state.ctxt, state.dest, state.instance_uuid)
            source = self.compute.find_guest(state.ctxt, state.source, state.instance_uuid)
        except Exception as exc:
            LOG.debug("where %s runs is unknown: %s", state.instance_uuid, exc)
            return None
        if dest["defined"] and not dest["migration"] and not source["defined"]:
            return {}
        return None


class Finalize(Step):
    """The destination finalizes, the source cleans up; the database moves
    the instance and swaps the claims in one transaction. Resumable; no
    revert."""

    name = "finalize"
    resumable = True

    def __init__(self, compute) -> None:
        self.compute = compute

    def execute(self, state: LiveMigrateState) -> None:
        mig_db.migration_update(state.migration_uuid, {"status": mig_db.POST_MIGRATING})
        try:
            self.compute.post_live_migration_at_destination(
                state.ctxt, state.dest, state.instance_uuid, state.migrate_data)
        except Exception as exc:
            # The guest runs there: the database must say so all the same.
            LOG.warning("destination %s did not finalize %s: %s", state.dest,
                        state.instance_uuid, exc)
        try:
            # Before the database moves the instance: once the server shows
            # on its new host, nothing of it is left on the old one.
            self.compute.post_live_migration(state.ctxt, state.source, state.instance_uuid,
                                             state.migrate_data)
        except Exception as exc:
            LOG.warning("source %s did not clean up after %s: %s", state.source,
                        state.instance_uuid, exc)
        try:
            db.live_migration_complete(state.migration_uuid, st.MIGRATING)
        except exception.MigrationNotFound:
            LOG.info("migration %s is gone with its instance", state.migration_uuid)
        except exception.Conflict:
            if db.instance_get(state.instance_uuid).host != state.dest:
                raise

    def details(self, state: LiveMigrateState) -> str:
        return "the server runs on its new host"


class LiveMigrateFlow(Flow):
    name = "live_migrate"

    def __init__(self, conf: cfg.ConfigOpts, host: str, scheduler, compute) -> None:
        super().__init__(conf, host)
        self.scheduler = scheduler
        self.compute = compute

    def steps(self) -> list[Step]:
        return [ChooseDestination(self.scheduler, self.compute),
                PrepareDestination(self.compute), MigrateOnSource(self.compute),
                Finalize(self.compute)]

    def _recorder(self, state: LiveMigrateState) -> runner.MigrationRecorder:
        return runner.MigrationRecorder(state.migration_uuid, state.instance_uuid, ACTION,
                                        self.host)

    # --- entry points -----------------------------------------------------------------

    def start(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
              host: str | None = None, force: bool = False) -> None:
        state = LiveMigrateState(ctxt, instance_uuid, migration_uuid=migration_uuid,
                                 requested_host=host or None, force=bool(force))
        try:
            inst = db.instance_get(instance_uuid)
            state.source = inst.host or ""
            if inst.image_ref and images.is_valid_id(inst.image_ref):
                state.image = ImageMeta.from_record(
                    images.compute_image_ref(self.conf, inst.image_ref))
        except exception.FlotillaException as exc:
            self._failed(state, FlowFailed("start", exc))
            return
        self._run(state, lambda: runner.run_flow(self.name, self.steps(), state,
                                                 self._recorder(state)))

    def report(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str,
               report: dict[str, Any]) -> None:
        """The source agent's report on its job."""
        record = db.flow_record_get(db.FlowRecordRef.migration(migration_uuid))
        if record.flow != self.name or record.instance_uuid != instance_uuid:
            raise exception.Forbidden(reason="migration %s is not a live migration of %s"
                                      % (migration_uuid, instance_uuid))
        state = LiveMigrateState.from_data(record.flow_data or {})
        self._run(state, lambda: runner.continue_flow(self.steps(), state,
                                                      self._recorder(state), report))

    def resume(self, record: db.FlowRecord) -> None:
        state = LiveMigrateState.from_data(record.flow_data or {})
        self._run(state, lambda: runner.resume_flow(self.steps(), state,
                                                    self._recorder(state), record))

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        """The migration outlived its deadline: abort the job, then settle
        on where the guest actually runs (the destination only if it runs
        there and not on the source)."""
        migration = mig_db.migration_in_progress(instance.uuid)
        if migration is None:
            return _restore_task(instance.uuid)
        data = (migration.flow_data or {}) if migration.flow == self.name else {}
        state = LiveMigrateState.from_data(data) if data else LiveMigrateState(
            ctxt, instance.uuid, migration_uuid=migration.uuid,
            source=migration.source_host or "", dest=migration.dest_host or "")
        db.flow_record_update(db.FlowRecordRef.migration(migration.uuid),
                              expected_status=runner.UNFINISHED, flow_status=runner.FAILED)
        try:
            self.compute.live_migration_abort(ctxt, state.source, instance.uuid)
        except Exception as exc:
            LOG.info("no job of %s to abort on %s: %s", instance.uuid, state.source, exc)
        arrived = False
        if state.dest:
            try:
                dest = self.compute.find_guest(ctxt, state.dest, instance.uuid)
                source = self.compute.find_guest(ctxt, state.source, instance.uuid)
                arrived = dest["defined"] and not dest["migration"] and not source["defined"]
            except Exception as exc:
                LOG.warning("where %s runs is unknown: %s", instance.uuid, exc)
        if arrived:
            Finalize(self.compute).execute(state)
            return True
        # The destination first: the migration's end must mean all is clean.
        PrepareDestination(self.compute).revert(state)
        self._failed(state, FlowFailed("cleanup", reason))
        return True

    def abort(self, ctxt: RequestContext, instance_uuid: str, migration_uuid: str) -> None:
        """Honoured before the next step, or by the source ending its job
        (the flow then reverts; the migration ends cancelled)."""
        db.flow_record_update(db.FlowRecordRef.migration(migration_uuid),
                              abort_requested=True)
        migration = mig_db.migration_get(migration_uuid)
        if migration.status == mig_db.RUNNING and migration.source_host:
            try:
                self.compute.live_migration_abort(ctxt, migration.source_host, instance_uuid)
            except exception.FlotillaException as exc:
                # No job yet: the step's abort check or the agent's finds it.
                LOG.info("abort of %s on %s: %s", instance_uuid, migration.source_host, exc)

    def force_complete(self, ctxt: RequestContext, instance_uuid: str,
                       migration_uuid: str) -> None:
        migration = mig_db.migration_get(migration_uuid)
        try:
            self.compute.live_migration_force_complete(ctxt, migration.source_host,
                                                       instance_uuid)
        except exception.FlotillaException as exc:
            LOG.warning("force-complete of %s on %s refused: %s", instance_uuid,
                        migration.source_host, exc)

    # --- outcomes ---------------------------------------------------------------------

    def progress(self, migration_uuid: str, progress: dict[str, Any]) -> None:
        values = {}
        for field in mig_db.PROGRESS_FIELDS:
            value = progress.get(field + "_bytes")
            if isinstance(value, int) and value >= 0:
                values[field] = value
        if values:
            mig_db.migration_update(migration_uuid, values, expected_status=(mig_db.RUNNING,))

    def _run(self, state: LiveMigrateState, run) -> None:
        try:
            status = run()
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        if status == runner.COMPLETED:
            reporter = self._recorder(state).reporter
            reporter.finish(state.ctxt, state.instance_uuid)
            LOG.info("live migration of %s to %s completed", state.instance_uuid, state.dest)

    def _failed(self, state: LiveMigrateState, failed: FlowFailed) -> None:
        # The reverts ran, except after a failed preflight (nothing to undo
        # then but the claim, which freeing twice leaves alone). The
        # migration's status comes last: once it says ended, all is done.
        db.allocation_free(state.migration_uuid)
        try:
            aborted = failed.aborted or db.flow_record_get(
                db.FlowRecordRef.migration(state.migration_uuid)).abort_requested
        except exception.NotFound:
            aborted = failed.aborted
        reporter = self._recorder(state).reporter
        reporter.fault(state.ctxt, state.instance_uuid, failed.cause)
        _restore_task(state.instance_uuid)
        reporter.finish(state.ctxt, state.instance_uuid, failed=True)
        mig_db.migration_update(
            state.migration_uuid,
            {"status": mig_db.CANCELLED if aborted else mig_db.ERROR,
             "error_reason": str(failed.cause)[:2000]})
        LOG.warning("live migration of %s failed: %s", state.instance_uuid, failed)


def _restore_task(instance_uuid: str) -> bool:
    """Clear the migrating task (the vm_state never changed)."""
    try:
        db.instance_update(instance_uuid, {"task_state": None, "task_deadline": None},
                           expected_task_state=st.MIGRATING)
        return True
    except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
        LOG.debug("migrating task of %s not cleared: %s", instance_uuid, exc)
        return False

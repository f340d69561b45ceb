"""The delete flow.

* The instance runs on a host whose compute service is up: cast
  ``terminate_instance`` there. The agent destroys the guest, soft-deletes
  the instance through ConductorManager.instance_destroy (which frees the
  allocation) and finishes the delete action.
* It never reached a host (host None), or its host's service is down or
  unknown, or the cast finds no queue: clean up here with the steps below
  (state saved on the delete action). A guest left on a dead host is found
  and destroyed by that host's start-up reconciliation when it comes back.

Local steps: ``mark_deleting`` (task deleting), ``free_resources``,
``soft_delete``. A delete wins over any task (a build still scheduling, a
stuck operation): the user asked for the instance to go.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from oslo_config import cfg

from conductor.flows import runner
from conductor.flows.base import Flow
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import binaries, deadlines, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db

LOG = logging.getLogger(__name__)

ACTION = st.operation("delete").action


@dataclasses.dataclass
class DeleteState(FlowState):
    vm_state: str = ""
    task_state: str | None = None


class MarkDeleting(Step):
    """Enter task deleting (any state). Revert: back to the task it had."""

    name = "mark_deleting"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def execute(self, state: DeleteState) -> None:
        db.instance_update(state.instance_uuid,
                           {"task_state": st.DELETING,
                            "task_deadline": deadlines.task_deadline(self.conf, st.DELETING)},
                           expected_vm_state=state.vm_state,
                           expected_task_state=state.task_state)

    def revert(self, state: DeleteState) -> None:
        try:
            db.instance_update(state.instance_uuid,
                               {"task_state": None, "task_deadline": None},
                               expected_task_state=st.DELETING)
        except (exception.InstanceNotFound, exception.InstanceStateConflict):
            pass


class FreeResources(Step):
    """Free the instance's allocations. Revert: none (the instance is going
    away; a failed delete leaves it in ERROR without a claim, and its
    resources are not used by anything)."""

    name = "free_resources"
    resumable = True

    def execute(self, state: DeleteState) -> None:
        db.allocation_free(state.instance_uuid)


class SoftDelete(Step):
    """vm_state deleted, then soft-delete the row. Revert: none (last step).
    Resumable: after a restart it finishes what it began."""

    name = "soft_delete"
    resumable = True

    def execute(self, state: DeleteState) -> None:
        now = datetime.datetime.now(datetime.UTC)
        try:
            db.instance_update(state.instance_uuid,
                               {"vm_state": st.DELETED, "task_state": None,
                                "task_deadline": None, "terminated_at": now},
                               expected_task_state=st.DELETING)
        except exception.InstanceNotFound:
            return   # already gone: done before a restart
        db.instance_destroy(state.instance_uuid, expected_vm_state=st.DELETED)


class DeleteFlow(Flow):
    name = "delete"

    def __init__(self, conf: cfg.ConfigOpts, host: str, compute) -> None:
        super().__init__(conf, host)
        self.compute = compute
        # Called with (ctxt, instance_uuid) once a local delete is done (the
        # conductor releases the server's volumes there).
        self.on_deleted = None

    def steps(self) -> list[Step]:
        return [MarkDeleting(self.conf), FreeResources(), SoftDelete()]

    def delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        try:
            inst = db.instance_get(instance_uuid)
        except exception.InstanceNotFound:
            LOG.info("instance %s already deleted", instance_uuid)
            return
        reporter = self.recorder(instance_uuid, ctxt.request_id, ACTION).reporter
        if inst.host and self.host_up(inst.host):
            try:
                with reporter.event(ctxt, instance_uuid, ACTION, "conductor_terminate_on_host",
                                    fault=False):
                    self.compute.terminate_instance(ctxt, inst.host, instance_uuid)
                return
            except exception.MessageUndeliverable:
                pass   # its agent is gone after all: delete here
        self.delete_locally(ctxt, inst.uuid, inst.vm_state, inst.task_state)

    def delete_locally(self, ctxt: RequestContext, instance_uuid: str, vm_state: str,
                       task_state: str | None) -> bool:
        """Delete without the host's agent; True when the instance is gone."""
        recorder = self.recorder(instance_uuid, ctxt.request_id, ACTION)
        state = DeleteState(ctxt, instance_uuid, vm_state=vm_state, task_state=task_state)
        try:
            runner.run_flow(self.name, self.steps(), state, recorder)
        except FlowFailed as failed:
            LOG.warning("local delete of %s failed: %s", instance_uuid, failed)
            recorder.reporter.finish(ctxt, instance_uuid, failed=True)
            return False
        recorder.reporter.finish(ctxt, instance_uuid)
        if self.on_deleted is not None:
            self.on_deleted(ctxt, instance_uuid)
        return True

    def resume(self, record: db.FlowRecord) -> None:
        state = DeleteState.from_data(record.flow_data or {})
        recorder = self.recorder(record.instance_uuid, record.ref.key[1], ACTION)
        try:
            runner.resume_flow(self.steps(), state, recorder, record)
        except FlowFailed:
            recorder.reporter.finish(state.ctxt, state.instance_uuid, failed=True)
            return
        recorder.reporter.finish(state.ctxt, state.instance_uuid)

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        """A delete outlived its deadline. With no host, or a host that is
        down, the delete is completed here; otherwise the instance goes to
        ERROR so the user can ask again."""
        reporter = self.recorder(instance.uuid, ctxt.request_id, ACTION).reporter
        reporter.fault(ctxt, instance.uuid, reason)
        if instance.host is None or not self.host_up(instance.host):
            return self.delete_locally(ctxt, instance.uuid, instance.vm_state,
                                       instance.task_state)
        try:
            db.instance_update(instance.uuid,
                               {"vm_state": st.ERROR, "task_state": None,
                                "task_deadline": None},
                               expected_vm_state=instance.vm_state,
                               expected_task_state=st.DELETING)
        except (exception.InstanceStateConflict, exception.InstanceNotFound):
            return False  # it moved on by itself
        reporter.finish(ctxt, instance.uuid, failed=True)
        return True

    def host_up(self, host: str) -> bool:
        try:
            service = db.service_get(host, binaries.COMPUTE)
        except exception.ServiceNotFound:
            return False
        return db.service_is_up(service, self.conf.service_down_time)

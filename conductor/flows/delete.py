"""The delete flow.

* The instance runs on a host whose compute service is up: cast
  ``terminate_instance`` there. The agent destroys the guest and soft-deletes
  the instance through ConductorManager.instance_destroy, which frees the
  allocation.
* It never reached a host (host None), or its host's service is down or
  unknown, or the cast finds no queue: clean up here with the steps below.
  A guest left on a dead host is found and destroyed by that host's
  start-up reconciliation when it comes back.

Local steps: ``mark_deleting`` (task deleting), ``free_resources``,
``soft_delete``. A delete wins over any task (a build still scheduling, a
stuck operation): the user asked for the instance to go.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from oslo_config import cfg

from conductor.flows.runner import ActionRecorder, FlowFailed, Step, run_flow
from flotilla import deadlines, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db

LOG = logging.getLogger(__name__)
COMPUTE_BINARY = "flotilla-compute"


@dataclasses.dataclass
class DeleteState:
    instance_uuid: str
    vm_state: str
    task_state: str | None


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

    def execute(self, state: DeleteState) -> None:
        db.allocation_free(state.instance_uuid)


class SoftDelete(Step):
    """vm_state deleted, then soft-delete the row. Revert: none (last step)."""

    name = "soft_delete"

    def execute(self, state: DeleteState) -> None:
        now = datetime.datetime.now(datetime.UTC)
        db.instance_update(state.instance_uuid,
                           {"vm_state": st.DELETED, "task_state": None,
                            "task_deadline": None, "terminated_at": now},
                           expected_task_state=st.DELETING)
        db.instance_destroy(state.instance_uuid, expected_vm_state=st.DELETED)


class DeleteFlow:
    def __init__(self, conf: cfg.ConfigOpts, compute, host: str) -> None:
        self.conf = conf
        self.compute = compute
        self.host = host

    def delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        try:
            inst = db.instance_get(instance_uuid)
        except exception.InstanceNotFound:
            LOG.info("instance %s already deleted", instance_uuid)
            return
        _ensure_action(ctxt, instance_uuid)
        recorder = ActionRecorder(instance_uuid, ctxt.request_id, self.host)
        if inst.host and self.host_up(inst.host):
            recorder.start("conductor_terminate_on_host")
            try:
                self.compute.terminate_instance(ctxt, inst.host, instance_uuid)
                recorder.finish("conductor_terminate_on_host", "Success",
                                details="host %s" % inst.host)
                return
            except exception.MessageUndeliverable as exc:
                recorder.finish("conductor_terminate_on_host", "Error", details=str(exc))
        self.delete_locally(ctxt, inst.uuid, inst.vm_state, inst.task_state, recorder)

    def delete_locally(self, ctxt: RequestContext, instance_uuid: str, vm_state: str,
                       task_state: str | None, recorder: ActionRecorder | None = None) -> bool:
        """Delete without the host's agent; True when the instance is gone."""
        recorder = recorder or ActionRecorder(instance_uuid, ctxt.request_id, self.host)
        state = DeleteState(instance_uuid, vm_state, task_state)
        try:
            run_flow([MarkDeleting(self.conf), FreeResources(), SoftDelete()], state, recorder)
        except FlowFailed as failed:
            LOG.warning("local delete of %s failed: %s", instance_uuid, failed)
            _finish(instance_uuid, ctxt.request_id, "Error")
            return False
        _finish(instance_uuid, ctxt.request_id, None)
        return True

    def host_up(self, host: str) -> bool:
        try:
            service = db.service_get(host, COMPUTE_BINARY)
        except exception.ServiceNotFound:
            return False
        return db.service_is_up(service, self.conf.service_down_time)


def _ensure_action(ctxt: RequestContext, instance_uuid: str) -> None:
    try:
        db.action_get(instance_uuid, ctxt.request_id)
    except exception.NotFound:
        db.action_start(instance_uuid, "delete", ctxt.request_id,
                        user_id=ctxt.user_id, project_id=ctxt.project_id)


def _finish(instance_uuid: str, request_id: str, message: str | None) -> None:
    try:
        db.action_finish(instance_uuid, request_id, message=message)
    except exception.NotFound:
        pass

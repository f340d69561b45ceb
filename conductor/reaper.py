"""The reaper: ends every task that outlived its deadline.

A task ends stuck when a message was lost, an agent died mid-operation or a
flow crashed. Rules, per task found past its deadline
(``db.instance_get_expired_tasks``):

* ``scheduling`` / ``spawning`` (a build): claim freed, vm_state ERROR;
* ``deleting``: if the instance has no host or its host's service is down,
  the delete is completed here (claim freed, soft-deleted); otherwise ERROR,
  so the user can ask again;
* any other task (powering_off, rebooting, migrating, ...) runs on a guest
  that exists: the task is cleared and the instance stays in its vm_state,
  which is the last stable state (a powering_off active guest is active
  again; the power state sync corrects what the hypervisor really did).

Each ending records a fault saying which task timed out and when, an
Error event ``conductor_reap_task`` on the task's action and finishes it.
Every change is a compare-and-swap on the (vm_state, task_state) read, so a
task that finishes at the same moment wins and is left alone. A task with
no deadline at all (written by code that did not set one) is given one
from now, so it too cannot stay forever.
"""

from __future__ import annotations

import datetime
import logging

from oslo_config import cfg

from conductor.flows.delete import DeleteFlow
from flotilla import deadlines, exception
from flotilla import states as st
from flotilla.context import get_admin_context
from flotilla.db import api as db
from flotilla.db import scheduling as sched_db

LOG = logging.getLogger(__name__)

_BUILD_TASKS = (st.SCHEDULING, st.SPAWNING)


class Reaper:
    def __init__(self, conf: cfg.ConfigOpts, delete_flow: DeleteFlow, host: str) -> None:
        self.conf = conf
        self.delete_flow = delete_flow
        self.host = host

    def run(self, now: datetime.datetime | None = None) -> int:
        """One pass; returns how many tasks were ended."""
        for inst in sched_db.instance_get_tasks_without_deadline():
            sched_db.instance_set_deadline(inst.uuid, inst.task_state,
                                           deadlines.task_deadline(self.conf, inst.task_state))
        ended = 0
        for inst in db.instance_get_expired_tasks(now):
            try:
                if self.end_task(inst):
                    ended += 1
            except Exception:
                LOG.exception("reaper could not end task %s of %s",
                              inst.task_state, inst.uuid)
        return ended

    def end_task(self, inst) -> bool:
        task, vm_state = inst.task_state, inst.vm_state
        message = ("Task %s timed out: not finished by its deadline %s; ended by the reaper"
                   % (task, inst.task_deadline.isoformat() if inst.task_deadline else "?"))
        action = sched_db.action_latest_unfinished(inst.uuid)
        request_id = action.request_id if action is not None else None
        if task == st.DELETING and (inst.host is None or not self.delete_flow.host_up(inst.host)):
            ctxt = get_admin_context()
            if request_id:
                ctxt.request_id = request_id
            db.instance_fault_create(inst.uuid, code=504, message=message[:255], host=self.host)
            return self.delete_flow.delete_locally(ctxt, inst.uuid, vm_state, task)
        values = {"task_state": None, "task_deadline": None}
        if task in _BUILD_TASKS or task == st.DELETING:
            values["vm_state"] = st.ERROR
        try:
            db.instance_update(inst.uuid, values, expected_vm_state=vm_state,
                               expected_task_state=task)
        except (exception.InstanceStateConflict, exception.InstanceNotFound):
            return False  # it moved on by itself
        if task in _BUILD_TASKS:
            db.allocation_free(inst.uuid)
        db.instance_fault_create(inst.uuid, code=504, message=message[:255], host=self.host)
        if request_id:
            try:
                db.action_event_start(inst.uuid, request_id, "conductor_reap_task",
                                      host=self.host)
                db.action_event_finish(inst.uuid, request_id, "conductor_reap_task",
                                       "Error", details=message)
                db.action_finish(inst.uuid, request_id, message="Error")
            except exception.NotFound:
                pass
        LOG.warning("instance %s: %s", inst.uuid, message)
        return True

"""The reaper: ends every task that outlived its deadline.

A task ends stuck when a message was lost, an agent died mid-operation or a
flow crashed. For each task found past its deadline
(``db.instance_get_expired_tasks``) the reaper does what the task's
operation says in :data:`flotilla.states.OPERATIONS`:

* ``cleanup``: the operation's conductor flow cleans up (a build frees its
  claim and ends in ERROR; a delete completes here when the host is gone,
  else ends in ERROR so the user can ask again; ...);
* ``restore``: the task is cleared and the instance stays in its vm_state,
  which is the last stable state (a powering_off active guest is active
  again; the power state sync corrects what the hypervisor really did);
* ``error``: the task is cleared and the instance goes to ERROR.

A task this version does not know (written by a newer service) is restored.
Each ending records a fault saying which task timed out and when, an Error
event ``conductor_reap_task`` on the task's action, and finishes that
action. Every change is a compare-and-swap on the (vm_state, task_state)
read, so a task that finishes at the same moment wins and is left alone. A
task with no deadline at all (written by code that did not set one) is given
one from now, so it too cannot stay forever.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping

from oslo_config import cfg

from conductor.flows.base import Flow
from flotilla import actions, deadlines, exception
from flotilla import states as st
from flotilla.context import get_admin_context
from flotilla.db import api as db
from flotilla.db import scheduling as sched_db

LOG = logging.getLogger(__name__)

EVENT = "conductor_reap_task"


class Reaper:
    def __init__(self, conf: cfg.ConfigOpts, flows: Mapping[str, Flow], host: str) -> None:
        self.conf = conf
        self.flows = flows
        self.host = host
        self.reporter = actions.Reporter(actions.DatabaseStore(), host)

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
        reason = exception.TaskTimedOut(
            task=task, deadline=inst.task_deadline.isoformat() if inst.task_deadline else "?")
        op = st.operation_for_task(task)
        policy = op.on_timeout if op is not None else st.ON_TIMEOUT_RESTORE
        action = sched_db.action_latest_unfinished(inst.uuid)
        ctxt = get_admin_context()
        if action is not None:
            ctxt.request_id = action.request_id
        action_name = action.action if action is not None else (op.action if op else task)
        LOG.warning("instance %s: %s", inst.uuid, reason)
        if policy == st.ON_TIMEOUT_CLEANUP:
            # The flow's cleanup writes the fault, with what it decided.
            self.reporter.record(ctxt, inst.uuid, action_name, EVENT, error=reason,
                                 fault=False)
            return self.flows[op.flow].cleanup(ctxt, inst, reason)
        values = {"task_state": None, "task_deadline": None}
        if policy == st.ON_TIMEOUT_ERROR:
            values["vm_state"] = st.ERROR
        try:
            db.instance_update(inst.uuid, values, expected_vm_state=vm_state,
                               expected_task_state=task)
        except (exception.InstanceStateConflict, exception.InstanceNotFound):
            return False  # it moved on by itself
        self.reporter.record(ctxt, inst.uuid, action_name, EVENT, error=reason)
        if action is not None:
            self.reporter.finish(ctxt, inst.uuid, failed=True)
        return True

"""Reclaiming soft-deleted servers.

With ``[DEFAULT] reclaim_instance_interval`` > 0 a deleted server is first
soft-deleted (powered off, restorable). Once it has stayed so for the
interval, the conductor deletes it for good: the same delete flow a user's
delete runs (task deleting by compare-and-swap, a ``delete`` action under a
request id of its own, the flow). A server restored or deleted meanwhile
fails the compare-and-swap and is left alone.
"""

from __future__ import annotations

import datetime
import logging

from flotilla import exception
from flotilla import states as st
from flotilla.context import get_admin_context
from flotilla.db import api as db
from flotilla.db.types import utcnow
from flotilla.deadlines import task_deadline

LOG = logging.getLogger(__name__)


def reclaim(conf, delete_flow) -> int:
    """Delete the servers soft-deleted longer than the interval; how many."""
    interval = conf.reclaim_instance_interval
    if interval <= 0:
        return 0
    cutoff = utcnow() - datetime.timedelta(seconds=interval)
    count = 0
    for inst in db.instance_get_all(vm_state=st.SOFT_DELETED):
        if inst.task_state is not None or (inst.updated_at or inst.created_at) > cutoff:
            continue
        ctxt = get_admin_context()
        try:
            db.instance_update(inst.uuid, {"task_state": st.DELETING,
                                           "task_deadline": task_deadline(conf, st.DELETING)},
                               expected_vm_state=st.SOFT_DELETED, expected_task_state=None)
        except (exception.InstanceStateConflict, exception.InstanceNotFound):
            continue
        db.action_start(inst.uuid, st.operation("delete").action, ctxt.request_id,
                        None, inst.project_id, message="reclaimed")
        LOG.info("Reclaiming server %s, soft-deleted since %s", inst.uuid,
                 inst.updated_at)
        delete_flow.delete_instance(ctxt, inst.uuid)
        count += 1
    return count

"""The conductor's RPC endpoint (topic ``conductor``).

Thin: each method checks its arguments and calls into ``flotilla.db`` or a
flow. The methods in the first block are the writes compute agents may ask
for; agents have no database access of their own.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from oslo_config import cfg

from flotilla import exception, states
from flotilla.context import RequestContext
from flotilla.db import api as db

LOG = logging.getLogger(__name__)

# What an agent may set on an instance; everything else (project, flavor,
# deleted flags) is not the hypervisor host's business.
_AGENT_WRITABLE = frozenset({
    "vm_state", "task_state", "power_state", "host", "node", "launched_at",
    "terminated_at", "task_deadline"})


class ConductorManager:
    RPC_API_VERSION = "1.0"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    # --- writes on behalf of compute agents ---------------------------------

    def service_heartbeat(self, ctxt: RequestContext, host: str, binary: str,
                          topic: str) -> None:
        db.service_heartbeat(host, binary, topic)

    def instance_get(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        return db.instance_get(instance_uuid).to_dict()

    def instance_get_all_by_host(self, ctxt: RequestContext, host: str,
                                 read_deleted: bool = False) -> list[dict]:
        return [i.to_dict() for i in
                db.instance_get_all_by_host(host, read_deleted=read_deleted)]

    def instance_update(self, ctxt: RequestContext, instance_uuid: str,
                        values: dict, expected: dict) -> dict:
        unknown = set(values) - _AGENT_WRITABLE
        if unknown:
            raise exception.Invalid(reason="fields %s cannot be set by a "
                                    "compute agent" % sorted(unknown))
        values = dict(values)
        for key in ("launched_at", "terminated_at", "task_deadline"):
            if isinstance(values.get(key), str):
                values[key] = datetime.datetime.fromisoformat(values[key])
        if "task_state" in values and "task_deadline" not in values:
            values["task_deadline"] = self.task_deadline(values["task_state"])
        return db.instance_update(instance_uuid, values,
                                  **_expected_kwargs(expected)).to_dict()

    def instance_destroy(self, ctxt: RequestContext, instance_uuid: str,
                         expected: dict) -> dict:
        instance = db.instance_destroy(instance_uuid, **_expected_kwargs(expected))
        db.allocation_free(instance_uuid)
        return instance.to_dict()

    def instance_fault_create(self, ctxt: RequestContext, instance_uuid: str,
                              code: int, message: str, details: str | None = None,
                              host: str | None = None) -> None:
        db.instance_fault_create(instance_uuid, code=code, message=message,
                                 details=details, host=host)

    def action_event_start(self, ctxt: RequestContext, instance_uuid: str,
                           action: str, event: str, host: str) -> None:
        try:
            db.action_get(instance_uuid, ctxt.request_id)
        except exception.NotFound:
            # An operation nobody recorded an action for (an agent's own
            # repair at start-up, a request sent straight to the agent).
            db.action_start(instance_uuid, action, ctxt.request_id,
                            user_id=ctxt.user_id, project_id=ctxt.project_id)
        db.action_event_start(instance_uuid, ctxt.request_id, event, host=host)

    def action_event_finish(self, ctxt: RequestContext, instance_uuid: str,
                            event: str, result: str, details: str | None = None) -> None:
        db.action_event_finish(instance_uuid, ctxt.request_id, event, result,
                               details=details)
        db.action_finish(instance_uuid, ctxt.request_id,
                         message=None if result == "Success" else "Error")

    def compute_node_update(self, ctxt: RequestContext, host: str,
                            resources: dict[str, Any]) -> None:
        db.compute_node_update(host, resources)

    # --- helpers --------------------------------------------------------------

    def task_deadline(self, task_state: str | None) -> datetime.datetime | None:
        """When a task entered now must be over (None when idle)."""
        if task_state is None:
            return None
        overrides = self.conf.conductor.task_timeouts or {}
        seconds = int(overrides.get(task_state,
                                    states.DEFAULT_TASK_TIMEOUTS.get(task_state, 600)))
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)


def _expected_kwargs(expected: dict | None) -> dict:
    """RPC form ``{"vm_state": x, "task_state": [a, None]}`` to db kwargs;
    a key left out is not checked."""
    expected = expected or {}
    unknown = set(expected) - {"vm_state", "task_state"}
    if unknown:
        raise exception.Invalid(reason="cannot expect %s" % sorted(unknown))
    kwargs = {}
    for key in ("vm_state", "task_state"):
        if key in expected:
            value = expected[key]
            kwargs["expected_" + key] = tuple(value) if isinstance(value, list) else value
    return kwargs

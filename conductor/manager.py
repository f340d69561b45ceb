"""The conductor's RPC endpoint (topic ``conductor``).

Thin: each method checks its arguments and calls into ``flotilla.db`` or a
flow. The methods in the first block are the writes compute agents may ask
for; agents have no database access of their own. The second block starts
flows (conductor/flows/); the reaper of stuck tasks runs as a periodic task.

A failed spawn reaches the build flow either through :meth:`build_failed`
or, for agents that report it the older way, through :meth:`instance_update`
moving a building/spawning instance to ERROR: when the conductor scheduled
that build, the update is turned into a reschedule instead.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from oslo_config import cfg

from conductor.flows.build import BuildFlow
from conductor.flows.delete import DeleteFlow
from conductor.reaper import Reaper
from flotilla import deadlines, exception
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.periodic import periodic_task
from flotilla.rpc import private

LOG = logging.getLogger(__name__)

# What an agent may set on an instance; everything else (project, flavor,
# deleted flags) is not the hypervisor host's business.
_AGENT_WRITABLE = frozenset({
    "vm_state", "task_state", "power_state", "host", "node", "launched_at",
    "terminated_at", "task_deadline"})


class ConductorManager:
    RPC_API_VERSION = "1.1"

    def __init__(self, conf: cfg.ConfigOpts, transport=None) -> None:
        self.conf = conf
        self._transport = transport
        self._owns_transport = transport is None
        self._build_flow: BuildFlow | None = None
        self._delete_flow: DeleteFlow | None = None
        self._reaper: Reaper | None = None

    # --- service hooks ----------------------------------------------------------

    def _flows(self) -> tuple[BuildFlow, DeleteFlow]:
        """The flows and their RPC clients, made on first use (a conductor
        that only serves agents' writes needs no client)."""
        if self._build_flow is None:
            from compute.rpcapi import ComputeAPI
            from flotilla import rpc
            from scheduler.rpcapi import SchedulerAPI
            if self._transport is None:
                self._transport = rpc.get_transport(self.conf)
            compute = ComputeAPI(self._transport)
            self._delete_flow = DeleteFlow(self.conf, compute, self.conf.host)
            self._build_flow = BuildFlow(self.conf, SchedulerAPI(self._transport),
                                         compute, self.conf.host)
        return self._build_flow, self._delete_flow

    @private
    def cleanup_host(self) -> None:
        if self._owns_transport and self._transport is not None:
            self._transport.cleanup()
            self._transport = None

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
            values["task_deadline"] = deadlines.task_deadline(self.conf, values["task_state"])
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

    # --- flows (1.1) --------------------------------------------------------------

    def build_instances(self, ctxt: RequestContext, instance_uuids: list[str],
                        request_spec: dict, image: dict | None) -> None:
        self._flows()[0].build_instances(ctxt, list(instance_uuids), request_spec, image)

    def build_failed(self, ctxt: RequestContext, instance_uuid: str, host: str,
                     reason: str) -> None:
        self._flows()[0].build_failed(ctxt, instance_uuid, host, reason)

    def delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self._flows()[1].delete_instance(ctxt, instance_uuid)

    # --- periodic tasks ------------------------------------------------------------

    @periodic_task(spacing=lambda: _reaper_interval())
    def _reap_stuck_tasks(self) -> None:
        if self._reaper is None:
            self._reaper = Reaper(self.conf, self._flows()[1], self.conf.host)
        ended = self._reaper.run()
        if ended:
            LOG.warning("reaper ended %d stuck task(s)", ended)


def _reaper_interval() -> float:
    from flotilla.conf import CONF
    return CONF.conductor.reaper_interval


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

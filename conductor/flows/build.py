"""The build flow: schedule and claim, then cast the build to the host.

Steps (per instance, run by :func:`conductor.flows.runner.run_flow`):

1. ``schedule_instance``: ask the scheduler for a host (it claims the
   resources) unless the request's batch already chose one, and record the
   host on the instance, still building/scheduling, with a fresh deadline.
2. ``build_on_host``: cast ``build_and_run_instance`` to ``compute.<host>``.

Retries. The build may fail in two places, and both count as one attempt on
that host, up to ``[scheduler] max_attempts``:

* the cast finds no queue for the host (MessageUndeliverable, at once):
  the flow reverts (claim freed, host cleared) and runs again with the host
  excluded;
* the spawn fails on the host: the agent reports it later through
  ConductorManager.build_failed (see :meth:`BuildFlow.build_failed`).

Retry state lives in the action record, not in a new table nor in the
user-visible instance metadata: the Success event of ``build_on_host`` on
the create action (keyed by the request id every service passes along)
carries, as JSON details, the host, the attempt number, the hosts tried
before, the request spec and the image. Any conductor process can therefore
pick up a failure report, after a restart too, and the same record shows
the tenant where each attempt ran.

When no attempt is left, or no host fits, the instance goes to ERROR with a
fault (the NoValidHost reason says which filter eliminated what), its claim
freed and its action finished as Error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from oslo_config import cfg

from conductor.flows.runner import ActionRecorder, FlowFailed, Step, run_flow
from flotilla import deadlines, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import scheduling as sched_db

LOG = logging.getLogger(__name__)

BUILD_EVENT = "conductor_build_on_host"
_STOPPED = (exception.InstanceNotFound, exception.InstanceStateConflict)


@dataclasses.dataclass
class BuildState:
    ctxt: RequestContext
    instance_uuid: str
    request_spec: dict[str, Any]
    image: dict | None
    attempt: int
    tried_hosts: list[str]
    destination: dict | None = None
    host: str | None = None


class ScheduleInstance(Step):
    """Pick and claim a host; record it on the instance.

    Revert: free the claim and clear the host (the instance stays
    building/scheduling for the next attempt or for the caller's ERROR).
    """

    name = "schedule_instance"

    def __init__(self, conf: cfg.ConfigOpts, scheduler) -> None:
        self.conf = conf
        self.scheduler = scheduler

    def check(self, state: BuildState) -> None:
        inst = db.instance_get(state.instance_uuid)
        if inst.vm_state != st.BUILDING or inst.task_state not in (st.SCHEDULING, None):
            raise exception.InstanceStateConflict(
                instance_uuid=state.instance_uuid, actual_vm_state=inst.vm_state,
                actual_task_state=inst.task_state, expected_vm_state=st.BUILDING,
                expected_task_state=st.SCHEDULING)

    def execute(self, state: BuildState) -> None:
        if state.destination is None:
            spec = dict(state.request_spec, num_instances=1)
            state.destination = self.scheduler.select_destinations(
                state.ctxt, spec, [state.instance_uuid],
                excluded_hosts=state.tried_hosts)[0]
        state.host = state.destination["host"]
        db.instance_update(
            state.instance_uuid,
            {"host": state.host, "node": state.destination.get("nodename") or state.host,
             "task_state": st.SCHEDULING,
             "task_deadline": deadlines.task_deadline(self.conf, st.SCHEDULING)},
            expected_vm_state=st.BUILDING, expected_task_state=(st.SCHEDULING, None))

    def revert(self, state: BuildState) -> None:
        state.destination = None
        db.allocation_free(state.instance_uuid)
        try:
            db.instance_update(state.instance_uuid, {"host": None, "node": None},
                               expected_vm_state=st.BUILDING,
                               expected_task_state=(st.SCHEDULING, None))
        except _STOPPED:
            pass  # deleted or moved on: nothing of ours to clear

    def details(self, state: BuildState) -> str:
        return "host %s (attempt %d)" % (state.host, state.attempt)


class CastBuild(Step):
    """Cast build_and_run_instance to the chosen host.

    Revert: none. A cast the broker confirmed cannot be recalled (the agent
    reports a failed spawn itself), and one it refused was never sent; the
    claim is freed by ScheduleInstance's revert.
    """

    name = "build_on_host"

    def __init__(self, compute) -> None:
        self.compute = compute

    def execute(self, state: BuildState) -> None:
        self.compute.build_and_run_instance(state.ctxt, state.host,
                                            state.instance_uuid, state.image)

    def details(self, state: BuildState) -> str:
        return json.dumps({"host": state.host, "attempt": state.attempt,
                           "tried": state.tried_hosts,
                           "request_spec": state.request_spec, "image": state.image})


class BuildFlow:
    """Runs builds, their retries and their failures."""

    def __init__(self, conf: cfg.ConfigOpts, scheduler, compute, host: str) -> None:
        self.conf = conf
        self.scheduler = scheduler
        self.compute = compute
        self.host = host

    # --- entry points -----------------------------------------------------------

    def build_instances(self, ctxt: RequestContext, instance_uuids: list[str],
                        request_spec: dict[str, Any], image: dict | None) -> None:
        """Schedule the whole request at once (all or nothing, so group
        policies hold across its instances), then build each instance."""
        live = [u for u in instance_uuids if self._renew_deadline(u)]
        if not live:
            return
        recorders = {u: ActionRecorder(u, ctxt.request_id, self.host) for u in live}
        for rec in recorders.values():
            rec.start("conductor_select_destinations")
        spec = dict(request_spec, num_instances=len(live))
        try:
            destinations = self.scheduler.select_destinations(ctxt, spec, live)
        except Exception as exc:
            for uuid, rec in recorders.items():
                rec.finish("conductor_select_destinations", "Error", details=str(exc))
                self.fail(ctxt, uuid, exc)
            return
        per_instance = dict(request_spec, num_instances=1)
        for dest in destinations:
            uuid = dest["instance_uuid"]
            recorders[uuid].finish("conductor_select_destinations", "Success",
                                   details="host %s" % dest["host"])
            self.run(ctxt, uuid, per_instance, image, destination=dest)

    def run(self, ctxt: RequestContext, instance_uuid: str, request_spec: dict,
            image: dict | None, attempt: int = 1, tried: list[str] | None = None,
            destination: dict | None = None) -> bool:
        """Run the flow, retrying unreachable hosts; True once a build was
        cast."""
        tried = list(tried or [])
        recorder = ActionRecorder(instance_uuid, ctxt.request_id, self.host)
        steps = [ScheduleInstance(self.conf, self.scheduler), CastBuild(self.compute)]
        while True:
            state = BuildState(ctxt, instance_uuid, request_spec, image, attempt,
                               tried, destination)
            try:
                run_flow(steps, state, recorder)
                return True
            except FlowFailed as failed:
                cause = failed.cause
            if isinstance(cause, _STOPPED):
                LOG.info("build of %s stopped: %s", instance_uuid, cause)
                return False
            if isinstance(cause, exception.MessageUndeliverable) and state.host:
                self._fault(instance_uuid, 503, "Host %s is unreachable: %s"
                            % (state.host, cause), host=state.host)
                if attempt < self.conf.scheduler.max_attempts:
                    tried.append(state.host)
                    attempt += 1
                    destination = None
                    continue
                cause = self._exhausted(attempt, cause)
            self.fail(ctxt, instance_uuid, cause)
            return False

    def build_failed(self, ctxt: RequestContext, instance_uuid: str, host: str | None,
                     reason: str) -> None:
        """A host reports that the spawn failed: free its claim and try
        another host, or end in ERROR when no attempt is left."""
        record = self.find_build_record(instance_uuid, ctxt.request_id)
        host = host or (record or {}).get("host")
        self._fault(instance_uuid, 500, "Build on host %s failed: %s" % (host, reason),
                    host=host)
        if record is None:
            # Not a build this conductor scheduled (an agent-driven one):
            # nothing to retry with.
            self.fail(ctxt, instance_uuid, reason, record_fault=False)
            return
        db.allocation_free(instance_uuid)
        try:
            db.instance_update(
                instance_uuid,
                {"host": None, "node": None, "task_state": st.SCHEDULING,
                 "task_deadline": deadlines.task_deadline(self.conf, st.SCHEDULING)},
                expected_vm_state=st.BUILDING,
                expected_task_state=(st.SPAWNING, st.SCHEDULING, None))
        except _STOPPED as exc:
            LOG.info("not rescheduling %s: %s", instance_uuid, exc)
            return
        sched_db.action_reopen(instance_uuid, ctxt.request_id)
        attempt = int(record.get("attempt", 1))
        if attempt >= self.conf.scheduler.max_attempts:
            self.fail(ctxt, instance_uuid, self._exhausted(attempt, reason))
            return
        tried = list(record.get("tried") or []) + ([host] if host else [])
        LOG.info("rescheduling %s after a failed spawn on %s (attempt %d of %d)",
                 instance_uuid, host, attempt + 1, self.conf.scheduler.max_attempts)
        self.run(ctxt, instance_uuid, record["request_spec"], record.get("image"),
                 attempt=attempt + 1, tried=tried)

    # --- helpers -------------------------------------------------------------------

    def find_build_record(self, instance_uuid: str, request_id: str) -> dict | None:
        """The latest attempt's record (see the module docstring), or None."""
        try:
            action = db.action_get(instance_uuid, request_id)
        except exception.NotFound:
            return None
        for event in reversed(db.action_events_get(action.id)):
            if event.event == BUILD_EVENT and event.result == "Success" and event.details:
                try:
                    return json.loads(event.details)
                except ValueError:
                    return None
        return None

    def fail(self, ctxt: RequestContext, instance_uuid: str, cause: Exception | str,
             record_fault: bool = True) -> None:
        """End the build in ERROR: claim freed, fault recorded, action Error."""
        db.allocation_free(instance_uuid)
        message = str(cause)
        if record_fault:
            code = getattr(cause, "code", 500)
            self._fault(instance_uuid, code if isinstance(code, int) else 500, message)
        try:
            db.instance_update(instance_uuid,
                               {"vm_state": st.ERROR, "task_state": None,
                                "task_deadline": None},
                               expected_vm_state=st.BUILDING)
        except _STOPPED as exc:
            LOG.info("build of %s failed but the instance moved on: %s", instance_uuid, exc)
        try:
            db.action_finish(instance_uuid, ctxt.request_id, message="Error")
        except exception.NotFound:
            pass
        LOG.warning("build of %s failed: %s", instance_uuid, message)

    def _renew_deadline(self, instance_uuid: str) -> bool:
        """Restart the scheduling deadline now that the flow runs; False if
        the instance is no longer waiting to be scheduled."""
        try:
            db.instance_update(
                instance_uuid,
                {"task_state": st.SCHEDULING,
                 "task_deadline": deadlines.task_deadline(self.conf, st.SCHEDULING)},
                expected_vm_state=st.BUILDING, expected_task_state=(st.SCHEDULING, None))
            return True
        except _STOPPED as exc:
            LOG.info("not building %s: %s", instance_uuid, exc)
            return False

    def _exhausted(self, attempts: int, last: Exception | str) -> exception.NoValidHost:
        return exception.NoValidHost(
            reason="Build failed on %d host%s ([scheduler] max_attempts is %d); "
                   "last error: %s" % (attempts, "" if attempts == 1 else "s",
                                       self.conf.scheduler.max_attempts, last))

    def _fault(self, instance_uuid: str, code: int, message: str,
               host: str | None = None) -> None:
        try:
            db.instance_fault_create(instance_uuid, code=code, message=message[:255],
                                     details=message if len(message) > 255 else None,
                                     host=host or self.host)
        except exception.NotFound:
            pass

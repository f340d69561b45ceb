"""The build flow: schedule and claim, build on the host, wait for its report.

Steps (run by :mod:`conductor.flows.runner`, state saved on the create
action of the request):

1. ``schedule_instance``: ask the scheduler for a host (it claims the
   resources) unless the request's batch already chose one, and record the
   host on the instance, still building/scheduling, with a fresh deadline.
2. ``build_on_host``: cast ``build_and_run_instance`` to ``compute.<host>``
   and wait for the agent's report (``build_done``); if the report is lost,
   the conductor's poll reads the instance (ACTIVE: built).

A request with volume disks (boot from volume, volumes at boot) runs the
volume steps of :mod:`conductor.flows.build_volumes` between the two and
after the second; a new attempt starts its volumes afresh.

Retries. The build may fail in two places, and both count as one attempt on
that host, up to ``[scheduler] max_attempts``:

* the cast finds no queue for the host (MessageUndeliverable, at once);
* the agent reports that the spawn failed.

Either way the flow reverts (claim freed, host cleared) and runs again with
the hosts tried so far excluded; the attempt count and the hosts tried are
part of the flow's saved state, so any conductor can take the report, after
a restart too. When no attempt is left, or no host fits, the instance goes
to ERROR with a fault (the NoValidHost reason says which filter eliminated
how many hosts), its claim freed and its action finished as Error. The
flow finishes the create action: Success once the agent reported the guest
running.

Broker faults. ``select_destinations`` is a call; while the broker is
unreachable it raises MessagingUnavailable (after the transport's own
reconnect attempts, or at once when the connection died while the reply
was awaited). A short outage must not end a boot in ERROR, so the call is
retried (after a timeout too: a cut the connection did not notice loses
the request or its reply) through
:func:`flotilla.rpc.retry.call_with_retry` (the one tenacity policy:
exponential backoff with jitter) until the scheduling task's deadline;
only then does the build fail. An attempt whose reply was lost may still
have claimed, so the claims of the request's instances are freed before
each new attempt (a claim belongs to the instance uuid; the repeated
request claims afresh). NoValidHost right after an outage is asked again
too, while a host that went quiet only lately may report, and once at
once when a host reported while the scheduler was deciding
(:func:`select_destinations`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import threading
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from conductor.flows import build_volumes, runner
from conductor.flows.base import Flow
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import binaries, concurrency, deadlines, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.objects import BlockDeviceMapping, ImageMeta, RequestSpec
from flotilla.rpc import retry

LOG = logging.getLogger(__name__)

ACTION = st.operation("build").action
_STOPPED = (exception.InstanceNotFound, exception.InstanceStateConflict)


class SpawnFailed(exception.FlotillaException):
    msg_fmt = "Build on host failed: %(reason)s"
    public_msg = "The server could not be created on its host."


class AgentsTooOld(exception.FlotillaException):
    """Not retried: every host answers to the same cap."""
    msg_fmt = ("The compute agents are capped at an RPC version older than %(need)s "
               "([upgrade_levels] compute), which cannot %(what)s; upgrade them first")
    public_msg = "The compute service cannot create this server yet (an upgrade is under way)."


@dataclasses.dataclass
class BuildState(FlowState):
    request_spec: RequestSpec | None = None
    image: ImageMeta | None = None
    attempt: int = 1
    tried_hosts: list[str] = dataclasses.field(default_factory=list)
    destination: dict | None = None
    host: str | None = None
    block_devices: list[BlockDeviceMapping] = dataclasses.field(default_factory=list)


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
            spec = state.request_spec.replace(num_instances=1)
            # The deadline the flow entered scheduling with (a fresh one
            # for a task that somehow has none).
            deadline = db.instance_get(state.instance_uuid).task_deadline \
                or deadlines.task_deadline(self.conf, st.SCHEDULING)
            state.destination = select_destinations(
                self.conf, self.scheduler, state.ctxt, spec, [state.instance_uuid],
                deadline, excluded_hosts=state.tried_hosts)[0]
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
                               expected_task_state=(st.SCHEDULING, st.SPAWNING, None))
        except _STOPPED:
            pass  # deleted or moved on: nothing of ours to clear

    def details(self, state: BuildState) -> str:
        return "attempt %d" % state.attempt


def select_destinations(conf: cfg.ConfigOpts, scheduler, ctxt: RequestContext,
                        spec: RequestSpec, instance_uuids: list[str],
                        deadline: datetime.datetime | None,
                        excluded_hosts: list[str] | None = None) -> list[dict]:
    """The scheduler's answer, retried while the broker is unavailable.

    MessagingUnavailable and MessagingTimeout are retried with the RPC
    layer's backoff until ``deadline`` (the scheduling task's, UTC; naive
    means UTC), then raised; every other error (a remote failure) at once.
    A timeout is retried because a request or reply lost in a network cut
    of the broker looks like one (the connection seemed alive); the
    request expired with it (its ttl is the timeout), so no scheduler takes
    it afterwards. Before each retry the instances' claims are freed: an
    attempt whose reply was lost may have claimed already.

    NoValidHost is raised at once, unless an enabled compute host went
    quiet only lately (see :func:`compute_hosts_lately`): then it is asked
    again every ``report_interval`` until ``deadline`` (by a bounded number
    of builds at once: :class:`_QuietWaits`). A broker outage as long as
    ``service_down_time`` silences every host at once, and the boots it
    held back reach the scheduler before the hosts' next heartbeats do.
    A host whose heartbeat came after the question was asked (back, in
    the same function's terms) may have been down when the scheduler
    looked and up by the time of the answer: with no host quiet, the
    scheduler is asked once more at once (once: a host that was up all
    along and merely reported meanwhile looks the same).
    """
    remaining = _seconds_until(deadline)
    asked_again = False
    while True:
        asked_at = datetime.datetime.now(datetime.UTC)
        try:
            return _select_through_outages(conf, scheduler, ctxt, spec, instance_uuids,
                                           remaining, excluded_hosts)
        except exception.NoValidHost as exc:
            try:
                quiet, back = compute_hosts_lately(conf, asked_at, excluded_hosts)
            except exception.DBError:
                quiet = back = []   # cannot tell: the scheduler's answer stands
            if back and not quiet and not asked_again and _seconds_until(deadline) > 0:
                asked_again = True
                LOG.info("no host for %s (%s); %s reported since it was asked: asking again",
                         ", ".join(instance_uuids), exc, ", ".join(back))
                remaining = _seconds_until(deadline)
                continue
            if not quiet or _seconds_until(deadline) <= conf.report_interval:
                raise
            with _QUIET_WAITS.slot(conf) as waiting:
                if not waiting:
                    raise
                LOG.warning("no host for %s yet (%s); %s stopped reporting lately: asking "
                            "again in %ss", ", ".join(instance_uuids), exc,
                            ", ".join(quiet), conf.report_interval)
                concurrency.sleep(conf.report_interval)
            remaining = _seconds_until(deadline)


class _QuietWaits:
    """Builds waiting for quiet hosts hold an RPC worker each; at most a
    quarter of ``[rpc] executor_pool_size`` wait at once (the rest get
    NoValidHost at once), so the heartbeats that end the wait, on the same
    queue, still find workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting = 0

    @contextlib.contextmanager
    def slot(self, conf: cfg.ConfigOpts) -> Iterator[bool]:
        with self._lock:
            taken = self.waiting < max(1, conf.rpc.executor_pool_size // 4)
            if taken:
                self.waiting += 1
        try:
            yield taken
        finally:
            if taken:
                with self._lock:
                    self.waiting -= 1


_QUIET_WAITS = _QuietWaits()


def compute_hosts_lately(conf: cfg.ConfigOpts, since: datetime.datetime,
                         excluded_hosts: list[str] | None = None
                         ) -> tuple[list[str], list[str]]:
    """From one read of the enabled compute services (excluded hosts left
    out): the hosts gone quiet lately, whose last heartbeat is older than
    ``service_down_time`` by less than another ``service_down_time`` (such
    a host counts as down but may be back in a moment; one silent for
    longer is taken as gone), and the hosts back since ``since``, up now
    with a heartbeat after it. Forced-down hosts are in neither."""
    down_time = conf.service_down_time
    now = datetime.datetime.now(datetime.UTC)
    elapsed = (now - since).total_seconds()
    services = [s for s in db.service_get_all(binary=binaries.COMPUTE, include_disabled=False)
                if s.host not in (excluded_hosts or ())]
    quiet = [s.host for s in services if not db.service_is_up(s, down_time, now)
             and db.service_is_up(s, 2 * down_time, now)]
    back = [s.host for s in services if db.service_is_up(s, elapsed, now)]
    return quiet, back


def _select_through_outages(conf: cfg.ConfigOpts, scheduler, ctxt: RequestContext,
                            spec: RequestSpec, instance_uuids: list[str], remaining: float,
                            excluded_hosts: list[str] | None) -> list[dict]:
    attempts = 0

    def attempt() -> list[dict]:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            for uuid in instance_uuids:
                db.allocation_free(uuid)
        return scheduler.select_destinations(ctxt, spec, instance_uuids,
                                             excluded_hosts=excluded_hosts)

    if remaining <= 0:
        return attempt()
    return retry.call_with_retry(
        attempt, retry_on=(exception.MessagingUnavailable, exception.MessagingTimeout),
        max_delay=conf.rpc.reconnect_max_delay, deadline=remaining,
        what="select_destinations for %s" % ", ".join(instance_uuids),
        where="the scheduler")


def _seconds_until(deadline: datetime.datetime | None) -> float:
    if deadline is None:
        return 0.0
    if deadline.tzinfo is None:  # the database hands back naive UTC
        deadline = deadline.replace(tzinfo=datetime.UTC)
    return (deadline - datetime.datetime.now(datetime.UTC)).total_seconds()


class BuildOnHost(Step):
    """Cast build_and_run_instance to the chosen host and wait for its
    report.

    Revert: none. A cast the broker confirmed cannot be recalled, and an
    agent whose spawn failed removed what it made before reporting; the
    claim is freed by ScheduleInstance's revert.
    """

    name = "build_on_host"
    waits_for_report = True

    def __init__(self, compute) -> None:
        self.compute = compute

    def check(self, state: BuildState) -> None:
        # An agent capped below 1.7 would boot without the volumes: refuse
        # before any volume is made or reserved.
        if state.block_devices and not self.compute.client.can_send_version("1.7"):
            raise AgentsTooOld(need="1.7", what="boot a server with volumes")

    def execute(self, state: BuildState) -> None:
        extra = {"block_device_mapping": state.block_devices} if state.block_devices else {}
        self.compute.build_and_run_instance(state.ctxt, state.host,
                                            state.instance_uuid, state.image, **extra)

    def on_report(self, state: BuildState, report: dict[str, Any]) -> None:
        if report.get("error"):
            raise SpawnFailed(reason=report["error"])

    def poll(self, state: BuildState) -> dict[str, Any] | None:
        try:
            inst = db.instance_get(state.instance_uuid)
        except exception.InstanceNotFound:
            return {"error": "the instance was deleted during its build"}
        if inst.vm_state == st.ACTIVE or (inst.vm_state != st.BUILDING
                                          and inst.launched_at is not None):
            return {"host": inst.host}
        if inst.vm_state != st.BUILDING:
            return {"error": "the instance left building (%s)" % inst.vm_state}
        return None


class BuildFlow(Flow):
    """Runs builds, their retries and their failures."""

    name = "build"

    def __init__(self, conf: cfg.ConfigOpts, host: str, scheduler, compute,
                 volumes=None) -> None:
        super().__init__(conf, host)
        self.scheduler = scheduler
        self.compute = compute
        self.volumes = volumes

    def steps(self, state: BuildState | None = None) -> list[Step]:
        if state is None or not state.block_devices:
            return [ScheduleInstance(self.conf, self.scheduler), BuildOnHost(self.compute)]
        before, after = build_volumes.steps(self.conf, self.volumes, self.compute)
        return [ScheduleInstance(self.conf, self.scheduler), *before,
                BuildOnHost(self.compute), *after]

    # --- entry points -----------------------------------------------------------

    def build_instances(self, ctxt: RequestContext, instance_uuids: list[str],
                        request_spec: RequestSpec, image: ImageMeta | None,
                        block_device_mapping: list | None = None) -> None:
        """Schedule the whole request at once (all or nothing, so group
        policies hold across its instances), then build each instance."""
        live = [u for u in instance_uuids if self._renew_deadline(u)]
        if not live:
            return
        reporter = runner.ActionRecorder(live[0], ctxt.request_id, ACTION, self.host).reporter
        spec = request_spec.replace(num_instances=len(live))
        deadline = deadlines.task_deadline(self.conf, st.SCHEDULING)
        try:
            destinations = select_destinations(self.conf, self.scheduler, ctxt, spec,
                                               live, deadline)
        except Exception as exc:
            for uuid in live:
                reporter.record(ctxt, uuid, ACTION, "conductor_select_destinations",
                                error=exc)
                self.fail(ctxt, uuid, exc, record_fault=False)
            return
        per_instance = request_spec.replace(num_instances=1)
        for dest in destinations:
            uuid = dest["instance_uuid"]
            reporter.record(ctxt, uuid, ACTION, "conductor_select_destinations",
                            details="placed with the %d instance(s) of its request" % len(live))
            self.run(BuildState(ctxt, uuid, request_spec=per_instance, image=image,
                                destination=dest, block_devices=build_volumes.reset(
                                    [BlockDeviceMapping.coerce(b)
                                     for b in block_device_mapping or []])))

    def run(self, state: BuildState) -> None:
        """Run the flow; on failure retry on another host or end in ERROR."""
        recorder = self.recorder(state.instance_uuid, state.ctxt.request_id, ACTION)
        try:
            self._finish_if_completed(state, runner.run_flow(
                self.name, self.steps(state), state, recorder))
        except FlowFailed as failed:
            self._after_failure(state, failed)

    def report(self, ctxt: RequestContext, instance_uuid: str,
               report: dict[str, Any]) -> None:
        """An agent's report on its spawn (``{"host", "error"}``)."""
        recorder = self.recorder(instance_uuid, ctxt.request_id, ACTION)
        try:
            record = recorder.load()
        except exception.NotFound:
            LOG.info("build report for %s without its create action: ignored", instance_uuid)
            return
        if record.flow != self.name or not record.flow_data:
            LOG.info("build report for %s, which no build flow waits for", instance_uuid)
            if report.get("error"):
                self.fail(ctxt, instance_uuid, SpawnFailed(reason=report["error"]))
            return
        state = BuildState.from_data(record.flow_data)
        try:
            self._finish_if_completed(state, runner.continue_flow(
                self.steps(state), state, recorder, report))
        except FlowFailed as failed:
            self._after_failure(state, failed)

    def resume(self, record: db.FlowRecord) -> None:
        state = BuildState.from_data(record.flow_data or {})
        recorder = self.recorder(record.instance_uuid, record.ref.key[1], ACTION)
        try:
            self._finish_if_completed(state, runner.resume_flow(
                self.steps(state), state, recorder, record))
        except FlowFailed as failed:
            self._after_failure(state, failed)

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        """The build outlived its deadline: ERROR, claim freed, flow failed."""
        self.fail(ctxt, instance.uuid, reason, expected_task=instance.task_state)
        try:
            db.flow_record_update(
                db.FlowRecordRef.action(instance.uuid, ctxt.request_id),
                expected_status=runner.UNFINISHED, flow_status=runner.FAILED)
        except exception.NotFound:
            pass
        return True

    # --- outcomes ---------------------------------------------------------------------

    def _finish_if_completed(self, state: BuildState, status: str) -> None:
        if status == runner.COMPLETED:
            recorder = self.recorder(state.instance_uuid, state.ctxt.request_id, ACTION)
            recorder.reporter.finish(state.ctxt, state.instance_uuid)

    def _after_failure(self, state: BuildState, failed: FlowFailed) -> None:
        cause = failed.cause
        ctxt, uuid = state.ctxt, state.instance_uuid
        if isinstance(cause, _STOPPED):
            LOG.info("build of %s stopped: %s", uuid, cause)
            return
        retryable = isinstance(cause, (exception.MessageUndeliverable, SpawnFailed,
                                       runner.FlowInterrupted))
        if not retryable:
            self.fail(ctxt, uuid, cause)
            return
        reporter = self.recorder(uuid, ctxt.request_id, ACTION).reporter
        reporter.fault(ctxt, uuid, cause)
        if state.attempt >= self.conf.scheduler.max_attempts:
            self.fail(ctxt, uuid, self._exhausted(state.attempt, cause), record_fault=True)
            return
        tried = list(state.tried_hosts) + ([state.host] if state.host else [])
        LOG.info("rescheduling %s after a failed build on %s (attempt %d of %d)",
                 uuid, state.host, state.attempt + 1, self.conf.scheduler.max_attempts)
        if not self._renew_deadline(uuid, from_tasks=(st.SCHEDULING, st.SPAWNING, None)):
            return
        self.run(BuildState(ctxt, uuid, request_spec=state.request_spec, image=state.image,
                            attempt=state.attempt + 1, tried_hosts=tried,
                            block_devices=build_volumes.reset(state.block_devices)))

    def fail(self, ctxt: RequestContext, instance_uuid: str, cause: Exception | str,
             record_fault: bool = True, expected_task: Any = None) -> None:
        """End the build in ERROR: claim freed, fault recorded, action Error."""
        db.allocation_free(instance_uuid)
        reporter = self.recorder(instance_uuid, ctxt.request_id, ACTION).reporter
        if record_fault:
            reporter.fault(ctxt, instance_uuid, cause)
        expected = {} if expected_task is None else {"expected_task_state": expected_task}
        try:
            db.instance_update(instance_uuid,
                               {"vm_state": st.ERROR, "task_state": None,
                                "task_deadline": None},
                               expected_vm_state=st.BUILDING, **expected)
        except _STOPPED as exc:
            LOG.info("build of %s failed but the instance moved on: %s", instance_uuid, exc)
        reporter.finish(ctxt, instance_uuid, failed=True)
        LOG.warning("build of %s failed: %s", instance_uuid, cause)

    def _renew_deadline(self, instance_uuid: str,
                        from_tasks: tuple = (st.SCHEDULING, None)) -> bool:
        """Enter (or restart) scheduling with a fresh deadline; False if
        the instance is no longer waiting to be built."""
        try:
            db.instance_update(
                instance_uuid,
                {"task_state": st.SCHEDULING, "host": None, "node": None,
                 "task_deadline": deadlines.task_deadline(self.conf, st.SCHEDULING)},
                expected_vm_state=st.BUILDING, expected_task_state=from_tasks)
            return True
        except _STOPPED as exc:
            LOG.info("not building %s: %s", instance_uuid, exc)
            return False

    def _exhausted(self, attempts: int, last: BaseException) -> exception.NoValidHost:
        from flotilla.actions import public_message
        return exception.NoValidHost(
            reason="Build failed on %d host%s ([scheduler] max_attempts is %d); "
                   "last error: %s" % (attempts, "" if attempts == 1 else "s",
                                       self.conf.scheduler.max_attempts,
                                       public_message(last)))

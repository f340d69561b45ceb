"""The one runner of conductor flows.

A flow is an ordered list of :class:`Step` s sharing one state object (a
:class:`FlowState` dataclass). Rules:

* **Preflight.** Every step's ``check`` (no side effects: may the step
  run?) runs before any ``execute``. A failed check executes nothing.
* **Steps.** For each step in order the runner records it as the flow's
  current step and as an instance-action event ``conductor_<name>`` (start,
  then Success with the step's public ``details``, or Error), then runs
  ``execute``.
* **Saved state.** Before each step and at every change of status the
  flow's state is written where its :class:`Recorder` keeps it (the
  instance action of the request, or a migration record; see
  :mod:`flotilla.db.flows`) with a status: running, waiting, reverting,
  completed, failed or aborted. A conductor that restarts resumes its own
  unfinished flows (:func:`resume_flow`): a step that was running may have
  half happened, so the flow is reverted, unless the step says
  ``resumable`` (its execute is idempotent: it is run again).
* **Waiting.** A step with ``waits_for_report`` hands its work to an agent:
  the flow is saved as waiting *before* its ``execute`` (so a report that
  arrives at once finds it waiting), and the runner returns after it, so no
  RPC worker is held for minutes. Such an ``execute`` must not change the
  state: it is saved already. The agent's report continues the flow
  (:func:`continue_flow`: the step's ``on_report`` raises to fail it); a
  report that got lost is found by the step's ``poll``.
* **Abort.** An abort request (``abort_requested`` on the record) is
  honoured before each step, and inside long steps that call
  :meth:`FlowState.check_abort`. The flow is then reverted and ends aborted.
* **Revert.** When a step fails, the runner reverts that step and then
  every completed step in reverse order, so the cloud is left as before the
  flow. A ``revert`` must be idempotent (it may run after a partial execute
  or twice after a restart) and should not raise; if it does, the error is
  logged and the other reverts still run. Each step's docstring states its
  revert strategy. The failure is raised as :class:`FlowFailed` naming the
  step, with the original exception as ``cause``; the caller decides what
  the instance becomes (retry, ERROR).
* **Recording is best effort** for events (an audit record never fails a
  flow); the saved state is not: without it a restart could not resume.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from flotilla import actions, exception, objects
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import flows as flows_db

LOG = logging.getLogger(__name__)

RUNNING = flows_db.RUNNING
WAITING = flows_db.WAITING
REVERTING = flows_db.REVERTING
COMPLETED = flows_db.COMPLETED
FAILED = flows_db.FAILED
ABORTED = flows_db.ABORTED
UNFINISHED = flows_db.UNFINISHED


class FlowAborted(exception.FlotillaException):
    msg_fmt = "Aborted on request before step %(step)s"
    code = 409
    public_msg = None


class FlowInterrupted(exception.FlotillaException):
    msg_fmt = "The conductor running this flow restarted during step %(step)s"
    code = 503
    public_msg = None


class FlowFailed(Exception):
    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__("step %s failed: %s: %s" % (step, type(cause).__name__, cause))
        self.step = step
        self.cause = cause

    @property
    def aborted(self) -> bool:
        return isinstance(self.cause, FlowAborted)


@dataclasses.dataclass
class FlowState:
    """Base of every flow's state: saved as JSON after each step.

    Fields hold JSON values or versioned objects; ``ctxt`` is saved as its
    dict. A field whose metadata has ``transient=True`` is not saved.
    """

    ctxt: RequestContext
    instance_uuid: str
    recorder: Recorder | None = dataclasses.field(
        default=None, repr=False, compare=False, metadata={"transient": True})

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            if field.metadata.get("transient"):
                continue
            value = getattr(self, field.name)
            data[field.name] = value.to_dict() if field.name == "ctxt" \
                else objects.serialize(value)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> FlowState:
        names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("transient")}
        values = {k: objects.deserialize(v) for k, v in data.items() if k in names}
        values["ctxt"] = RequestContext.from_dict(data.get("ctxt") or {})
        return cls(**values)

    def check_abort(self, step: str = "") -> None:
        """Long steps call this now and then: raises FlowAborted when an
        abort was requested."""
        if self.recorder is not None and self.recorder.abort_requested():
            raise FlowAborted(step=step or "(in progress)")


class Step:
    """One step of a flow; subclasses set ``name`` and override."""

    name = "step"
    #: execute may run again after a conductor restart (it is idempotent).
    resumable = False
    #: execute hands work to an agent, whose report continues the flow.
    waits_for_report = False

    def check(self, state: Any) -> None:
        """Raise if the step may not run. No side effects; runs in preflight."""

    def execute(self, state: Any) -> None:
        """Do the step (start it, for a step that waits for a report)."""
        raise NotImplementedError

    def revert(self, state: Any) -> None:
        """Undo :meth:`execute` (idempotent; see the module rules)."""

    def on_report(self, state: Any, report: dict[str, Any]) -> None:
        """An agent reported on the work this step waits for: raise to fail
        the flow, return to go on."""

    def poll(self, state: Any) -> dict[str, Any] | None:
        """For a waiting step: the report, found some other way, when the
        agent's one may have been lost (None: still in progress)."""
        return None

    def details(self, state: Any) -> str | None:
        """Public text recorded with the step's Success event (what was
        decided; never a host name)."""
        return None


class Recorder(Protocol):
    """Where a flow records its progress and keeps its state."""

    ref: db.FlowRecordRef
    instance_uuid: str
    action: str
    reporter: actions.Reporter

    def ensure(self, ctxt: RequestContext) -> None:
        """Make the record exist (a flow nobody recorded a request for)."""

    def save(self, **values: Any) -> bool: ...

    def load(self) -> db.FlowRecord: ...

    def abort_requested(self) -> bool: ...


class _DatabaseRecorder:
    """The common part of the recorders: state in the database, events on
    the request's instance action."""

    def __init__(self, ref: db.FlowRecordRef, instance_uuid: str, action: str,
                 host: str | None) -> None:
        self.ref = ref
        self.instance_uuid = instance_uuid
        self.action = action
        self.host = host
        self.reporter = actions.Reporter(actions.DatabaseStore(), host)

    def ensure(self, ctxt: RequestContext) -> None:
        pass

    def save(self, expected_status: tuple[str | None, ...] | None = None,
             **values: Any) -> bool:
        return db.flow_record_update(self.ref, expected_status, **values)

    def load(self) -> db.FlowRecord:
        return db.flow_record_get(self.ref)

    def abort_requested(self) -> bool:
        try:
            return self.load().abort_requested
        except exception.NotFound:
            return True   # the record (and its instance) is gone: stop


class ActionRecorder(_DatabaseRecorder):
    """Keeps a flow's state on the instance action of its request."""

    def __init__(self, instance_uuid: str, request_id: str, action: str,
                 host: str | None) -> None:
        super().__init__(db.FlowRecordRef.action(instance_uuid, request_id),
                         instance_uuid, action, host)

    def ensure(self, ctxt: RequestContext) -> None:
        actions.DatabaseStore().start_action(ctxt, self.instance_uuid, self.action)


class MigrationRecorder(_DatabaseRecorder):
    """Keeps a flow's state on a migration record; its events still go on
    the instance action of the request that started the migration."""

    def __init__(self, migration_uuid: str, instance_uuid: str, action: str,
                 host: str | None) -> None:
        super().__init__(db.FlowRecordRef.migration(migration_uuid),
                         instance_uuid, action, host)


# --- running ---------------------------------------------------------------------

def run_flow(name: str, steps: Sequence[Step], state: FlowState,
             recorder: Recorder) -> str:
    """Run a new flow from its first step; returns COMPLETED or WAITING,
    raises FlowFailed after reverting (see the module rules)."""
    state.recorder = recorder
    recorder.ensure(state.ctxt)
    for step in steps:
        try:
            step.check(state)
        except Exception as exc:
            recorder.reporter.record(state.ctxt, state.instance_uuid, recorder.action,
                                     "conductor_%s_check" % step.name, error=exc)
            recorder.save(flow=name, flow_status=FAILED, flow_owner=recorder.host,
                          flow_data=state.to_data(), current_step=None)
            raise FlowFailed(step.name, exc) from exc
    recorder.save(flow=name, flow_status=RUNNING, flow_owner=recorder.host,
                  flow_data=state.to_data(), current_step=None)
    return _steps_from(steps, 0, state, recorder)


def continue_flow(steps: Sequence[Step], state: FlowState, recorder: Recorder,
                  report: dict[str, Any]) -> str:
    """Continue a waiting flow with an agent's ``report``.

    Only one caller continues a flow: the record moves from waiting to
    running by compare-and-swap, and a report for a flow that is not
    waiting (a duplicate, or one the poll already handled) is ignored and
    returns the flow's status.
    """
    state.recorder = recorder
    record = recorder.load()
    if not recorder.save(expected_status=(WAITING,), flow_status=RUNNING,
                         flow_owner=recorder.host):
        LOG.info("flow on %s is %s, not waiting: report ignored", state.instance_uuid,
                 recorder.load().flow_status)
        return recorder.load().flow_status or COMPLETED
    index = _index(steps, record.current_step)
    step = steps[index]
    try:
        with recorder.reporter.event(state.ctxt, state.instance_uuid, recorder.action,
                                     "conductor_%s_report" % step.name, fault=False):
            step.on_report(state, report)
    except Exception as exc:
        _revert(steps[:index + 1], state, recorder, exc)
        raise FlowFailed(step.name, exc) from exc
    return _steps_from(steps, index + 1, state, recorder)


def resume_flow(steps: Sequence[Step], state: FlowState, recorder: Recorder,
                record: db.FlowRecord) -> str:
    """Pick up a flow its conductor left unfinished (see the module rules).

    Returns the flow's status; raises FlowFailed when it was reverted.
    """
    state.recorder = recorder
    index = _index(steps, record.current_step) if record.current_step else -1
    if record.flow_status == WAITING:
        report = steps[index].poll(state)
        return WAITING if report is None else continue_flow(steps, state, recorder, report)
    if record.flow_status == RUNNING and index >= 0 and steps[index].resumable:
        return _steps_from(steps, index, state, recorder)
    if record.flow_status == RUNNING and index < 0:
        return _steps_from(steps, 0, state, recorder)
    cause = FlowInterrupted(step=steps[index].name)
    _revert(steps[:index + 1], state, recorder, cause)
    raise FlowFailed(steps[index].name, cause)


def _steps_from(steps: Sequence[Step], start: int, state: FlowState,
                recorder: Recorder) -> str:
    for index in range(start, len(steps)):
        step = steps[index]
        try:
            state.check_abort(step.name)
        except FlowAborted as exc:
            _revert(steps[:index], state, recorder, exc)   # the step did nothing yet
            raise FlowFailed(step.name, exc) from exc
        recorder.save(flow_status=WAITING if step.waits_for_report else RUNNING,
                      current_step=step.name, flow_data=state.to_data())
        try:
            with recorder.reporter.event(state.ctxt, state.instance_uuid, recorder.action,
                                         "conductor_" + step.name, fault=False) as event:
                step.execute(state)
                event.details = step.details(state)
        except Exception as exc:
            LOG.info("flow step %s failed on %s: %s", step.name, state.instance_uuid, exc)
            _revert(steps[:index + 1], state, recorder, exc)
            raise FlowFailed(step.name, exc) from exc
        if step.waits_for_report:
            return WAITING     # the record may already be taken by the report
    recorder.save(flow_status=COMPLETED, current_step=None, flow_data=state.to_data())
    return COMPLETED


def _revert(steps: Sequence[Step], state: FlowState, recorder: Recorder,
            cause: BaseException) -> None:
    _safe_save(recorder, flow_status=REVERTING, flow_data=state.to_data())
    for step in reversed(steps):
        _safe_save(recorder, current_step=step.name)
        try:
            step.revert(state)
        except Exception:
            LOG.exception("revert of step %s failed", step.name)
    status = ABORTED if isinstance(cause, FlowAborted) else FAILED
    _safe_save(recorder, flow_status=status, current_step=None, flow_data=state.to_data())


def _safe_save(recorder: Recorder, **values: Any) -> None:
    # While reverting the record may already be gone with its instance.
    try:
        recorder.save(**values)
    except exception.NotFound:
        LOG.debug("flow record of %s is gone", recorder.instance_uuid)


def _index(steps: Sequence[Step], name: str | None) -> int:
    for index, step in enumerate(steps):
        if step.name == name:
            return index
    raise exception.FlotillaException("flow has no step %r" % name)

"""The one runner of conductor flows.

Rules:

* A flow is an ordered list of :class:`Step` s sharing one state object.
  For each step the runner records it as the action's current step
  (``db.action_set_step``) and as an action event ``conductor_<name>``
  (start, then Success or Error with details), runs ``check`` (no side
  effects: may the step run?) then ``execute``.
* When a step fails, the runner reverts that step and then every completed
  step in reverse order, so the cloud is left as before the flow. A
  ``revert`` must be idempotent (it may run after a partial execute) and
  must not raise; if it does, the error is logged and the other reverts
  still run. Each step's docstring states its revert strategy.
* The failure is re-raised as :class:`FlowFailed` naming the step, with the
  original exception as ``cause``; the caller decides what the instance
  becomes (retry, ERROR).
* Recording is best effort: a flow is never failed because its audit
  record could not be written (the instance may have been deleted).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from typing import Any

from flotilla import exception
from flotilla.db import api as db

LOG = logging.getLogger(__name__)


class Step:
    """One step of a flow; subclasses set ``name`` and override."""

    name = "step"

    def check(self, state: Any) -> None:
        """Raise if the step may not run now. No side effects."""

    def execute(self, state: Any) -> None:
        raise NotImplementedError

    def revert(self, state: Any) -> None:
        """Undo :meth:`execute` (idempotent; see the class docstring)."""

    def details(self, state: Any) -> str | None:
        """Recorded with the step's Success event (what was decided)."""
        return None


class FlowFailed(Exception):
    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__("step %s failed: %s: %s" % (step, type(cause).__name__, cause))
        self.step = step
        self.cause = cause


class ActionRecorder:
    """Writes a flow's progress on the instance action of the request."""

    def __init__(self, instance_uuid: str, request_id: str, host: str | None) -> None:
        self.instance_uuid = instance_uuid
        self.request_id = request_id
        self.host = host

    def _safe(self, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except (exception.NotFound, exception.DBError) as exc:
            LOG.debug("could not record on %s: %s", self.instance_uuid, exc)

    def set_step(self, step: str | None) -> None:
        self._safe(db.action_set_step, self.instance_uuid, self.request_id, step)

    def start(self, event: str) -> None:
        self._safe(db.action_event_start, self.instance_uuid, self.request_id,
                   event, host=self.host)

    def finish(self, event: str, result: str, details: str | None = None,
               tb: str | None = None) -> None:
        self._safe(db.action_event_finish, self.instance_uuid, self.request_id,
                   event, result, traceback=tb, details=details)


def run_flow(steps: Sequence[Step], state: Any, recorder: ActionRecorder) -> None:
    """Run ``steps`` in order on ``state``; see the module rules."""
    done: list[Step] = []
    try:
        for step in steps:
            event = "conductor_" + step.name
            recorder.set_step(step.name)
            recorder.start(event)
            try:
                step.check(state)
                step.execute(state)
            except Exception as exc:
                LOG.info("flow step %s failed on %s: %s", step.name,
                         recorder.instance_uuid, exc)
                recorder.finish(event, "Error", details=str(exc)[:2000],
                                tb=traceback.format_exc(limit=5))
                _revert([*done, step], state)
                raise FlowFailed(step.name, exc) from exc
            recorder.finish(event, "Success", details=step.details(state))
            done.append(step)
    finally:
        recorder.set_step(None)


def _revert(steps: list[Step], state: Any) -> None:
    for step in reversed(steps):
        try:
            step.revert(state)
        except Exception:
            LOG.exception("revert of step %s failed", step.name)

"""What every conductor flow offers the conductor: a name, a way to resume
it from its saved record, and a cleanup the reaper calls.

A flow module defines its steps and state (see :mod:`.runner`) and one
:class:`Flow` subclass whose entry points the conductor's manager calls. The
reaper calls :meth:`Flow.cleanup` for an operation whose entry in
:data:`flotilla.states.OPERATIONS` names this flow and says ``cleanup``.
"""

from __future__ import annotations

import abc

from conductor.flows import runner
from flotilla import exception
from flotilla.context import RequestContext
from flotilla.db import api as db


class Flow(abc.ABC):
    #: The name saved on flow records and used in flotilla.states.
    name: str

    def __init__(self, conf, host: str) -> None:
        self.conf = conf
        self.host = host

    @abc.abstractmethod
    def resume(self, record: db.FlowRecord) -> None:
        """Continue or revert a flow found unfinished (after a restart, or
        waiting for a report that may be lost); see runner.resume_flow."""

    @abc.abstractmethod
    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        """End the flow's task on ``instance`` (a db row), whose deadline
        passed (``reason``: TaskTimedOut, to record as the fault), leaving
        nothing half done; True when it did."""

    def recorder(self, instance_uuid: str, request_id: str, action: str
                 ) -> runner.ActionRecorder:
        return runner.ActionRecorder(instance_uuid, request_id, action, self.host)

"""Instance actions: what was done to a server, step by step, and why it failed.

One request (stop, create, migrate...) is one instance *action* keyed by its
request id; each service that works on it records *events* (one per step)
under it; a failure writes a *fault* on the instance. This module is the
one way to record them, used by the conductor and the API (writing the
database directly, :class:`DatabaseStore`) and by compute agents (through
the conductor's RPC API, :class:`ConductorStore`).

Rules:

* :meth:`Reporter.event` is a context manager: it records the event's
  start, then Success, or Error with the traceback and a fault, and
  re-raises. Nothing else writes events or faults.
* The action is finished once, by whoever started the request's work and
  knows it is over: the compute agent for a single-host operation, the
  conductor flow for a flow (:meth:`Reporter.finish`). An event never
  finishes its action.
* What any user may read (event ``details`` at microversion 2.84+, a fault's
  ``message``) never holds a traceback or a host name:
  :func:`public_message` makes it; the traceback, the full message and the
  host go where only administrators look (event ``traceback`` and
  ``host``, fault ``details`` and ``host``).
* Recording never fails the work it records: a store error is logged.
"""

from __future__ import annotations

import contextlib
import logging
import traceback as tb
from collections.abc import Iterator
from typing import Protocol

from flotilla import exception
from flotilla.context import RequestContext

LOG = logging.getLogger(__name__)

SUCCESS = "Success"
ERROR = "Error"


def public_message(error: BaseException | str) -> str:
    """What the server's owner may read about ``error``.

    A string is taken as written for users. A Flotilla exception gives its
    public message; any other exception only its class name (its text may
    be a library's, naming paths and addresses).
    """
    if isinstance(error, str):
        return error
    if isinstance(error, exception.FlotillaException):
        return error.public_message()
    return "Unexpected error (%s)" % type(error).__name__


def fault_code(error: BaseException | str) -> int:
    code = getattr(error, "code", 500)
    return code if isinstance(code, int) and 400 <= code < 600 else 500


def admin_details(error: BaseException | str, with_traceback: bool = True) -> str:
    """Everything about ``error``: type, message and, inside an ``except``
    block, the traceback."""
    if isinstance(error, str):
        return error
    text = "%s: %s" % (type(error).__name__, error)
    if with_traceback and error.__traceback__ is not None:
        text += "\n" + "".join(tb.format_exception(error, limit=10))
    return text


class ActionStore(Protocol):
    """Where actions, events and faults are written."""

    def start_event(self, ctxt: RequestContext, instance_uuid: str, action: str,
                    event: str, host: str | None) -> None:
        """Record the event's start, first starting the request's action
        ``action`` when none exists (work nobody recorded yet, such as an
        agent's own repair at start-up)."""

    def finish_event(self, ctxt: RequestContext, instance_uuid: str, event: str,
                     result: str, details: str | None, traceback: str | None) -> None: ...

    def finish_action(self, ctxt: RequestContext, instance_uuid: str,
                      result: str) -> None: ...

    def add_fault(self, ctxt: RequestContext, instance_uuid: str, code: int, message: str,
                  details: str | None, host: str | None) -> None: ...


class DatabaseStore:
    """Writes through :mod:`flotilla.db.api` (conductor, API)."""

    def start_action(self, ctxt: RequestContext, instance_uuid: str, action: str) -> None:
        """Start the request's action unless it has one (idempotent)."""
        from flotilla.db import api as db
        try:
            db.action_get(instance_uuid, ctxt.request_id)
        except exception.NotFound:
            db.action_start(instance_uuid, action, ctxt.request_id,
                            user_id=ctxt.user_id, project_id=ctxt.project_id)

    def start_event(self, ctxt, instance_uuid, action, event, host) -> None:
        from flotilla.db import api as db
        self.start_action(ctxt, instance_uuid, action)
        db.action_event_start(instance_uuid, ctxt.request_id, event, host=host)

    def finish_event(self, ctxt, instance_uuid, event, result, details, traceback) -> None:
        from flotilla.db import api as db
        db.action_event_finish(instance_uuid, ctxt.request_id, event, result,
                               traceback=traceback, details=details)

    def finish_action(self, ctxt, instance_uuid, result) -> None:
        from flotilla.db import api as db
        db.action_finish(instance_uuid, ctxt.request_id,
                         message=None if result == SUCCESS else ERROR)

    def add_fault(self, ctxt, instance_uuid, code, message, details, host) -> None:
        from flotilla.db import api as db
        db.instance_fault_create(instance_uuid, code=code, message=message,
                                 details=details, host=host)


class ConductorStore:
    """Writes through the conductor's RPC API (compute agents have no
    database access)."""

    def __init__(self, conductor) -> None:
        self.conductor = conductor

    def start_event(self, ctxt, instance_uuid, action, event, host) -> None:
        self.conductor.action_event_start(ctxt, instance_uuid, action, event, host)

    def finish_event(self, ctxt, instance_uuid, event, result, details, traceback) -> None:
        self.conductor.action_event_finish(ctxt, instance_uuid, event, result,
                                           details=details, traceback=traceback)

    def finish_action(self, ctxt, instance_uuid, result) -> None:
        self.conductor.action_finish(ctxt, instance_uuid, result)

    def add_fault(self, ctxt, instance_uuid, code, message, details, host) -> None:
        self.conductor.instance_fault_create(ctxt, instance_uuid, code=code, message=message,
                                             details=details, host=host)


class Event:
    """The event of a ``with reporter.event(...)`` block; set ``details``
    (public text) to record what was decided."""

    __slots__ = ("details",)

    def __init__(self) -> None:
        self.details: str | None = None


class Reporter:
    """Records events, faults and action ends on one store for one host."""

    def __init__(self, store: ActionStore, host: str | None) -> None:
        self.store = store
        self.host = host

    @contextlib.contextmanager
    def event(self, ctxt: RequestContext, instance_uuid: str, action: str, event: str,
              fault: bool = True) -> Iterator[Event]:
        """Record ``event`` around the block (see the module rules); with
        ``fault`` a failure also writes a fault on the instance."""
        self._safe(self.store.start_event, ctxt, instance_uuid, action, event, self.host)
        record = Event()
        try:
            yield record
        except Exception as exc:
            self._safe(self.store.finish_event, ctxt, instance_uuid, event, ERROR,
                       public_message(exc), admin_details(exc))
            if fault:
                self.fault(ctxt, instance_uuid, exc)
            raise
        self._safe(self.store.finish_event, ctxt, instance_uuid, event, SUCCESS,
                   record.details, None)

    def record(self, ctxt: RequestContext, instance_uuid: str, action: str, event: str,
               error: BaseException | str | None = None, details: str | None = None,
               fault: bool = True) -> None:
        """An event that happened at once: Success with ``details``, or
        Error for ``error`` (which with ``fault`` also writes a fault)."""
        self._safe(self.store.start_event, ctxt, instance_uuid, action, event, self.host)
        if error is None:
            self._safe(self.store.finish_event, ctxt, instance_uuid, event, SUCCESS,
                       details, None)
            return
        self._safe(self.store.finish_event, ctxt, instance_uuid, event, ERROR,
                   public_message(error), admin_details(error))
        if fault:
            self.fault(ctxt, instance_uuid, error)

    def fault(self, ctxt: RequestContext, instance_uuid: str,
              error: BaseException | str, message: str | None = None) -> None:
        """Write a fault: ``message`` (public; default from ``error``), the
        error's code and, for administrators, its details."""
        self._safe(self.store.add_fault, ctxt, instance_uuid, fault_code(error),
                   message or public_message(error), admin_details(error), self.host)

    def finish(self, ctxt: RequestContext, instance_uuid: str, failed: bool = False) -> None:
        """End the request's action (once, by its owner: see the rules)."""
        self._safe(self.store.finish_action, ctxt, instance_uuid,
                   ERROR if failed else SUCCESS)

    @staticmethod
    def _safe(fn, *args) -> None:
        try:
            fn(*args)
        except (exception.NotFound, exception.DBError, exception.MessagingException) as exc:
            LOG.warning("could not record on instance %s: %s", args[1], exc)

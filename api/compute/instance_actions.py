"""servers/{id}/os-instance-actions: what was done to a server, with events.

A deleted server's actions stay readable (2.21+). Event tracebacks are
shown to admins only; ``host``/``hostId`` from 2.62, ``details`` from 2.84.
"""

from __future__ import annotations

from api import errors
from api.compute import views
from api.compute.servers import get_server
from api.state import APIState, ctxt, isotime, version
from flotilla.db import api as db


def action_view(action, ver) -> dict:
    result = {"action": action.action, "instance_uuid": action.instance_uuid,
              "request_id": action.request_id, "user_id": action.user_id,
              "project_id": action.project_id, "message": action.message,
              "start_time": isotime(action.start_time, micro=True)}
    if ver >= (2, 58):
        result["updated_at"] = isotime(action.finish_time or action.start_time,
                                       micro=True)
    return result


def event_view(event, inst, ctx, ver) -> dict:
    result = {"event": event.event, "start_time": isotime(event.start_time, micro=True),
              "finish_time": isotime(event.finish_time, micro=True),
              "result": event.result}
    if ctx.is_admin:
        result["traceback"] = event.traceback
    if ver >= (2, 62):
        result["hostId"] = views.host_id(inst.project_id, event.host)
        if ctx.is_admin:
            result["host"] = event.host
    if ver >= (2, 84):
        result["details"] = event.details
    return result


class InstanceActions:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, server_id: str) -> None:
        ver = version(req)
        inst = get_server(ctxt(req), server_id, read_deleted=ver >= (2, 21))
        resp.media = {"instanceActions": [action_view(a, ver)
                                          for a in db.action_get_all(inst.uuid)]}


class InstanceAction:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, server_id: str, request_id: str) -> None:
        ctx, ver = ctxt(req), version(req)
        inst = get_server(ctx, server_id, read_deleted=ver >= (2, 21))
        for action in db.action_get_all(inst.uuid):
            if action.request_id == request_id:
                body = action_view(action, ver)
                body["events"] = [event_view(e, inst, ctx, ver)
                                  for e in db.action_events_get(action.id)]
                resp.media = {"instanceAction": body}
                return
        raise errors.not_found("Action %s could not be found." % request_id[:64])

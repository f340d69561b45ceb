"""os-server-external-events: events other services send about servers
(Nova's API for Neutron, Cinder, Ironic: ``network-vif-plugged``,
``volume-extended``, ...), allowed to the ``service`` role and admins.

Rules (Nova's): each event names a server; an unknown server is that
event's 404, a server not on a host yet its 422, others 200 ``completed``;
the answer is 200 when every event was taken, 207 when some were not, 404
when none was. Flotilla has no service that waits for these events (no
network or volume service sends them yet), so a taken event is recorded
in the log and changes nothing.
"""

from __future__ import annotations

import logging

import falcon

from api import errors, validation
from api.compute.servers import get_server
from api.state import APIState, ctxt

LOG = logging.getLogger(__name__)

NAMES = ("network-changed", "network-vif-plugged", "network-vif-unplugged",
         "network-vif-deleted", "volume-extended", "power-update",
         "accelerator-request-bound", "volume-reimaged")
BODY = {"type": "object", "properties": {"events": {
    "type": "array", "minItems": 1, "maxItems": 1000, "items": {
        "type": "object", "properties": {
            "name": {"type": "string", "enum": list(NAMES)},
            "server_uuid": validation.UUID,
            "status": {"type": "string", "enum": ["failed", "completed", "in-progress"]},
            "tag": {"type": "string", "maxLength": 255}},
        "required": ["name", "server_uuid"], "additionalProperties": False}}},
    "required": ["events"], "additionalProperties": False}


class ExternalEvents:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_post(self, req, resp) -> None:
        ctx = ctxt(req)
        events = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), BODY)["events"]
        admin_view = ctx.elevated()
        result = []
        for event in events:
            entry = dict(event, status=event.get("status", "completed"))
            try:
                inst = get_server(admin_view, event["server_uuid"])
            except errors.APIError:
                entry.update(code=404, status="failed")
            else:
                if not inst.host:
                    entry.update(code=422, status="failed")
                else:
                    entry["code"] = 200
                    LOG.info("External event %s (%s) for server %s on %s",
                             event["name"], entry["status"], inst.uuid, inst.host)
            result.append(entry)
        codes = {e["code"] for e in result}
        if 200 not in codes:
            raise errors.not_found("No instances found for any event")
        resp.status = falcon.HTTP_200 if codes == {200} else falcon.HTTP_207
        resp.media = {"events": result}

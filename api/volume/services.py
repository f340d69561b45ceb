"""``/volume/v3/os-services`` (admin): the volume services, as Cinder shows
them to ``openstack volume service list`` and lets ``openstack volume
service set --enable|--disable [--disable-reason R] HOST SERVICE`` change.

Each ``flotilla-volume`` is shown as Cinder's ``cinder-volume`` on
``<host>@<backend>`` (the prefix of its pool in ``volume backend pool
list``); filters and bodies take that name or the plain host, and either
binary name. A disabled volume host keeps serving what it holds (its
exports, deletes) but is given no new volume (flotilla.volume_placement);
``state`` is up or down by its heartbeat, as ``compute service list``.

Rules: ``GET ?host=&binary=``; ``PUT /os-services/enable``, ``/disable``
and ``/disable-log-reason`` with ``host`` and ``binary`` (400 naming a
missing or unknown field, 404 for a service that does not exist), the
answer Cinder's: host, binary, status, disabled and disabled_reason.
"""

from __future__ import annotations

import logging

from api import errors, policy, validation
from api.state import APIState, isotime
from api.volume import views
from flotilla import binaries, exception
from flotilla.db import api as db

LOG = logging.getLogger(__name__)

#: How Cinder's clients know the volume daemon.
CINDER_VOLUME = "cinder-volume"
ACTIONS = ("enable", "disable", "disable-log-reason")
UPDATE = {"type": "object", "required": ["host", "binary"], "additionalProperties": False,
          "properties": {"host": {"type": "string", "minLength": 1, "maxLength": 255},
                         "binary": {"type": "string", "minLength": 1, "maxLength": 255},
                         "disabled_reason": {"type": ["string", "null"],
                                             "maxLength": 255}}}


def shown_host(conf, host: str) -> str:
    return "%s@%s" % (host, conf.volume.backend)


def own_host(conf, name: str | None) -> str | None:
    """A host named in a request (``host@backend`` or ``host``) as the
    services table names it."""
    suffix = "@" + conf.volume.backend
    return name[:-len(suffix)] if name and name.endswith(suffix) else name


def _binary_matches(name: str | None) -> bool:
    return name in (None, CINDER_VOLUME, binaries.VOLUME)


def view(conf, service) -> dict:
    up = db.service_is_up(service, conf.service_down_time)
    return {"binary": CINDER_VOLUME, "host": shown_host(conf, service.host),
            "zone": views.AVAILABILITY_ZONE,
            "status": "disabled" if service.disabled else "enabled",
            "state": "up" if up else "down",
            "updated_at": isotime(service.last_seen_at, micro=True),
            "disabled_reason": service.disabled_reason,
            "cluster": None, "backend_state": "up" if up else "down",
            "frozen": False, "replication_status": "disabled",
            "active_backend_id": None}


class Services:
    policy_rules = {"GET": policy.ADMIN}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        conf = self.state.conf
        host = own_host(conf, req.get_param("host"))
        binary = req.get_param("binary")
        services = db.service_get_all(binary=binaries.VOLUME) \
            if _binary_matches(binary) else []
        resp.media = {"services": [view(conf, s) for s in services
                                   if host is None or s.host == host]}


class Service:
    policy_rules = {"PUT": policy.ADMIN}

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_put(self, req, resp, action: str) -> None:
        conf = self.state.conf
        if action not in ACTIONS:
            raise errors.not_found("Unknown action %s" % action[:64])
        body = validation.validate(
            validation.read_json(req, conf.api.max_request_body_size), UPDATE)
        if not _binary_matches(body["binary"]):
            raise errors.bad_request("Invalid input for field/attribute binary: %s is "
                                     "not a volume service (%s)"
                                     % (body["binary"][:64], CINDER_VOLUME))
        disabled = action != "enable"
        reason = body.get("disabled_reason") if action == "disable-log-reason" else None
        host = own_host(conf, body["host"])
        try:
            service = db.service_set_disabled(host, binaries.VOLUME, disabled, reason)
        except exception.ServiceNotFound:
            raise errors.not_found("Host %s could not be found (no volume service "
                                   "there)." % body["host"][:255]) from None
        LOG.info("volume service on %s %s%s", host, "disabled" if disabled else "enabled",
                 ": %s" % reason if reason else "")
        resp.media = {"host": shown_host(conf, service.host), "binary": CINDER_VOLUME,
                      "service": CINDER_VOLUME,
                      "status": "disabled" if service.disabled else "enabled",
                      "disabled": bool(service.disabled),
                      "disabled_reason": service.disabled_reason}

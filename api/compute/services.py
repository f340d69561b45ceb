"""os-services (admin): list services; disable and enable one.

Before 2.53: ``PUT /os-services/disable`` (``disable-log-reason``,
``enable``) with host and binary in the body. From 2.53: ``PUT
/os-services/{id}`` with ``status`` (and ``disabled_reason``), the id a
UUID (:func:`service_uuid`). ``forced_down`` is shown from 2.11 and set
with ``PUT /os-services/force-down`` (host, binary, forced_down; 2.11 to
2.52) or ``forced_down`` in the 2.53 body: a forced-down service counts as
down whatever its heartbeat says (its servers may be evacuated), until an
operator clears it.

Binary names: this is Nova's API, whose clients know its services as
``nova-compute``, ``nova-conductor`` and ``nova-scheduler`` (the CLI's
``compute service set HOST nova-compute``, dashboards, Tempest). The
compute API shows Flotilla's daemons under those names and takes either
name in filters and bodies; everything else (flotilla-manage, logs, the
database) keeps ``flotilla-*``.
"""

from __future__ import annotations

import uuid as uuidlib

from api import errors, validation
from api.compute import schemas, zones
from api.state import APIState, isotime, version
from flotilla import binaries, exception
from flotilla.db import api as db


def service_uuid(service) -> str:
    """The service's id from 2.53 on (Nova: a UUID): derived from the row
    and its host and binary, so it is stable and never reused."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "flotilla-service/%d/%s/%s"
                             % (service.id, service.host, service.binary)))


def view(service, conf, host_zones, ver=(2, 1)) -> dict:
    result = {"id": service_uuid(service) if ver >= (2, 53) else service.id,
              "binary": binaries.api_name(service.binary), "host": service.host,
              "zone": zones.service_zone(conf, service, host_zones),
              "status": "disabled" if service.disabled else "enabled",
              "state": "up" if db.service_is_up(service, conf.service_down_time)
              else "down",
              "updated_at": isotime(service.last_seen_at, micro=True),
              "disabled_reason": service.disabled_reason}
    if ver >= (2, 11):
        result["forced_down"] = bool(getattr(service, "forced_down", False))
    return result


class Services:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        conf = self.state.conf
        host, binary = req.get_param("host"), binaries.own_name(req.get_param("binary"))
        host_zones = zones.host_zones(conf)
        ver = version(req)
        resp.media = {"services": [
            view(s, conf, host_zones, ver) for s in db.service_get_all(binary=binary)
            # The volume service is Block Storage's, not the compute API's.
            if (host is None or s.host == host) and s.binary != binaries.VOLUME]}


class Service:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_put(self, req, resp, action: str) -> None:
        conf = self.state.conf
        body = validation.read_json(req, conf.api.max_request_body_size)
        ver = version(req)
        if action in ("disable", "enable", "disable-log-reason") and ver < (2, 53):
            body = validation.validate(body, schemas.SERVICE_HOST_BINARY)
            disabled = action != "enable"
            reason = body.get("disabled_reason") if action == "disable-log-reason" else None
            service = self._set(body["host"], binaries.own_name(body["binary"]), disabled, reason)
            result = {"host": service.host, "binary": binaries.api_name(service.binary),
                      "status": "disabled" if service.disabled else "enabled"}
            if reason:
                result["disabled_reason"] = reason
            resp.media = {"service": result}
            return
        if action == "force-down" and (2, 11) <= ver < (2, 53):
            body = validation.validate(body, schemas.SERVICE_FORCE_DOWN)
            service = self._force(body["host"], binaries.own_name(body["binary"]),
                                  body["forced_down"])
            resp.media = {"service": {"host": service.host,
                                      "binary": binaries.api_name(service.binary),
                                      "forced_down": service.forced_down}}
            return
        if ver < (2, 53):
            raise errors.not_found("Unknown action %s" % action[:64])
        body = validation.validate(body, schemas.SERVICE_UPDATE)
        match = [s for s in db.service_get_all() if service_uuid(s) == action]
        if not match:
            raise errors.not_found("Service %s could not be found." % action[:64])
        service = match[0]
        if "status" in body:
            disabled = body["status"] == "disabled"
            service = self._set(service.host, service.binary, disabled,
                                body.get("disabled_reason") if disabled else None)
        elif "disabled_reason" in body:
            raise errors.bad_request("disabled_reason requires status disabled")
        if "forced_down" in body:
            service = self._force(service.host, service.binary, body["forced_down"])
        resp.media = {"service": view(service, conf, zones.host_zones(conf), ver)}

    @staticmethod
    def _force(host: str, binary: str, forced_down: bool):
        try:
            return db.service_set_forced_down(host, binary, forced_down)
        except exception.ServiceNotFound as exc:
            raise errors.not_found(str(exc)) from None

    @staticmethod
    def _set(host: str, binary: str, disabled: bool, reason: str | None):
        try:
            return db.service_set_disabled(host, binary, disabled, reason)
        except exception.ServiceNotFound as exc:
            raise errors.not_found(str(exc)) from None

"""Flavors: list, detail, show, extra specs; admin create, update (2.55
description) and delete; admin extra spec writes (merge with POST, one key
with PUT, DELETE; values are strings, numbers and booleans given as
strings, as Nova keeps them); access lists of private flavors
(os-flavor-access, admin).

Non-admins see enabled flavors that are public or that their project has
access to (api.compute.flavor_access). ``is_public`` arrives as the literal
strings clients send (``None`` means all, for admins).
"""

from __future__ import annotations

import uuid

import falcon

from api import errors, validation
from api.compute import flavor_access, schemas, views
from api.state import APIState, ctxt, version
from flotilla import exception
from flotilla.db import api as db


def _lookup(ctx, flavor_id: str):
    try:
        flavor = db.flavor_get(flavor_id)
    except exception.FlavorNotFound:
        raise errors.not_found("Flavor %s could not be found." % flavor_id[:64]) from None
    if not flavor_access.visible(ctx, flavor):
        raise errors.not_found("Flavor %s could not be found." % flavor_id[:64])
    return flavor


class Flavors:
    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    def on_get(self, req, resp) -> None:
        ctx = ctxt(req)
        is_public = validation.query_bool(req, "is_public")
        accessible_to = None
        if not ctx.is_admin:
            is_public, accessible_to = None, ctx.project_id
        elif req.get_param("is_public") is None:
            is_public = True
        min_ram = validation.query_int(req, "minRam") or 0
        min_disk = validation.query_int(req, "minDisk") or 0
        limit = validation.query_int(req, "limit") or self.state.conf.api.max_limit
        marker = req.get_param("marker")
        rows = [f for f in db.flavor_get_all(include_disabled=ctx.is_admin,
                                             is_public=is_public,
                                             accessible_to=accessible_to)
                if f.memory_mb >= min_ram and f.root_gb >= min_disk]
        if marker is not None:
            ids = [f.flavorid for f in rows]
            if marker not in ids:
                raise errors.bad_request("marker [%s] not found" % marker[:64])
            rows = rows[ids.index(marker) + 1:]
        rows = rows[:limit]
        url, ver = self.state.compute_url(req), version(req)
        resp.media = {"flavors": [views.flavor_view(f, ver, url, self.detail)
                                  for f in rows]}

    def on_post(self, req, resp) -> None:
        if self.detail:
            raise errors.APIError(405, "Method not allowed")
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size),
            schemas.FLAVOR_CREATE)
        spec = body["flavor"]
        values = {"name": spec["name"], "flavorid": str(spec["id"]) if spec.get("id") is not None
                  else str(uuid.uuid4()),
                  "memory_mb": int(spec["ram"]), "vcpus": int(spec["vcpus"]),
                  "root_gb": int(spec["disk"]),
                  "ephemeral_gb": int(spec.get("OS-FLV-EXT-DATA:ephemeral", 0) or 0),
                  "swap": int(spec.get("swap") or 0),
                  "is_public": validation.to_bool(
                      spec.get("os-flavor-access:is_public", True)),
                  "description": spec.get("description")}
        if values["memory_mb"] < 1 or values["vcpus"] < 1:
            raise errors.bad_request("Invalid input for field/attribute ram or vcpus: "
                                     "must be at least 1")
        try:
            flavor = db.flavor_create(values)
        except exception.Conflict as exc:
            raise errors.conflict(str(exc)) from None
        resp.media = {"flavor": views.flavor_view(flavor, version(req),
                                                  self.state.compute_url(req))}


class Flavor:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, flavor_id: str) -> None:
        flavor = _lookup(ctxt(req), flavor_id)
        resp.media = {"flavor": views.flavor_view(flavor, version(req),
                                                  self.state.compute_url(req))}

    def on_put(self, req, resp, flavor_id: str) -> None:
        if version(req) < (2, 55):
            raise errors.APIError(405, "Updating a flavor needs microversion 2.55.")
        spec = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), FLAVOR_UPDATE)["flavor"]
        _lookup(ctxt(req), flavor_id)
        flavor = db.flavor_update(flavor_id, {"description": spec["description"]})
        resp.media = {"flavor": views.flavor_view(flavor, version(req),
                                                  self.state.compute_url(req))}

    def on_delete(self, req, resp, flavor_id: str) -> None:
        try:
            db.flavor_destroy(flavor_id)
        except exception.FlavorNotFound:
            raise errors.not_found("Flavor %s could not be found." % flavor_id[:64]) from None
        resp.status = falcon.HTTP_202


_SPEC_KEY = {"type": "string", "minLength": 1, "maxLength": 255,
             "pattern": r"^[\w.\-: ]+$"}
_SPEC_VALUE = {"type": ["string", "number", "boolean"], "minLength": 1, "maxLength": 255}
EXTRA_SPECS = {"type": "object", "properties": {"extra_specs": {
    "type": "object", "propertyNames": _SPEC_KEY, "additionalProperties": _SPEC_VALUE,
    "maxProperties": 128}}, "required": ["extra_specs"], "additionalProperties": False}
EXTRA_SPEC = {"type": "object", "propertyNames": _SPEC_KEY,
              "additionalProperties": _SPEC_VALUE, "minProperties": 1, "maxProperties": 1}
FLAVOR_UPDATE = {"type": "object", "properties": {"flavor": {
    "type": "object", "properties": {
        "description": {"type": ["string", "null"], "maxLength": 65535}},
    "required": ["description"], "additionalProperties": False}},
    "required": ["flavor"], "additionalProperties": False}


def _spec_value(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _save_specs(flavor, specs: dict) -> dict:
    try:
        return dict(db.flavor_update(flavor.flavorid, {"extra_specs": specs}).extra_specs
                    or {})
    except exception.FlavorNotFound:
        raise errors.not_found("Flavor %s could not be found." % flavor.flavorid) from None


def _admin_lookup(req, flavor_id: str):
    if not ctxt(req).is_admin:
        raise errors.forbidden("Policy doesn't allow os_compute_api:os-flavor-extra-"
                               "specs to be changed.")
    return _lookup(ctxt(req), flavor_id)


class ExtraSpecs:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, flavor_id: str) -> None:
        flavor = _lookup(ctxt(req), flavor_id)
        resp.media = {"extra_specs": dict(flavor.extra_specs or {})}

    def on_post(self, req, resp, flavor_id: str) -> None:
        specs = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), EXTRA_SPECS)["extra_specs"]
        flavor = _admin_lookup(req, flavor_id)
        added = {k: _spec_value(v) for k, v in specs.items()}
        _save_specs(flavor, dict(flavor.extra_specs or {}, **added))
        resp.media = {"extra_specs": added}


class ExtraSpec:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, flavor_id: str, key: str) -> None:
        specs = _lookup(ctxt(req), flavor_id).extra_specs or {}
        if key not in specs:
            raise errors.not_found("Flavor %s has no extra specs with key %s."
                                   % (flavor_id[:64], key[:64]))
        resp.media = {key: specs[key]}

    def on_put(self, req, resp, flavor_id: str, key: str) -> None:
        spec = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), EXTRA_SPEC)
        if key not in spec:
            raise errors.bad_request("Request body and URI mismatch")
        flavor = _admin_lookup(req, flavor_id)
        value = _spec_value(spec[key])
        _save_specs(flavor, dict(flavor.extra_specs or {}, **{key: value}))
        resp.media = {key: value}

    def on_delete(self, req, resp, flavor_id: str, key: str) -> None:
        flavor = _admin_lookup(req, flavor_id)
        specs = dict(flavor.extra_specs or {})
        if key not in specs:
            raise errors.not_found("Flavor %s has no extra specs with key %s."
                                   % (flavor_id[:64], key[:64]))
        del specs[key]
        _save_specs(flavor, specs)
        resp.status = falcon.HTTP_200

class FlavorAccess:
    """GET /flavors/{flavor_id}/os-flavor-access (admin)."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, flavor_id: str) -> None:
        flavor = _lookup(ctxt(req), flavor_id)
        if flavor.is_public:
            raise errors.not_found("Access list not available for public flavors.")
        resp.media = _access_list(flavor.flavorid)


def _access_list(flavorid: str) -> dict:
    return {"flavor_access": [{"flavor_id": flavorid, "tenant_id": project}
                              for project in db.flavor_access_list(flavorid)]}


class FlavorAction:
    """POST /flavors/{flavor_id}/action: addTenantAccess, removeTenantAccess
    (admin)."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_post(self, req, resp, flavor_id: str) -> None:
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size),
            schemas.FLAVOR_ACTION)
        flavor = _lookup(ctxt(req), flavor_id)
        if "addTenantAccess" in body:
            if flavor.is_public:
                raise errors.conflict("Can not add access to a public flavor.")
            try:
                db.flavor_access_add(flavor.flavorid, body["addTenantAccess"]["tenant"])
            except exception.Conflict as exc:
                raise errors.conflict(str(exc)) from None
        else:
            try:
                db.flavor_access_remove(flavor.flavorid,
                                        body["removeTenantAccess"]["tenant"])
            except exception.NotFound as exc:
                raise errors.not_found(str(exc)) from None
        resp.media = _access_list(flavor.flavorid)

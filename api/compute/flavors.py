"""Flavors: list, detail, show, extra specs; admin create and delete;
access lists of private flavors (os-flavor-access, admin).

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
        values = {"name": spec["name"], "flavorid": spec.get("id") or str(uuid.uuid4()),
                  "memory_mb": int(spec["ram"]), "vcpus": int(spec["vcpus"]),
                  "root_gb": int(spec["disk"]),
                  "ephemeral_gb": int(spec.get("OS-FLV-EXT-DATA:ephemeral", 0) or 0),
                  "is_public": spec.get("os-flavor-access:is_public", True),
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

    def on_delete(self, req, resp, flavor_id: str) -> None:
        try:
            db.flavor_destroy(flavor_id)
        except exception.FlavorNotFound:
            raise errors.not_found("Flavor %s could not be found." % flavor_id[:64]) from None
        resp.status = falcon.HTTP_202


class ExtraSpecs:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, flavor_id: str) -> None:
        flavor = _lookup(ctxt(req), flavor_id)
        resp.media = {"extra_specs": dict(flavor.extra_specs or {})}


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

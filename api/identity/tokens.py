"""/identity/v3/auth/tokens: issue (password method), validate, revoke.

Rules:

* POST with the password method, scoped to a project by id or by name in
  domain Default (the only domain); no scope means the user's default
  project when they have a role there, else an unscoped token (no
  catalog, no roles);
* every authentication failure is the same 401 (no hint whether the user,
  the password or the project was wrong); the password is never logged;
* the token goes out in X-Subject-Token only; GET/HEAD validate the token
  in X-Subject-Token (a user may validate its own tokens, an admin any);
  DELETE revokes it.
"""

from __future__ import annotations

import hashlib
import logging

import falcon

from api import errors, validation
from api.identity import catalog
from api.state import APIState, ctxt, isotime
from flotilla import exception
from flotilla.db import identity as identity_db

LOG = logging.getLogger(__name__)

DOMAIN = {"id": "default", "name": "Default"}
_DOMAIN_REF = {"type": "object", "properties": {
    "id": {"type": "string", "maxLength": 64},
    "name": {"type": "string", "maxLength": 255}}, "additionalProperties": False}

AUTH_SCHEMA = {
    "type": "object",
    "properties": {"auth": {
        "type": "object",
        "properties": {
            "identity": {
                "type": "object",
                "properties": {
                    "methods": {"type": "array", "items": {"type": "string"},
                                "minItems": 1},
                    "password": {"type": "object", "properties": {
                        "user": {"type": "object", "properties": {
                            "id": {"type": "string", "maxLength": 64},
                            "name": {"type": "string", "maxLength": 255},
                            "password": {"type": "string", "maxLength": 4096},
                            "domain": _DOMAIN_REF},
                            "required": ["password"], "additionalProperties": False}},
                        "required": ["user"], "additionalProperties": False},
                },
                "required": ["methods"],
            },
            "scope": {"oneOf": [
                {"type": "string", "enum": ["unscoped"]},
                {"type": "object", "properties": {"system": {
                    "type": "object", "properties": {"all": {"const": True}},
                    "required": ["all"], "additionalProperties": False}},
                 "required": ["system"], "additionalProperties": False},
                {"type": "object", "properties": {"project": {
                    "type": "object", "properties": {
                        "id": {"type": "string", "maxLength": 64},
                        "name": {"type": "string", "maxLength": 255},
                        "domain": _DOMAIN_REF},
                    "additionalProperties": False}},
                 "required": ["project"], "additionalProperties": False}]},
        },
        "required": ["identity"],
    }},
    "required": ["auth"],
}

_FAILED = "The request you have made requires authentication."


def _check_domain(ref: dict | None) -> None:
    if ref and not (ref.get("id") in (None, "default")
                    and ref.get("name") in (None, "Default", "default")):
        raise errors.unauthorized(_FAILED)


def token_body(state: APIState, req, row, user, project, methods) -> dict:
    token = {
        "methods": methods, "expires_at": isotime(row.expires_at, micro=True),
        "issued_at": isotime(row.issued_at, micro=True),
        "audit_ids": [hashlib.sha256(row.id.encode()).hexdigest()[:22]],
        "user": {"id": user.id, "name": user.name, "domain": dict(DOMAIN),
                 "password_expires_at": None},
    }
    if project is not None:
        token["project"] = {"id": project.id, "name": project.name,
                            "domain": dict(DOMAIN)}
        token["is_domain"] = False
        token["roles"] = [{"id": r, "name": r} for r in row.roles]
        token["catalog"] = catalog.catalog(state.base_url(req),
                                           state.conf.identity.region_name)
    elif getattr(row, "system", False):
        token["system"] = {"all": True}
        token["roles"] = [{"id": r, "name": r} for r in row.roles]
        token["catalog"] = catalog.catalog(state.base_url(req),
                                           state.conf.identity.region_name)
    return {"token": token}


class Tokens:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size),
            AUTH_SCHEMA)
        auth = body["auth"]
        identity = auth["identity"]
        if "password" not in identity["methods"] or "password" not in identity:
            raise errors.unauthorized("Only the password method is supported.")
        user_ref = identity["password"]["user"]
        _check_domain(user_ref.get("domain"))
        if not user_ref.get("id") and not user_ref.get("name"):
            raise errors.bad_request("Invalid input for field/attribute user: "
                                     "an id or a name is required")
        user = identity_db.authenticate(
            user_ref.get("id") or user_ref["name"], user_ref["password"],
            by_id=bool(user_ref.get("id")))
        if user is None:
            LOG.info("Authentication failed for user %s", (user_ref.get("id")
                                                          or user_ref.get("name"))[:64])
            raise errors.unauthorized(_FAILED)
        project = None
        scope = auth.get("scope")
        if isinstance(scope, dict) and "system" in scope:
            roles = identity_db.system_roles_for(user.id)
            if not roles:
                raise errors.unauthorized(_FAILED)
            token, row = identity_db.token_issue(
                user.id, None, roles, self.state.conf.identity.token_ttl, system=True)
            resp.status = falcon.HTTP_201
            resp.set_header("X-Subject-Token", token)
            resp.media = token_body(self.state, req, row, user, None, ["password"])
            return
        if isinstance(scope, dict):
            ref = scope["project"]
            _check_domain(ref.get("domain"))
            try:
                project = identity_db.project_get(ref.get("id") or ref.get("name") or "")
            except exception.NotFound:
                raise errors.unauthorized(_FAILED) from None
            if ref.get("id") and project.id != ref["id"]:
                raise errors.unauthorized(_FAILED)
        elif scope is None and user.default_project_id:
            project = identity_db.project_get(user.default_project_id)
        roles: list[str] = []
        if project is not None:
            roles = identity_db.roles_for(user.id, project.id)
            if not roles or not project.enabled:
                if isinstance(scope, dict):
                    raise errors.unauthorized(_FAILED)
                project = None
                roles = []
        token, row = identity_db.token_issue(
            user.id, project.id if project else None, roles,
            self.state.conf.identity.token_ttl)
        resp.status = falcon.HTTP_201
        resp.set_header("X-Subject-Token", token)
        resp.media = token_body(self.state, req, row, user, project, ["password"])

    def _subject(self, req):
        subject = req.get_header("X-Subject-Token")
        if not subject:
            raise errors.APIError(400, "X-Subject-Token header is required")
        try:
            row = identity_db.token_validate(subject)
        except identity_db.TokenNotFound:
            raise errors.not_found("Could not find token.") from None
        ctx = ctxt(req)
        if row.user_id != ctx.user_id and not ctx.is_admin:
            raise errors.forbidden("You are not authorized to validate this token.")
        return subject, row

    def on_get(self, req, resp) -> None:
        _, row = self._subject(req)
        user = identity_db.user_get(row.user_id)
        project = identity_db.project_get(row.project_id) if row.project_id else None
        resp.set_header("X-Subject-Token", req.get_header("X-Subject-Token"))
        resp.media = token_body(self.state, req, row, user, project, ["password"])

    def on_head(self, req, resp) -> None:
        self._subject(req)
        resp.status = falcon.HTTP_200

    def on_delete(self, req, resp) -> None:
        subject, _ = self._subject(req)
        identity_db.token_revoke(subject)
        resp.status = falcon.HTTP_204


class Catalog:
    """GET /identity/v3/auth/catalog."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"catalog": catalog.catalog(self.state.base_url(req),
                                                 self.state.conf.identity.region_name),
                      "links": {"self": req.url}}


class Projects:
    """GET /identity/v3/auth/projects: projects the token's user has roles on."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        ctx = ctxt(req)
        projects = []
        for project in identity_db.project_get_all():
            if identity_db.roles_for(ctx.user_id, project.id):
                projects.append({"id": project.id, "name": project.name,
                                 "domain_id": "default", "enabled": project.enabled,
                                 "is_domain": False, "parent_id": "default",
                                 "description": project.description or ""})
        resp.media = {"projects": projects, "links": {"self": req.url}}

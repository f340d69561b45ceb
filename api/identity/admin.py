"""Identity administration: the Keystone v3 subset Flotilla serves.

One domain (``default``, named Default); projects; users; the five fixed
roles (admin, manager, member, reader, service) held on a project or on the
system, and role assignments (api.identity.roles); a user's projects; a
user changing their own password.

Rules:

* reads need the admin role (on a project or on the system) or the reader
  role on the system; writes need admin; a user may read itself and list
  its own projects; a password change is authenticated by the original
  password alone (no token), as Keystone does;
* every write of roles or enabled flags goes through flotilla.db.identity
  (role_add, system_role_add, user_update, project_update, ...), whose
  changes the token check sees at once;
* Keystone's shapes: ``{"project": {...}}`` with ``links``, ``domain_id``,
  ``parent_id`` (the domain: there is no project hierarchy), ``is_domain``;
  users keep extra attributes (email, description, ...) as Keystone does;
* names: projects at most 64 characters, users 255, both unique (409);
  another domain is 404, a project hierarchy or domain project is 400,
  creating a role other than the five is 403 (the roles are fixed).
"""

from __future__ import annotations

import falcon

from api import errors, validation
from api.state import APIState, ctxt
from flotilla import exception
from flotilla.db import identity as identity_db

DOMAIN_ID = "default"
DOMAIN = {"id": DOMAIN_ID, "name": "Default", "description": "The default domain",
          "enabled": True, "tags": [], "options": {}}
V3 = "/identity/v3"

_PROJECT_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 64},
    "description": {"type": ["string", "null"], "maxLength": 65535},
    "enabled": {"type": "boolean"},
    "domain_id": {"type": ["string", "null"], "maxLength": 64},
    "parent_id": {"type": ["string", "null"], "maxLength": 64},
    "is_domain": {"type": "boolean"},
    "tags": {"type": "array", "maxItems": 0},
    "options": {"type": "object", "maxProperties": 0},
}
PROJECT_CREATE = {"type": "object", "properties": {"project": {
    "type": "object", "properties": _PROJECT_FIELDS, "required": ["name"],
    "additionalProperties": False}}, "required": ["project"]}
PROJECT_UPDATE = {"type": "object", "properties": {"project": {
    "type": "object", "properties": _PROJECT_FIELDS, "additionalProperties": False}},
    "required": ["project"]}
_USER_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 255},
    "password": {"type": ["string", "null"], "maxLength": 4096},
    "enabled": {"type": "boolean"},
    "domain_id": {"type": ["string", "null"], "maxLength": 64},
    "default_project_id": {"type": ["string", "null"], "maxLength": 64},
    "options": {"type": "object"},
}
# Other attributes are the user's own (Keystone's "extra"): short values.
_EXTRA = {"type": ["string", "number", "boolean", "null"], "maxLength": 255}
USER_CREATE = {"type": "object", "properties": {"user": {
    "type": "object", "properties": _USER_FIELDS, "required": ["name"],
    "additionalProperties": _EXTRA, "maxProperties": 32}}, "required": ["user"]}
USER_UPDATE = {"type": "object", "properties": {"user": {
    "type": "object", "properties": _USER_FIELDS, "additionalProperties": _EXTRA,
    "maxProperties": 32}}, "required": ["user"]}
PASSWORD_CHANGE = {"type": "object", "properties": {"user": {
    "type": "object", "properties": {
        "password": {"type": "string", "minLength": 1, "maxLength": 4096},
        "original_password": {"type": "string", "maxLength": 4096}},
    "required": ["password", "original_password"], "additionalProperties": False}},
    "required": ["user"]}
# --- who may --------------------------------------------------------------------

def _system_roles(req) -> set[str]:
    row = req.context.get("token_row")
    return set(row.roles or []) if row is not None and getattr(row, "system", False) \
        else set()


def is_identity_admin(req) -> bool:
    """Admin on a project or on the system."""
    return ctxt(req).is_admin or "admin" in _system_roles(req)


def require_admin(req) -> None:
    if not is_identity_admin(req):
        raise errors.forbidden("You are not authorized to perform the requested "
                               "action: identity administration.")


def require_reader(req, self_user: str | None = None) -> None:
    """Identity admin, system reader, or the user ``self_user`` itself."""
    if is_identity_admin(req) or "reader" in _system_roles(req):
        return
    if self_user is not None and ctxt(req).user_id == self_user:
        return
    raise errors.forbidden("You are not authorized to perform the requested action.")


# --- views ----------------------------------------------------------------------

def _base(req) -> str:
    return req.prefix.rstrip("/") + V3


def domain_view(req) -> dict:
    return dict(DOMAIN, links={"self": "%s/domains/%s" % (_base(req), DOMAIN_ID)})


def project_view(req, project) -> dict:
    return {"id": project.id, "name": project.name,
            "description": project.description or "", "enabled": project.enabled,
            "domain_id": DOMAIN_ID, "parent_id": DOMAIN_ID, "is_domain": False,
            "tags": [], "options": {},
            "links": {"self": "%s/projects/%s" % (_base(req), project.id)}}


def user_view(req, user) -> dict:
    result = dict(user.extra or {})
    result.update({"id": user.id, "name": user.name, "domain_id": DOMAIN_ID,
                   "enabled": user.enabled, "password_expires_at": None,
                   "options": {},
                   "links": {"self": "%s/users/%s" % (_base(req), user.id)}})
    if user.default_project_id:
        result["default_project_id"] = user.default_project_id
    return result


def _list_links(req) -> dict:
    return {"self": req.url, "previous": None, "next": None}


# --- lookups --------------------------------------------------------------------

def _project(project_id: str):
    try:
        project = identity_db.project_get(project_id)
    except identity_db.ProjectNotFound:
        raise errors.not_found("Could not find project: %s." % project_id[:64]) from None
    if project.id != project_id:       # looked up by id only, as Keystone
        raise errors.not_found("Could not find project: %s." % project_id[:64])
    return project


def _user(user_id: str):
    try:
        user = identity_db.user_get(user_id)
    except identity_db.UserNotFound:
        raise errors.not_found("Could not find user: %s." % user_id[:64]) from None
    if user.id != user_id:
        raise errors.not_found("Could not find user: %s." % user_id[:64])
    return user


def _check_domain(domain_id) -> None:
    if domain_id not in (None, DOMAIN_ID):
        raise errors.not_found("Could not find domain: %s." % str(domain_id)[:64])


def _body(req, schema: dict) -> dict:
    return validation.validate(validation.read_json(req, 65536), schema)


def _flag(req, name: str) -> bool | None:
    return validation.query_bool(req, name)


# --- domains ---------------------------------------------------------------------

class Domains:
    def on_get(self, req, resp) -> None:
        require_reader(req)
        name, enabled = req.get_param("name"), _flag(req, "enabled")
        found = (name in (None, DOMAIN["name"])) and enabled in (None, True)
        resp.media = {"domains": [domain_view(req)] if found else [],
                      "links": _list_links(req)}

    def on_post(self, req, resp) -> None:
        require_admin(req)
        raise errors.forbidden("Flotilla has one domain, Default: domains cannot "
                               "be created.")


class Domain:
    def on_get(self, req, resp, domain_id: str) -> None:
        if domain_id != DOMAIN_ID:
            raise errors.not_found("Could not find domain: %s." % domain_id[:64])
        resp.media = {"domain": domain_view(req)}


# --- projects --------------------------------------------------------------------

def _project_values(spec: dict) -> dict:
    _check_domain(spec.get("domain_id"))
    if spec.get("parent_id") not in (None, DOMAIN_ID):
        raise errors.bad_request("Invalid input for field/attribute parent_id: "
                                 "projects have no hierarchy")
    if spec.get("is_domain"):
        raise errors.bad_request("Invalid input for field/attribute is_domain: "
                                 "a project cannot be a domain")
    return {k: spec[k] for k in ("name", "description", "enabled") if k in spec}


class Projects:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        require_reader(req)
        name, enabled = req.get_param("name"), _flag(req, "enabled")
        domain, parent = req.get_param("domain_id"), req.get_param("parent_id")
        is_domain = _flag(req, "is_domain")
        projects = []
        if domain in (None, DOMAIN_ID) and parent in (None, DOMAIN_ID) and not is_domain:
            projects = [p for p in identity_db.project_get_all()
                        if (name is None or p.name == name)
                        and (enabled is None or p.enabled == enabled)]
        resp.media = {"projects": [project_view(req, p) for p in projects],
                      "links": _list_links(req)}

    def on_post(self, req, resp) -> None:
        require_admin(req)
        values = _project_values(_body(req, PROJECT_CREATE)["project"])
        try:
            project = identity_db.project_create(values["name"], values.get("description"),
                                                 enabled=values.get("enabled", True))
        except exception.Conflict:
            raise errors.conflict("Conflict occurred attempting to store project - "
                                  "it is not permitted to have two projects with the "
                                  "same name in the same domain.") from None
        resp.status = falcon.HTTP_201
        resp.media = {"project": project_view(req, project)}


class Project:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, project_id: str) -> None:
        if ctxt(req).project_id != project_id:
            require_reader(req)
        resp.media = {"project": project_view(req, _project(project_id))}

    def on_patch(self, req, resp, project_id: str) -> None:
        require_admin(req)
        values = _project_values(_body(req, PROJECT_UPDATE)["project"])
        _project(project_id)
        try:
            project = identity_db.project_update(project_id, values)
        except exception.Conflict:
            raise errors.conflict("Conflict occurred attempting to store project: "
                                  "the name is taken.") from None
        resp.media = {"project": project_view(req, project)}

    def on_delete(self, req, resp, project_id: str) -> None:
        require_admin(req)
        _project(project_id)
        identity_db.project_delete(project_id)
        resp.status = falcon.HTTP_204


# --- users -----------------------------------------------------------------------

def _user_values(spec: dict) -> dict:
    _check_domain(spec.get("domain_id"))
    values = {k: spec[k] for k in ("name", "enabled", "password") if k in spec}
    if "default_project_id" in spec:
        project = spec["default_project_id"]
        values["default_project_id"] = _project(project).id if project else None
    extra = {k: v for k, v in spec.items() if k not in _USER_FIELDS}
    if extra:
        values["extra"] = extra
    return values


class Users:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        require_reader(req)
        name, enabled = req.get_param("name"), _flag(req, "enabled")
        domain = req.get_param("domain_id")
        users = [] if domain not in (None, DOMAIN_ID) else [
            u for u in identity_db.user_get_all()
            if (name is None or u.name == name) and (enabled is None or u.enabled == enabled)]
        resp.media = {"users": [user_view(req, u) for u in users],
                      "links": _list_links(req)}

    def on_post(self, req, resp) -> None:
        require_admin(req)
        values = _user_values(_body(req, USER_CREATE)["user"])
        try:
            user = identity_db.user_create(
                values["name"], values.get("password"),
                default_project=values.get("default_project_id"),
                scrypt_n=self.state.conf.identity.scrypt_n,
                enabled=values.get("enabled", True), extra=values.get("extra"))
        except exception.Conflict:
            raise errors.conflict("Conflict occurred attempting to store user - "
                                  "Duplicate entry found with name %s at domain ID "
                                  "default." % values["name"][:64]) from None
        resp.status = falcon.HTTP_201
        resp.media = {"user": user_view(req, user)}


class User:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, user_id: str) -> None:
        require_reader(req, self_user=user_id)
        resp.media = {"user": user_view(req, _user(user_id))}

    def on_patch(self, req, resp, user_id: str) -> None:
        require_admin(req)
        user = _user(user_id)
        values = _user_values(_body(req, USER_UPDATE)["user"])
        if "extra" in values:
            values["extra"] = dict(user.extra or {}, **values["extra"])
        if values.get("password") is None:
            values.pop("password", None)
        try:
            user = identity_db.user_update(user_id, values,
                                           scrypt_n=self.state.conf.identity.scrypt_n)
        except exception.Conflict:
            raise errors.conflict("Conflict occurred attempting to store user: "
                                  "the name is taken.") from None
        resp.media = {"user": user_view(req, user)}

    def on_delete(self, req, resp, user_id: str) -> None:
        require_admin(req)
        _user(user_id)
        identity_db.user_delete(user_id)
        resp.status = falcon.HTTP_204


class UserPassword:
    """POST /users/{id}/password: a user changes its own password."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_post(self, req, resp, user_id: str) -> None:
        # No token needed (Keystone's rule): the original password is the proof.
        spec = _body(req, PASSWORD_CHANGE)["user"]
        user = _user(user_id)
        if identity_db.authenticate(user.id, spec["original_password"], by_id=True) is None:
            raise errors.unauthorized("The request you have made requires "
                                      "authentication.")
        identity_db.user_update(user.id, {"password": spec["password"]},
                                scrypt_n=self.state.conf.identity.scrypt_n)
        resp.status = falcon.HTTP_204


class UserProjects:
    """GET /users/{id}/projects: the projects a user holds a role on."""

    def on_get(self, req, resp, user_id: str) -> None:
        require_reader(req, self_user=user_id)
        _user(user_id)
        resp.media = {"projects": [project_view(req, p)
                                   for p in identity_db.projects_for(user_id)],
                      "links": _list_links(req)}


def add_routes(app, state: APIState) -> None:
    add = app.add_route
    add(V3 + "/domains", Domains())
    add(V3 + "/domains/{domain_id}", Domain())
    add(V3 + "/projects", Projects(state))
    add(V3 + "/projects/{project_id}", Project(state))
    add(V3 + "/users", Users(state))
    add(V3 + "/users/{user_id}", User(state))
    add(V3 + "/users/{user_id}/password", UserPassword(state))
    add(V3 + "/users/{user_id}/projects", UserProjects())
    from api.identity import roles  # it builds on this module's helpers
    roles.add_routes(app)


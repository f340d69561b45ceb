"""Identity roles: the fixed roles, their grants on projects and on the
system, and the role assignments list (see api.identity.admin for who may
do what; every grant goes through flotilla.db.identity)."""

from __future__ import annotations

import falcon

from api import errors
from api.identity.admin import (
    _base,
    _body,
    _list_links,
    _project,
    _user,
    require_admin,
    require_reader,
)
from flotilla import exception
from flotilla.db import identity as identity_db

V3 = "/identity/v3"
ROLE_CREATE = {"type": "object", "properties": {"role": {
    "type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": {"type": ["string", "null"]},
        "domain_id": {"type": ["string", "null"]}, "options": {"type": "object"}},
    "required": ["name"], "additionalProperties": False}}, "required": ["role"]}


def role_view(req, role: str) -> dict:
    return {"id": role, "name": role, "domain_id": None, "description": None,
            "options": {}, "links": {"self": "%s/roles/%s" % (_base(req), role)}}


def _role(role_id: str) -> str:
    if role_id not in identity_db.ROLES:
        raise errors.not_found("Could not find role: %s." % role_id[:64])
    return role_id


class Roles:
    def on_get(self, req, resp) -> None:
        require_reader(req)
        name = req.get_param("name")
        resp.media = {"roles": [role_view(req, r) for r in identity_db.ROLES
                                if name is None or r == name],
                      "links": _list_links(req)}

    def on_post(self, req, resp) -> None:
        require_admin(req)
        name = _body(req, ROLE_CREATE)["role"]["name"]
        if name in identity_db.ROLES:
            raise errors.conflict("Conflict occurred attempting to store role - "
                                  "Duplicate entry found with name %s." % name)
        raise errors.forbidden("The roles are fixed (%s): a role cannot be created."
                               % ", ".join(identity_db.ROLES))


class Role:
    def on_get(self, req, resp, role_id: str) -> None:
        require_reader(req)
        resp.media = {"role": role_view(req, _role(role_id))}


class ProjectUserRoles:
    """GET /projects/{p}/users/{u}/roles: the roles granted directly."""

    def on_get(self, req, resp, project_id: str, user_id: str) -> None:
        require_reader(req)
        _project(project_id)
        _user(user_id)
        roles = [r for _, _, r in identity_db.role_assignments(user_id, project_id)]
        resp.media = {"roles": [role_view(req, r) for r in roles],
                      "links": _list_links(req)}


class ProjectUserRole:
    """PUT/HEAD/GET/DELETE /projects/{p}/users/{u}/roles/{r}."""

    def _check(self, req, project_id, user_id, role_id) -> None:
        _project(project_id)
        _user(user_id)
        _role(role_id)

    def on_put(self, req, resp, project_id: str, user_id: str, role_id: str) -> None:
        require_admin(req)
        self._check(req, project_id, user_id, role_id)
        identity_db.role_add(user_id, project_id, role_id)
        resp.status = falcon.HTTP_204

    def on_get(self, req, resp, project_id: str, user_id: str, role_id: str) -> None:
        require_reader(req)
        self._check(req, project_id, user_id, role_id)
        if not identity_db.role_assignments(user_id, project_id, role_id):
            raise errors.not_found("Could not find role assignment.")
        resp.status = falcon.HTTP_204

    on_head = on_get

    def on_delete(self, req, resp, project_id: str, user_id: str, role_id: str) -> None:
        require_admin(req)
        self._check(req, project_id, user_id, role_id)
        try:
            identity_db.role_remove(user_id, project_id, role_id)
        except exception.NotFound:
            raise errors.not_found("Could not find role assignment.") from None
        resp.status = falcon.HTTP_204


class SystemUserRoles:
    def on_get(self, req, resp, user_id: str) -> None:
        require_reader(req)
        _user(user_id)
        roles = [r for _, _, r in identity_db.role_assignments(user_id, "system")]
        resp.media = {"roles": [role_view(req, r) for r in roles],
                      "links": _list_links(req)}


class SystemUserRole:
    def on_put(self, req, resp, user_id: str, role_id: str) -> None:
        require_admin(req)
        _user(user_id)
        identity_db.system_role_add(user_id, _role(role_id))
        resp.status = falcon.HTTP_204

    def on_get(self, req, resp, user_id: str, role_id: str) -> None:
        require_reader(req)
        _user(user_id)
        if not identity_db.role_assignments(user_id, "system", _role(role_id)):
            raise errors.not_found("Could not find role assignment.")
        resp.status = falcon.HTTP_204

    on_head = on_get

    def on_delete(self, req, resp, user_id: str, role_id: str) -> None:
        require_admin(req)
        _user(user_id)
        try:
            identity_db.system_role_remove(user_id, _role(role_id))
        except exception.NotFound:
            raise errors.not_found("Could not find role assignment.") from None
        resp.status = falcon.HTTP_204


class RoleAssignments:
    """GET /role_assignments with user.id, role.id, scope.project.id,
    scope.system filters (direct assignments; ``effective`` adds the
    implied roles)."""

    def on_get(self, req, resp) -> None:
        require_reader(req)
        project = req.get_param("scope.project.id")
        if req.get_param("scope.system") is not None:
            project = "system"
        rows = identity_db.role_assignments(req.get_param("user.id"), project,
                                            req.get_param("role.id"))
        if req.get_param("scope.domain.id") is not None or \
                req.get_param("group.id") is not None:
            rows = []
        if req.get_param("effective") is not None:
            rows = [(u, p, implied) for u, p, r in rows
                    for implied in identity_db.expand_roles([r])]
        base = _base(req)
        result = []
        for user_id, project_id, role in rows:
            scope = {"project": {"id": project_id}} if project_id \
                else {"system": {"all": True}}
            target = ("projects/%s" % project_id) if project_id else "system"
            result.append({"role": {"id": role}, "user": {"id": user_id},
                           "scope": scope, "links": {"assignment": "%s/%s/users/%s/roles/%s"
                                                     % (base, target, user_id, role)}})
        resp.media = {"role_assignments": result, "links": _list_links(req)}


def add_routes(app) -> None:
    add = app.add_route
    add(V3 + "/roles", Roles())
    add(V3 + "/roles/{role_id}", Role())
    add(V3 + "/projects/{project_id}/users/{user_id}/roles", ProjectUserRoles())
    add(V3 + "/projects/{project_id}/users/{user_id}/roles/{role_id}", ProjectUserRole())
    add(V3 + "/system/users/{user_id}/roles", SystemUserRoles())
    add(V3 + "/system/users/{user_id}/roles/{role_id}", SystemUserRole())
    add(V3 + "/role_assignments", RoleAssignments())

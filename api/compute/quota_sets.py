"""os-quota-sets and os-quota-class-sets: limits as Nova shows and sets them.

Rules (Nova's, per microversion):

* ``GET /os-quota-sets/{project_id}`` (``?user_id=`` for one user's) and
  ``/detail`` (``in_use``, ``limit``, ``reserved`` per resource): a member
  or reader of that project, or an admin; another project's is 403.
  ``/defaults``: anyone with a project token (the ``default`` class over
  ``[quota]``);
* ``PUT`` (admin) sets limits of the project, or of ``user_id`` in it, all
  or none: without ``force`` a project limit may not go below what is in use
  (or below its users' own limits), a user's not below the user's use nor
  above what the project has left; ``DELETE`` (admin) reverts the project
  and its users (or one user) to the defaults, 202;
* ``GET``/``PUT /os-quota-class-sets/{class}`` (admin); only the class
  ``default`` changes effective limits (as in Nova);
* shown resources: the nova-network ones (fixed_ips, floating_ips,
  security_groups, security_group_rules) only below 2.36 (2.50 for quota
  classes), the personality ones (injected_*) only below 2.57; quota
  classes show server_groups and server_group_members only from 2.50. A
  resource not shown at a version is refused in a PUT at that version;
* key pairs are counted per user: a project's key_pairs in_use is 0.
"""

from __future__ import annotations

import falcon

from api import errors, validation
from api.compute.servers import quota_defaults, quota_limits
from api.state import APIState, ctxt, version
from flotilla.db import quotas as quotas_db

NETWORK = ("fixed_ips", "floating_ips", "security_groups", "security_group_rules")
PERSONALITY = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
GROUPS = ("server_groups", "server_group_members")
_LIMIT = {"type": ["integer", "string"], "pattern": "^-?[0-9]+$",
          "minimum": -1, "maximum": 0x7FFFFFFF}
_BOOLEAN = {"type": ["boolean", "string"],
            "enum": [True, False, "True", "TRUE", "true", "False", "FALSE", "false",
                     "1", "0", "ON", "On", "on", "OFF", "Off", "off", "YES", "Yes",
                     "yes", "NO", "No", "no"]}


def shown(ver, classes: bool = False) -> tuple[str, ...]:
    """The resources a version shows (and accepts in a PUT)."""
    hidden: tuple[str, ...] = ()
    if ver >= (2, 57):
        hidden = NETWORK + PERSONALITY
    elif ver >= ((2, 50) if classes else (2, 36)):
        hidden = NETWORK
    if classes and ver < (2, 50):
        hidden += GROUPS
    return tuple(r for r in quotas_db.ALL_RESOURCES if r not in hidden)


def update_schema(wrapper: str, resources, force: bool) -> dict:
    properties = {r: _LIMIT for r in resources}
    if force:
        properties["force"] = _BOOLEAN
    return {"type": "object", "properties": {wrapper: {
        "type": "object", "properties": properties, "additionalProperties": False}},
        "required": [wrapper], "additionalProperties": False}


def _new_limits(body: dict, wrapper: str) -> dict[str, int]:
    """The limits a validated PUT body sets (Nova skips empty values)."""
    result = {}
    for key, value in body[wrapper].items():
        if key == "force" or value == "":
            continue
        limit = int(value)
        if limit < -1:
            raise errors.bad_request("Invalid input for field/attribute %s.%s. Value: "
                                     "%s. less than the minimum -1" % (wrapper, key, value))
        result[key] = limit
    return result


def _check_query(req, allowed: tuple[str, ...]) -> None:
    if version(req) >= (2, 75):
        validation.only_query_params(req, allowed)


def _user(req) -> str | None:
    return req.get_param("user_id") or None


class _Base:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def _limits(self, project_id: str, user_id: str | None) -> dict[str, int]:
        return quota_limits(self.state.conf, project_id, user_id=user_id)


def _own_project(ctx, project_id: str) -> None:
    if not ctx.is_admin and ctx.project_id != project_id:
        raise errors.forbidden("Policy doesn't allow os_compute_api:os-quota-sets "
                               "to be performed for another project.")


class QuotaSet(_Base):
    """/os-quota-sets/{project_id}: show, update (admin), revert (admin)."""

    def on_get(self, req, resp, project_id: str) -> None:
        ctx = ctxt(req)
        _own_project(ctx, project_id)
        _check_query(req, ("user_id",))
        limits = self._limits(project_id, _user(req))
        resp.media = {"quota_set": dict(
            {r: limits[r] for r in shown(version(req))}, id=project_id)}

    def on_put(self, req, resp, project_id: str) -> None:
        _check_query(req, ("user_id",))
        ver = version(req)
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size),
            update_schema("quota_set", shown(ver), force=True))
        force = str(body["quota_set"].get("force", False)).lower() in (
            "true", "1", "on", "yes")
        values = _new_limits(body, "quota_set")
        user_id = _user(req)
        if not force:
            self._check_settable(project_id, user_id, values)
        quotas_db.set_limits(project_id, values, user_id=user_id)
        limits = self._limits(project_id, user_id)
        resp.media = {"quota_set": {r: limits[r] for r in shown(ver)}}

    def _check_settable(self, project_id: str, user_id: str | None,
                        values: dict[str, int]) -> None:
        """Nova's bounds for a limit set without ``force``."""
        usage = quotas_db.get_usage(project_id, user_id=user_id)
        users = quotas_db.get_user_overrides(project_id)
        project_limits = self._limits(project_id, None)
        for resource, limit in values.items():
            # Nova: key pairs are not counted when validating limits.
            in_use = 0 if resource == "key_pairs" else usage.get(resource, 0)
            given = [o[resource] for u, o in users.items()
                     if resource in o and u != user_id and o[resource] >= 0]
            if user_id is None:
                minimum, maximum = max([in_use, sum(given)]), -1
            else:
                project_limit = project_limits[resource]
                minimum = in_use
                maximum = -1 if project_limit < 0 else project_limit - sum(given)
            _in_bounds(resource, limit, minimum, maximum)

    def on_delete(self, req, resp, project_id: str) -> None:
        _check_query(req, ("user_id",))
        quotas_db.delete_overrides(project_id, user_id=_user(req))
        resp.status = falcon.HTTP_202


def _in_bounds(resource: str, limit: int, minimum: int, maximum: int) -> None:
    def inf(value: int) -> float:
        return float("inf") if value == -1 else value
    if inf(limit) < inf(minimum):
        raise errors.bad_request(
            "Quota limit %s for %s must be greater than or equal to already used "
            "and reserved %s." % (limit, resource, minimum))
    if inf(limit) > inf(maximum):
        raise errors.bad_request("Quota limit %s for %s must be less than or equal "
                                 "to %s." % (limit, resource, maximum))


class QuotaSetDetail(_Base):
    """/os-quota-sets/{project_id}/detail: limits with usage."""

    def on_get(self, req, resp, project_id: str) -> None:
        ctx = ctxt(req)
        _own_project(ctx, project_id)
        _check_query(req, ("user_id",))
        user_id = _user(req)
        limits = self._limits(project_id, user_id)
        usage = quotas_db.get_usage(project_id, user_id=user_id)
        body = {r: {"limit": limits[r], "in_use": usage.get(r, 0), "reserved": 0}
                for r in shown(version(req))}
        resp.media = {"quota_set": dict(body, id=project_id)}


class QuotaSetDefaults(_Base):
    """/os-quota-sets/{project_id}/defaults."""

    def on_get(self, req, resp, project_id: str) -> None:
        limits = quotas_db.get_class_limits(quotas_db.DEFAULT_CLASS,
                                            quota_defaults(self.state.conf))
        resp.media = {"quota_set": dict(
            {r: limits[r] for r in shown(version(req))}, id=project_id)}


class QuotaClassSet(_Base):
    """/os-quota-class-sets/{class_name} (admin): show and update."""

    def on_get(self, req, resp, class_name: str) -> None:
        limits = quotas_db.get_class_limits(class_name, quota_defaults(self.state.conf))
        resp.media = {"quota_class_set": dict(
            {r: limits[r] for r in shown(version(req), classes=True)}, id=class_name)}

    def on_put(self, req, resp, class_name: str) -> None:
        ver = version(req)
        resources = shown(ver, classes=True)
        if ver < (2, 50):
            resources += GROUPS    # accepted, though not shown, before 2.50
        body = validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size),
            update_schema("quota_class_set", resources, force=False))
        quotas_db.set_class_limits(class_name, _new_limits(body, "quota_class_set"))
        limits = quotas_db.get_class_limits(class_name, quota_defaults(self.state.conf))
        resp.media = {"quota_class_set": {r: limits[r]
                                          for r in shown(ver, classes=True)}}

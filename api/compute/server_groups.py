"""os-server-groups: create (affinity / anti-affinity), list, show, delete.

A project sees its own groups; an admin may list every project's with
``all_projects``. The representation switches at 2.64 (``policy`` and
``rules`` instead of ``policies`` and ``metadata``). Creating is checked
against the server_groups quota.
"""

from __future__ import annotations

import falcon

from api import errors, policy, validation
from api.compute import schemas
from api.compute.servers import quota_limits
from api.state import APIState, ctxt, version
from flotilla import exception
from flotilla.db import api as db
from flotilla.db import server_groups as server_groups_db


def view(group, members: list[str], ver) -> dict:
    result = {"id": group.uuid, "name": group.name, "members": members}
    if ver >= (2, 13):
        result.update(project_id=group.project_id, user_id=group.user_id)
    if ver >= (2, 64):
        result.update(policy=group.policy, rules={})
    else:
        result.update(policies=[group.policy], metadata={})
    return result


def _get(ctx, group_id: str):
    try:
        return db.server_group_get(group_id, policy.project_filter(ctx))
    except exception.NotFound:
        raise errors.not_found("Server group %s not found." % group_id[:64]) from None


class ServerGroups:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        ctx = ctxt(req)
        project = ctx.project_id
        if ctx.is_admin and validation.query_bool(req, "all_projects"):
            project = None
        groups = db.server_group_get_all(project)
        offset = validation.query_int(req, "offset") or 0
        limit = validation.query_int(req, "limit") or self.state.conf.api.max_limit
        ver = version(req)
        resp.media = {"server_groups": [
            view(g, db.server_group_members(g.uuid), ver)
            for g in groups[offset:offset + limit]]}

    def on_post(self, req, resp) -> None:
        ctx = ctxt(req)
        conf = self.state.conf
        body = validation.validate(
            validation.read_json(req, conf.api.max_request_body_size),
            schemas.SERVER_GROUP_CREATE)
        spec = body["server_group"]
        ver = version(req)
        if ver >= (2, 64):
            if "policies" in spec or "policy" not in spec:
                raise errors.bad_request("Invalid input for field/attribute "
                                         "server_group.policy: required since 2.64")
            group_policy = spec["policy"]
        else:
            if "policy" in spec or "rules" in spec or "policies" not in spec:
                raise errors.bad_request("Invalid input for field/attribute "
                                         "server_group.policies: required before 2.64")
            group_policy = spec["policies"][0]
        # Checked and inserted under the project's quota lock, like servers;
        # per-user limits too.
        group = server_groups_db.server_group_create_within_quota(
            {"name": spec["name"], "policy": group_policy,
             "project_id": ctx.project_id, "user_id": ctx.user_id},
            lambda session: quota_limits(conf, ctx.project_id, session))
        resp.media = {"server_group": view(group, [], ver)}


class ServerGroup:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, group_id: str) -> None:
        group = _get(ctxt(req), group_id)
        resp.media = {"server_group": view(group, db.server_group_members(group.uuid),
                                           version(req))}

    def on_delete(self, req, resp, group_id: str) -> None:
        group = _get(ctxt(req), group_id)
        db.server_group_destroy(group.uuid)
        resp.status = falcon.HTTP_204

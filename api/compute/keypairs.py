"""os-keypairs: a user's ssh keys (or x509 certificates): create, import,
list, show, delete.

Rules (Nova's, per microversion):

* key pairs belong to a user, not a project: everyone sees and changes only
  its own; an admin may name another user with ``user_id`` (2.10+), a
  non-admin naming another user is 403;
* create without ``public_key`` generates the key and returns
  ``private_key`` once (never stored); from 2.92 ``public_key`` is
  required. An imported key must parse (its fingerprint is computed from
  it: see :mod:`flotilla.crypto`), else 400;
* ``type`` (ssh, x509) is accepted and shown from 2.2; create answers 201
  from 2.2 (200 before), delete 204 (202 before);
* names: 1-255 of letters, digits, ``_``, ``-`` and space (plus ``@`` and
  ``.`` from 2.92), no leading or trailing space; a taken name is 409;
* list pages with ``limit`` and ``marker`` (a key pair name) from 2.35;
* creating is checked against the user's ``key_pairs`` limit (403);
* from 2.75 an unknown query parameter is 400.
"""

from __future__ import annotations

import falcon

from api import errors, validation
from api.compute.servers import quota_limits
from api.state import APIState, ctxt, version
from flotilla import crypto, exception
from flotilla.db import keypairs as keypairs_db
from flotilla.db.servers import MarkerNotFound


def _name_schema(pattern: str) -> dict:
    return {"allOf": [validation.NAME, {"type": "string", "minLength": 1,
                                        "maxLength": 255, "pattern": pattern}]}


_NAME = _name_schema(r"^[_\- a-zA-Z0-9]+$")
_NAME_V292 = _name_schema(r"^[_\-@. a-zA-Z0-9]+$")


def _create_schema(name: dict, key_type: bool, user_id: bool, require_key: bool) -> dict:
    properties = {"name": name, "public_key": {"type": "string"}}
    if key_type:
        properties["type"] = {"type": "string", "enum": list(crypto.KEY_TYPES)}
    if user_id:
        properties["user_id"] = {"type": "string", "minLength": 1, "maxLength": 255}
    return {"type": "object", "properties": {"keypair": {
        "type": "object", "properties": properties,
        "required": ["name", "public_key"] if require_key else ["name"],
        "additionalProperties": False}},
        "required": ["keypair"], "additionalProperties": False}


CREATE_V21 = _create_schema(_NAME, False, False, False)
CREATE_V22 = _create_schema(_NAME, True, False, False)
CREATE_V210 = _create_schema(_NAME, True, True, False)
CREATE_V292 = _create_schema(_NAME_V292, True, True, True)


def _create_schema_for(ver) -> dict:
    if ver >= (2, 92):
        return CREATE_V292
    if ver >= (2, 10):
        return CREATE_V210
    if ver >= (2, 2):
        return CREATE_V22
    return CREATE_V21


def _nova_time(value) -> str | None:
    """Nova's keypair timestamps: ISO 8601, microseconds, no zone."""
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


def requested_user(req, allowed: tuple[str, ...] = ("user_id",)) -> str | None:
    """The ``user_id`` query parameter (2.10+); from 2.75 query parameters
    other than ``allowed`` are refused."""
    if version(req) >= (2, 75):
        validation.only_query_params(req, allowed)
    return req.get_param("user_id") if version(req) >= (2, 10) else None


def owner(ctx, requested: str | None) -> str:
    """The user whose key pairs a request acts on: the caller's own, or for
    an admin the ``requested`` one (403 for anyone else)."""
    if requested is None or requested == ctx.user_id:
        return ctx.user_id
    if not ctx.is_admin:
        raise errors.forbidden("Policy doesn't allow os_compute_api:os-keypairs "
                               "to be performed for another user.")
    return requested


def brief(row, ver) -> dict:
    result = {"name": row.name, "public_key": row.public_key,
              "fingerprint": row.fingerprint}
    if ver >= (2, 2):
        result["type"] = row.type
    return result


class Keypairs:
    """/os-keypairs: list and create."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = ctxt(req)
        ver = version(req)
        user_id = owner(ctx, requested_user(req, ("user_id", "limit", "marker")))
        limit = marker = None
        if ver >= (2, 35):
            max_limit = self.state.conf.api.max_limit
            limit = validation.query_int(req, "limit", 0)
            limit = max_limit if limit is None else min(limit, max_limit)
            marker = req.get_param("marker")
        try:
            rows = keypairs_db.key_pair_get_all(user_id, limit=limit, marker=marker)
        except MarkerNotFound as exc:
            raise errors.bad_request(str(exc)) from None
        body = {"keypairs": [{"keypair": brief(r, ver)} for r in rows]}
        if limit and len(rows) == limit:
            params = {k: v for k, v in req.params.items() if k != "marker"}
            params["marker"] = rows[-1].name
            body["keypairs_links"] = [{"rel": "next", "href": "%s/os-keypairs%s" % (
                self.state.compute_url(req), falcon.to_query_str(params))}]
        resp.media = body

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = ctxt(req)
        ver = version(req)
        conf = self.state.conf
        body = validation.validate(
            validation.read_json(req, conf.api.max_request_body_size),
            _create_schema_for(ver))
        spec = body["keypair"]
        name = spec["name"].strip()
        key_type = spec.get("type", crypto.SSH)
        user_id = owner(ctx, spec.get("user_id"))
        private_key = None
        if "public_key" in spec:
            public_key = spec["public_key"]
            try:
                fingerprint = crypto.fingerprint(public_key, key_type)
            except exception.InvalidKeypair as exc:
                raise errors.bad_request("Invalid input for field/attribute "
                                         "keypair.public_key. %s" % exc) from None
        elif key_type == crypto.X509:
            private_key, public_key, fingerprint = crypto.generate_x509_keypair(user_id)
        else:
            private_key, public_key, fingerprint = crypto.generate_ssh_keypair()
        row = keypairs_db.key_pair_create(
            user_id, name, public_key, fingerprint, key_type,
            lambda session: quota_limits(conf, ctx.project_id, session, user_id=user_id))
        result = dict(brief(row, ver), user_id=row.user_id)
        if private_key is not None:
            result["private_key"] = private_key
        resp.status = falcon.HTTP_201 if ver >= (2, 2) else falcon.HTTP_200
        resp.media = {"keypair": result}


class Keypair:
    """/os-keypairs/{keypair_name}: show and delete."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, keypair_name: str) -> None:
        ctx = ctxt(req)
        ver = version(req)
        row = _get(owner(ctx, requested_user(req)), keypair_name)
        resp.media = {"keypair": dict(
            brief(row, ver), user_id=row.user_id, id=row.id, deleted=False,
            created_at=_nova_time(row.created_at), updated_at=_nova_time(row.updated_at),
            deleted_at=None)}

    def on_delete(self, req, resp, keypair_name: str) -> None:
        ctx = ctxt(req)
        try:
            keypairs_db.key_pair_destroy(owner(ctx, requested_user(req)), keypair_name)
        except exception.KeypairNotFound as exc:
            raise errors.not_found(str(exc)) from None
        resp.status = falcon.HTTP_204 if version(req) >= (2, 2) else falcon.HTTP_202


def _get(user_id: str, name: str):
    try:
        return keypairs_db.key_pair_get(user_id, name)
    except exception.KeypairNotFound as exc:
        raise errors.not_found(str(exc)) from None

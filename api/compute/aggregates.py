"""os-aggregates (admin): host aggregates, their hosts and metadata.

Rules (Nova's API): ids in URLs are the integer ids (400 otherwise);
create answers without hosts and metadata; ``uuid`` is shown from 2.41;
``POST .../action`` takes ``add_host``, ``remove_host`` or
``set_metadata``; a duplicate name or a host in two zones is 409, an
unknown host 404, deleting an aggregate that has hosts 400. The
scheduler reads the metadata (AggregateInstanceExtraSpecsFilter) and the
zone (AvailabilityZoneFilter); flotilla.db.aggregates has the rules.
"""

from __future__ import annotations

import falcon

from api import errors, validation
from api.state import APIState, isotime, version
from flotilla.db import aggregates as agg_db

_NAME = {"type": "string", "minLength": 1, "maxLength": 255,
         "pattern": r"^(?!\s)[\S ]*(?<!\s)$"}
_ZONE = {"type": ["string", "null"], "minLength": 1, "maxLength": 255,
         "pattern": r"^(?!\s)[^:]*(?<!\s)$"}
CREATE = {"type": "object", "properties": {"aggregate": {
    "type": "object", "properties": {"name": _NAME, "availability_zone": _ZONE},
    "required": ["name"], "additionalProperties": False}},
    "required": ["aggregate"], "additionalProperties": False}
UPDATE = {"type": "object", "properties": {"aggregate": {
    "type": "object", "properties": {"name": _NAME, "availability_zone": _ZONE},
    "minProperties": 1, "additionalProperties": False}},
    "required": ["aggregate"], "additionalProperties": False}
_HOST = {"type": "object", "properties": {"host": {
    "type": "string", "minLength": 1, "maxLength": 255}},
    "required": ["host"], "additionalProperties": False}
ACTION = {"type": "object", "properties": {
    "add_host": _HOST, "remove_host": _HOST,
    "set_metadata": {"type": "object", "properties": {"metadata": {
        "type": "object", "maxProperties": 128,
        "propertyNames": {"minLength": 1, "maxLength": 255},
        "additionalProperties": {"type": ["string", "null"], "maxLength": 255}}},
        "required": ["metadata"], "additionalProperties": False}},
    "minProperties": 1, "maxProperties": 1, "additionalProperties": False}


def view(row, hosts: list[str], ver, brief: bool = False) -> dict:
    result = {"id": row.id, "name": row.name, "availability_zone": row.availability_zone,
              "created_at": isotime(row.created_at, micro=True),
              "updated_at": isotime(row.updated_at, micro=True),
              "deleted_at": None, "deleted": False}
    if ver >= (2, 41):
        result["uuid"] = row.uuid
    if not brief:
        result["hosts"] = list(hosts)
        result["metadata"] = dict(row.metadata_ or {})
    return result


def _id(aggregate_id: str) -> int:
    try:
        return int(aggregate_id)
    except ValueError:
        raise errors.bad_request("Invalid aggregate id %r: not an integer"
                                 % aggregate_id[:64]) from None


def _call(func, *args, **kwargs):
    """A db call with its errors as Nova's statuses."""
    try:
        return func(*args, **kwargs)
    except (agg_db.AggregateNotFound, agg_db.HostNotFound,
            agg_db.AggregateHostNotFound) as exc:
        raise errors.not_found(str(exc)) from None
    except agg_db.AggregateConflict as exc:
        raise errors.conflict(str(exc)) from None
    except agg_db.AggregateNotEmpty as exc:
        raise errors.bad_request(str(exc)) from None


class Aggregates:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        ver = version(req)
        resp.media = {"aggregates": [view(row, hosts, ver)
                                     for row, hosts in agg_db.aggregate_get_all()]}

    def on_post(self, req, resp) -> None:
        spec = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), CREATE)["aggregate"]
        row, hosts = _call(agg_db.aggregate_create, spec["name"],
                           spec.get("availability_zone"))
        resp.media = {"aggregate": view(row, hosts, version(req), brief=True)}


class Aggregate:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, aggregate_id: str) -> None:
        row, hosts = _call(agg_db.aggregate_get, _id(aggregate_id))
        resp.media = {"aggregate": view(row, hosts, version(req))}

    def on_put(self, req, resp, aggregate_id: str) -> None:
        spec = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), UPDATE)["aggregate"]
        row, hosts = _call(agg_db.aggregate_update, _id(aggregate_id), spec.get("name"),
                           spec.get("availability_zone"),
                           set_zone="availability_zone" in spec)
        resp.media = {"aggregate": view(row, hosts, version(req))}

    def on_delete(self, req, resp, aggregate_id: str) -> None:
        _call(agg_db.aggregate_delete, _id(aggregate_id))
        resp.status = falcon.HTTP_200


class AggregateAction:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_post(self, req, resp, aggregate_id: str) -> None:
        body = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), ACTION)
        ident = _id(aggregate_id)
        name, args = next(iter(body.items()))
        if name == "add_host":
            row, hosts = _call(agg_db.aggregate_add_host, ident, args["host"])
        elif name == "remove_host":
            row, hosts = _call(agg_db.aggregate_remove_host, ident, args["host"])
        else:
            row, hosts = _call(agg_db.aggregate_set_metadata, ident, args["metadata"])
        resp.media = {"aggregate": view(row, hosts, version(req))}

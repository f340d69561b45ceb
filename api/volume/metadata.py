"""``/volumes/{id}/metadata`` and ``/snapshots/{id}/metadata``: what
``openstack volume set --property``, ``volume unset --property`` and their
``volume snapshot`` forms send.

Rules (Cinder's):

* ``GET .../metadata`` -> ``{"metadata": {...}}``;
* ``POST .../metadata`` merges ``{"metadata": {...}}`` into what is there,
  ``PUT .../metadata`` replaces all of it; both answer the whole metadata;
* ``GET .../metadata/{key}`` -> ``{"meta": {key: value}}`` (404 when the
  key is not there); ``PUT .../metadata/{key}`` with ``{"meta": {key:
  value}}``, exactly one item whose key is the URL's (400 otherwise);
  ``DELETE .../metadata/{key}`` (404 when the key is not there);
* keys 1-255 characters, values up to 255, at most MAX_ITEMS items in all
  (400 naming ``metadata``); a change of someone else's volume or
  snapshot is a 404, as reading it is.
"""

from __future__ import annotations

from api import errors, policy, validation
from api.state import APIState, ctxt
from api.volume.resources import get_volume
from api.volume.snapshots import get_snapshot
from flotilla.db import volume_metadata as mdb

MAX_ITEMS = 128
_KEY = {"type": "string", "minLength": 1, "maxLength": 255}
_ITEMS = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 255},
          "propertyNames": _KEY}
BODY = {"type": "object", "required": ["metadata"], "additionalProperties": False,
        "properties": {"metadata": dict(_ITEMS, maxProperties=MAX_ITEMS)}}
ITEM = {"type": "object", "required": ["meta"], "additionalProperties": False,
        "properties": {"meta": dict(_ITEMS, minProperties=1, maxProperties=1)}}

_GETTERS = {"volume": get_volume, "snapshot": get_snapshot}
_NAMES = {"volume": "Volume", "snapshot": "Snapshot"}


class _Base:
    policy_rules = {"GET": policy.READER, "POST": policy.MEMBER, "PUT": policy.MEMBER,
                    "DELETE": policy.MEMBER}

    def __init__(self, state: APIState, kind: str) -> None:
        self.state = state
        self.kind = kind

    def _row(self, req, row_id: str):
        return _GETTERS[self.kind](ctxt(req), row_id)

    def _body(self, req, schema: dict) -> dict:
        return validation.validate(
            validation.read_json(req, self.state.conf.api.max_request_body_size), schema)

    def _change(self, row_id: str, updates: dict, replace: bool = False) -> dict:
        try:
            result = mdb.metadata_change(self.kind, row_id, updates, replace, MAX_ITEMS)
        except mdb.MetadataTooLarge as exc:
            raise errors.bad_request("Invalid input for field/attribute metadata: %s "
                                     "(at most %d items)" % (exc, MAX_ITEMS)) from None
        if result is None:
            raise errors.not_found("%s %s could not be found."
                                   % (_NAMES[self.kind], row_id[:64]))
        return result


class Metadata(_Base):
    """The whole metadata of a volume or snapshot."""

    def on_get(self, req, resp, **ids: str) -> None:
        row = self._row(req, _one(ids))
        resp.media = {"metadata": dict(row.metadata_ or {})}

    def on_post(self, req, resp, **ids: str) -> None:
        row = self._row(req, _one(ids))
        updates = self._body(req, BODY)["metadata"]
        resp.media = {"metadata": self._change(row.id, updates)}

    def on_put(self, req, resp, **ids: str) -> None:
        row = self._row(req, _one(ids))
        updates = self._body(req, BODY)["metadata"]
        resp.media = {"metadata": self._change(row.id, updates, replace=True)}


class MetadataItem(_Base):
    """One key of a volume's or snapshot's metadata."""

    def on_get(self, req, resp, key: str, **ids: str) -> None:
        row = self._row(req, _one(ids))
        metadata = row.metadata_ or {}
        if key not in metadata:
            raise errors.not_found("Metadata item %s was not found." % key[:255])
        resp.media = {"meta": {key: metadata[key]}}

    def on_put(self, req, resp, key: str, **ids: str) -> None:
        row = self._row(req, _one(ids))
        meta = self._body(req, ITEM)["meta"]
        if list(meta) != [key]:
            raise errors.bad_request("Invalid input for field/attribute meta: its key "
                                     "must be the request's (%s)" % key[:255])
        self._change(row.id, meta)
        resp.media = {"meta": meta}

    def on_delete(self, req, resp, key: str, **ids: str) -> None:
        row = self._row(req, _one(ids))
        if key not in (row.metadata_ or {}):
            raise errors.not_found("Metadata item %s was not found." % key[:255])
        self._change(row.id, {key: None})


def _one(ids: dict) -> str:
    (row_id,) = ids.values()
    return row_id

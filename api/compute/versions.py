"""Compute version documents (GET /compute and GET /compute/v2.1).

keystoneauth's discovery reads ``id``, ``status``, ``version`` (the
maximum microversion), ``min_version`` and ``links``; without them the
clients send no microversion at all.
"""

from __future__ import annotations

from api import microversion
from api.state import APIState

UPDATED = "2013-07-23T11:33:21Z"


def legacy_doc(base: str) -> dict:
    """v2.0: Nova still lists it (SUPPORTED, no microversions). Flotilla
    serves only v2.1 under /compute/v2.1; /compute/v2 answers this
    document only."""
    return {
        "id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": base + "/compute/v2/"}],
    }


def version_doc(base: str) -> dict:
    return {
        "id": "v2.1", "status": "CURRENT",
        "version": microversion.to_str(microversion.MAX),
        "min_version": microversion.to_str(microversion.MIN),
        "updated": UPDATED,
        "links": [{"rel": "self", "href": base + "/compute/v2.1/"},
                  {"rel": "describedby", "type": "text/html",
                   "href": "https://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version=2.1"}],
    }


class Versions:
    """GET /compute: every version, v2.0 first as Nova lists them."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        base = self.state.base_url(req)
        resp.media = {"versions": [legacy_doc(base), version_doc(base)]}


class LegacyVersion:
    """GET /compute/v2: the v2.0 document."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"version": legacy_doc(self.state.base_url(req))}


class Version:
    """GET /compute/v2.1 (also with a trailing slash)."""

    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"version": version_doc(self.state.base_url(req))}

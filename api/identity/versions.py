"""Identity version documents: GET /identity and GET /identity/v3.

keystoneauth discovers the v3 API from these; they are public.
"""

from __future__ import annotations

import falcon

from api.state import APIState

UPDATED = "2020-04-07T00:00:00Z"


def v3_doc(base: str) -> dict:
    return {"id": "v3.14", "status": "stable", "updated": UPDATED,
            "links": [{"rel": "self", "href": base + "/identity/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


class Versions:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        # 300 Multiple Choices, as Keystone answers its root.
        resp.status = falcon.HTTP_300
        resp.media = {"versions": {"values": [v3_doc(self.state.base_url(req))]}}


class Version:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = {"version": v3_doc(self.state.base_url(req))}

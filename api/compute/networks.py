"""os-networks (up to 2.35, as Nova): the networks servers may attach to.

Flotilla has no network API yet (tenant networking comes later; the
image-level user-mode NIC is not a network anyone can name), so the list
is empty and every network is 404. From 2.36 the proxy is gone (404).
"""

from __future__ import annotations

from api import errors
from api.state import APIState, version


def _check_version(req) -> None:
    if version(req) >= (2, 36):
        raise errors.not_found("The os-networks proxy was removed in microversion 2.36.")


class Networks:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        _check_version(req)
        resp.media = {"networks": []}


class Network:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, network_id: str) -> None:
        _check_version(req)
        raise errors.not_found("Network %s could not be found." % network_id[:64])

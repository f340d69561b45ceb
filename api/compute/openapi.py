"""GET /compute/v2.1/openapi.json: an OpenAPI 3.1 description of the API.

Built from the same tables the API runs on: the routes and their rules
(api.policy.RULES) and the request schemas (api.compute.schemas), so the
document cannot drift from what is enforced.
"""

from __future__ import annotations

import functools
import re

from api import microversion, policy
from api.compute import schemas
from api.identity import tokens
from api.state import APIState

_BODIES = {
    ("POST", "/compute/v2.1/servers"): schemas.SERVER_CREATE,
    ("POST", "/compute/v2.1/servers/{server_id}/action"): schemas.SERVER_ACTION,
    ("POST", "/compute/v2.1/flavors"): schemas.FLAVOR_CREATE,
    ("POST", "/compute/v2.1/flavors/{flavor_id}/action"): schemas.FLAVOR_ACTION,
    ("POST", "/compute/v2.1/os-server-groups"): schemas.SERVER_GROUP_CREATE,
    ("PUT", "/compute/v2.1/os-services/{action}"): {
        "oneOf": [schemas.SERVICE_HOST_BINARY, schemas.SERVICE_UPDATE]},
    ("POST", "/identity/v3/auth/tokens"): tokens.AUTH_SCHEMA,
}
_STATUS = {"POST": "202", "DELETE": "204", "PUT": "200", "GET": "200", "HEAD": "200"}


@functools.lru_cache(maxsize=1)
def document() -> dict:
    paths: dict[str, dict] = {}
    for (method, template), rule in sorted(policy.RULES.items(),
                                           key=lambda i: (i[0][1], i[0][0])):
        operation = {
            "summary": "%s %s" % (method, template),
            "x-policy-rule": rule,
            "parameters": [{"name": name, "in": "path", "required": True,
                            "schema": {"type": "string"}}
                           for name in re.findall(r"{(\w+)}", template)],
            "responses": {_STATUS[method]: {"description": "success"},
                          "400": {"description": "invalid request"},
                          "401": {"description": "no or bad token"},
                          "403": {"description": "forbidden or over quota"},
                          "404": {"description": "not found"},
                          "409": {"description": "conflicting state"}},
        }
        if rule == policy.PUBLIC:
            operation["security"] = []
        body = _BODIES.get((method, template))
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": body}}}
        paths.setdefault(template, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flotilla API", "version": microversion.to_str(microversion.MAX),
                 "description": "Compute (Nova v2.1 subset, microversions %s to %s) "
                 "and identity (Keystone v3 subset)." % (
                     microversion.to_str(microversion.MIN),
                     microversion.to_str(microversion.MAX))},
        "components": {"securitySchemes": {"token": {
            "type": "apiKey", "in": "header", "name": "X-Auth-Token"}}},
        "security": [{"token": []}],
        "paths": paths,
    }


class OpenAPI:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp) -> None:
        resp.media = document()

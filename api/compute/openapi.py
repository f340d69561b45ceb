"""GET /compute/v2.1/openapi.json: an OpenAPI 3.1 description of the API.

Built from the same tables the API runs on: the routes and their rules
(api.policy.RULES, and the image API's routes with their resources'
``policy_rules``), the request schemas (api.compute.schemas, the image
API's), and the query parameters each list accepts, so the document cannot
drift from what is enforced. A test checks that it names every route the
app serves, and the fuzz tier generates requests from it.
"""

from __future__ import annotations

import functools
import re

from api import microversion, policy
from api.compute import keypairs, quota_sets, schemas, volume_attachments
from api.identity import tokens
from api.image import validation as image_validation
from api.state import APIState
from api.volume import actions as volume_actions
from api.volume import metadata as volume_metadata
from api.volume import quotas as volume_quotas
from api.volume import resources as volume_resources
from api.volume import services as volume_services
from api.volume import snapshots as volume_snapshots

IMG = "/image/v2"
#: The image API's routes (its resources declare their rules themselves).
IMAGE_ROUTES = {
    ("GET", "/image/v2"): policy.PUBLIC,
    ("GET", IMG + "/images"): policy.READER,
    ("POST", IMG + "/images"): policy.MEMBER,
    ("GET", IMG + "/images/{image_id}"): policy.READER,
    ("PATCH", IMG + "/images/{image_id}"): policy.MEMBER,
    ("DELETE", IMG + "/images/{image_id}"): policy.MEMBER,
    ("PUT", IMG + "/images/{image_id}/file"): policy.MEMBER,
    ("GET", IMG + "/images/{image_id}/file"): policy.OPTIONAL,
    ("GET", IMG + "/schemas/image"): policy.READER,
    ("GET", IMG + "/schemas/images"): policy.READER,
    # DELETE on the collection answers as Glance does (404 for an empty id, else 405).
    ("DELETE", IMG + "/images"): policy.MEMBER,
    ("GET", IMG + "/images/{image_id}/members"): policy.READER,
    ("POST", IMG + "/images/{image_id}/members"): policy.MEMBER,
    ("GET", IMG + "/images/{image_id}/members/{member_id}"): policy.READER,
    ("PUT", IMG + "/images/{image_id}/members/{member_id}"): policy.MEMBER,
    ("DELETE", IMG + "/images/{image_id}/members/{member_id}"): policy.MEMBER,
    ("PUT", IMG + "/images/{image_id}/tags/{tag}"): policy.MEMBER,
    ("DELETE", IMG + "/images/{image_id}/tags/{tag}"): policy.MEMBER,
    ("POST", IMG + "/images/{image_id}/actions/deactivate"): policy.MEMBER,
    ("POST", IMG + "/images/{image_id}/actions/reactivate"): policy.MEMBER,
    ("GET", IMG + "/schemas/member"): policy.READER,
    ("GET", IMG + "/schemas/members"): policy.READER,
    ("GET", IMG + "/info/import"): policy.READER,
    ("GET", IMG + "/images/{image_id}/tasks"): policy.READER,
}

_INT = {"type": "string", "pattern": "^-?[0-9]{1,12}$"}
_STR = {"type": "string", "maxLength": 255}
_BOOL = {"type": "string", "enum": ["true", "false", "True", "False", "1", "0"]}
_SERVER_LIST = {"limit": _INT, "marker": _STR, "name": _STR, "status": _STR,
                "all_tenants": _BOOL, "project_id": _STR, "host": _STR,
                "deleted": _BOOL}
_FLAVOR_LIST = {"limit": _INT, "marker": _STR, "is_public": _BOOL,
                "minRam": _INT, "minDisk": _INT}
_IMAGE_LIST = {"limit": _INT, "marker": _STR, "name": _STR, "visibility": _STR,
               "status": _STR, "owner": _STR, "sort_key": _STR, "sort_dir": _STR,
               "sort": _STR, "os_hidden": _BOOL, "disk_format": _STR}
_QUERY = {
    ("GET", "/compute/v2.1/servers"): _SERVER_LIST,
    ("GET", "/compute/v2.1/servers/detail"): _SERVER_LIST,
    ("GET", "/compute/v2.1/flavors"): _FLAVOR_LIST,
    ("GET", "/compute/v2.1/flavors/detail"): _FLAVOR_LIST,
    ("GET", "/compute/v2.1/os-server-groups"): {"all_projects": _BOOL, "limit": _INT,
                                                "offset": _INT},
    ("GET", "/compute/v2.1/os-hypervisors"): {"limit": _INT, "marker": _STR},
    ("GET", "/compute/v2.1/os-hypervisors/detail"): {"limit": _INT, "marker": _STR},
    ("GET", "/compute/v2.1/os-services"): {"host": _STR, "binary": _STR},
    ("GET", "/volume/v3/os-services"): {"host": _STR, "binary": _STR},
    ("GET", IMG + "/images"): _IMAGE_LIST,
    ("GET", IMG + "/images/{image_id}/file"): {"expires": _INT, "signature": _STR},
}
_MEDIA = {("PATCH", IMG + "/images/{image_id}"):
          "application/openstack-images-v2.1-json-patch",
          ("PUT", IMG + "/images/{image_id}/file"): "application/octet-stream"}

VOL = "/volume/v3"
#: The Block Storage subset's routes (api/volume/; rules on its resources).
VOLUME_ROUTES = {
    ("GET", "/volume"): policy.PUBLIC,
    ("GET", VOL): policy.PUBLIC,
    ("GET", VOL + "/volumes"): policy.READER,
    ("POST", VOL + "/volumes"): policy.MEMBER,
    ("GET", VOL + "/volumes/detail"): policy.READER,
    ("GET", VOL + "/volumes/{volume_id}"): policy.READER,
    ("PUT", VOL + "/volumes/{volume_id}"): policy.MEMBER,
    ("DELETE", VOL + "/volumes/{volume_id}"): policy.MEMBER,
    ("POST", VOL + "/volumes/{volume_id}/action"): policy.MEMBER,
    ("GET", VOL + "/types"): policy.READER,
    ("GET", VOL + "/types/{type_id}"): policy.READER,
    ("GET", VOL + "/os-quota-sets/{project_id}"): policy.READER,
    ("PUT", VOL + "/os-quota-sets/{project_id}"): policy.ADMIN,
    ("GET", VOL + "/os-quota-sets/{project_id}/defaults"): policy.READER,
    ("GET", VOL + "/limits"): policy.READER,
    ("GET", VOL + "/snapshots"): policy.READER,
    ("POST", VOL + "/snapshots"): policy.MEMBER,
    ("GET", VOL + "/snapshots/detail"): policy.READER,
    ("GET", VOL + "/snapshots/{snapshot_id}"): policy.READER,
    ("PUT", VOL + "/snapshots/{snapshot_id}"): policy.MEMBER,
    ("DELETE", VOL + "/snapshots/{snapshot_id}"): policy.MEMBER,
    ("GET", VOL + "/scheduler-stats/get_pools"): policy.ADMIN,
    ("GET", VOL + "/volumes/summary"): policy.READER,
    ("GET", VOL + "/attachments"): policy.READER,
    ("GET", VOL + "/attachments/detail"): policy.READER,
    ("GET", VOL + "/attachments/{attachment_id}"): policy.READER,
    ("GET", VOL + "/os-services"): policy.ADMIN,
    ("PUT", VOL + "/os-services/{action}"): policy.ADMIN,
    ("GET", VOL + "/volumes/{volume_id}/metadata"): policy.READER,
    ("POST", VOL + "/volumes/{volume_id}/metadata"): policy.MEMBER,
    ("PUT", VOL + "/volumes/{volume_id}/metadata"): policy.MEMBER,
    ("GET", VOL + "/volumes/{volume_id}/metadata/{key}"): policy.READER,
    ("PUT", VOL + "/volumes/{volume_id}/metadata/{key}"): policy.MEMBER,
    ("DELETE", VOL + "/volumes/{volume_id}/metadata/{key}"): policy.MEMBER,
    ("GET", VOL + "/snapshots/{snapshot_id}/metadata"): policy.READER,
    ("POST", VOL + "/snapshots/{snapshot_id}/metadata"): policy.MEMBER,
    ("PUT", VOL + "/snapshots/{snapshot_id}/metadata"): policy.MEMBER,
    ("GET", VOL + "/snapshots/{snapshot_id}/metadata/{key}"): policy.READER,
    ("PUT", VOL + "/snapshots/{snapshot_id}/metadata/{key}"): policy.MEMBER,
    ("DELETE", VOL + "/snapshots/{snapshot_id}/metadata/{key}"): policy.MEMBER,
}

_BODIES = {
    ("POST", "/compute/v2.1/servers"): schemas.SERVER_CREATE,
    ("POST", "/compute/v2.1/servers/{server_id}/action"): schemas.SERVER_ACTION,
    ("POST", "/compute/v2.1/flavors"): schemas.FLAVOR_CREATE,
    ("POST", "/compute/v2.1/flavors/{flavor_id}/action"): schemas.FLAVOR_ACTION,
    ("POST", "/compute/v2.1/os-server-groups"): schemas.SERVER_GROUP_CREATE,
    ("PUT", "/compute/v2.1/servers/{server_id}"): schemas.SERVER_UPDATE_V219,
    # Key pairs in their 2.92 form, quotas in their 2.1 form (the most keys).
    ("POST", "/compute/v2.1/os-keypairs"): keypairs.CREATE_V292,
    ("PUT", "/compute/v2.1/os-quota-sets/{project_id}"): quota_sets.update_schema(
        "quota_set", quota_sets.shown((2, 1)), force=True),
    ("PUT", "/compute/v2.1/os-quota-class-sets/{class_name}"): quota_sets.update_schema(
        "quota_class_set", quota_sets.shown((2, 1)), force=False),
    ("PUT", "/compute/v2.1/os-services/{action}"): {
        "oneOf": [schemas.SERVICE_HOST_BINARY, schemas.SERVICE_UPDATE,
                  schemas.SERVICE_FORCE_DOWN]},
    ("POST", "/identity/v3/auth/tokens"): tokens.AUTH_SCHEMA,
    ("POST", IMG + "/images"): image_validation.IMAGE_SCHEMA,
    ("PATCH", IMG + "/images/{image_id}"): image_validation.PATCH_SCHEMA,
    ("PUT", IMG + "/images/{image_id}/file"): {"type": "string", "format": "binary"},
    ("POST", VOL + "/volumes"): volume_resources.CREATE,
    ("PUT", VOL + "/volumes/{volume_id}"): volume_resources.UPDATE,
    ("POST", VOL + "/volumes/{volume_id}/action"): volume_actions.ACTION,
    ("PUT", VOL + "/os-quota-sets/{project_id}"): volume_quotas.UPDATE,
    ("POST", VOL + "/snapshots"): volume_snapshots.CREATE,
    ("PUT", VOL + "/snapshots/{snapshot_id}"): volume_snapshots.UPDATE,
    ("PUT", VOL + "/os-services/{action}"): volume_services.UPDATE,
    ("POST", VOL + "/volumes/{volume_id}/metadata"): volume_metadata.BODY,
    ("PUT", VOL + "/volumes/{volume_id}/metadata"): volume_metadata.BODY,
    ("PUT", VOL + "/volumes/{volume_id}/metadata/{key}"): volume_metadata.ITEM,
    ("POST", VOL + "/snapshots/{snapshot_id}/metadata"): volume_metadata.BODY,
    ("PUT", VOL + "/snapshots/{snapshot_id}/metadata"): volume_metadata.BODY,
    ("PUT", VOL + "/snapshots/{snapshot_id}/metadata/{key}"): volume_metadata.ITEM,
    ("POST", "/compute/v2.1/servers/{server_id}/os-volume_attachments"):
        volume_attachments.ATTACH,
    ("PUT", "/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}"):
        volume_attachments.UPDATE,
}
_STATUS = {"POST": "202", "DELETE": "204", "PUT": "200", "GET": "200", "HEAD": "200",
           "PATCH": "200"}
_VERSION_HEADER = {"name": microversion.HEADER, "in": "header", "required": False,
                   "schema": {"type": "string", "maxLength": 64}}


def routes() -> dict[tuple[str, str], str]:
    """Every (method, URI template) the app serves, with its rule."""
    return {**policy.RULES, **IMAGE_ROUTES, **VOLUME_ROUTES}


@functools.lru_cache(maxsize=1)
def document() -> dict:
    paths: dict[str, dict] = {}
    for (method, template), rule in sorted(routes().items(),
                                           key=lambda i: (i[0][1], i[0][0])):
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
                      for name in re.findall(r"{(\w+)}", template)]
        parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                       for name, schema in _QUERY.get((method, template), {}).items()]
        if template.startswith("/compute"):
            parameters.append(_VERSION_HEADER)
        operation = {
            "summary": "%s %s" % (method, template),
            "x-policy-rule": rule,
            "parameters": parameters,
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
            media = _MEDIA.get((method, template), "application/json")
            operation["requestBody"] = {"required": True, "content": {
                media: {"schema": body}}}
        paths.setdefault(template, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flotilla API", "version": microversion.to_str(microversion.MAX),
                 "description": "Compute (Nova v2.1 subset, microversions %s to %s), "
                 "identity (Keystone v3 subset) and image (Glance v2 subset)." % (
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

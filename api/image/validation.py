"""Request bodies of the image API, checked against JSON schemas.

Rules (Glance's, narrowed to what Flotilla stores):

* core fields have fixed types; ``disk_format`` is qcow2 or raw,
  ``container_format`` bare; names and property values are at most 255
  characters; ``min_ram``/``min_disk`` are non-negative 32-bit integers;
* fields the server computes (status, size, checksum, ...) are read-only:
  setting one is 403, as in Glance;
* any other key is an extra property whose value must be a string (the SDK
  sends ``owner_specified.openstack.sha256`` and friends this way); keys
  starting with ``_`` are reserved for Flotilla.
"""

from __future__ import annotations

from typing import Any

import falcon
import jsonschema

from api.validation import Validator
from flotilla import images

MAX_PROPERTIES = 128
INT32_MAX = 2 ** 31 - 1

READ_ONLY = frozenset({"status", "size", "virtual_size", "checksum",
                       "os_hash_algo", "os_hash_value", "created_at",
                       "updated_at", "self", "file", "schema", "direct_url",
                       "locations", "location", "deleted", "deleted_at"})

_STRING_255 = {"type": "string", "maxLength": 255}

IMAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string",
               "pattern": "^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"},
        "name": {"type": ["string", "null"], "maxLength": 255},
        "owner": {"type": ["string", "null"], "maxLength": 255},
        "visibility": {"enum": ["public", "private", "shared", "community"]},
        "protected": {"type": "boolean"},
        "os_hidden": {"type": "boolean"},
        "tags": {"type": "array", "items": _STRING_255, "maxItems": 128,
                 "uniqueItems": True},
        "disk_format": {"enum": list(images.DISK_FORMATS) + [None]},
        "container_format": {"enum": list(images.CONTAINER_FORMATS) + [None]},
        "min_ram": {"type": "integer", "minimum": 0, "maximum": INT32_MAX},
        "min_disk": {"type": "integer", "minimum": 0, "maximum": INT32_MAX},
    },
    "propertyNames": {"maxLength": 255, "pattern": "^[^_]"},
    "additionalProperties": _STRING_255,
    "maxProperties": MAX_PROPERTIES,
}

CORE_FIELDS = frozenset(IMAGE_SCHEMA["properties"])

_validator = Validator(IMAGE_SCHEMA)


def validate_image(body: Any) -> dict[str, Any]:
    """``body`` if it is a valid image document, else 400 naming the first
    bad field (403 for a read-only one)."""
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(description="The request body must be a JSON object.")
    for key in body:
        if key in READ_ONLY:
            raise falcon.HTTPForbidden(description="Attribute '%s' is read-only." % key)
        if key.startswith("os_glance"):
            # Glance reserves this prefix for its own properties.
            raise falcon.HTTPForbidden(description="Attribute '%s' is reserved." % key)
    error = jsonschema.exceptions.best_match(_validator.iter_errors(body))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "body"
        if error.validator == "propertyNames":
            field = str(error.instance)
        raise falcon.HTTPBadRequest(
            description="Invalid value for %s: %s" % (field, error.message))
    return body


PATCH_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": 256,
    "items": {
        "type": "object",
        "properties": {
            "op": {"enum": ["add", "replace", "remove"]},
            "path": {"type": "string", "pattern": "^/[^/]+$", "maxLength": 256},
            "value": {},
        },
        "required": ["op", "path"],
        "additionalProperties": False,
    },
}

_patch_validator = Validator(PATCH_SCHEMA)


def patch_v20_to_v21(operations: Any) -> Any:
    """Glance's older patch form (``application/openstack-images-v2.0-
    json-patch``: ``{"replace": "/name", "value": ...}``) in the RFC 6902
    form apply_patch takes; anything else is returned as it is."""
    if not isinstance(operations, list):
        return operations
    result = []
    for op in operations:
        if isinstance(op, dict) and "op" not in op:
            names = [k for k in ("add", "replace", "remove") if k in op]
            if len(names) == 1:
                converted = {"op": names[0], "path": op[names[0]]}
                if "value" in op:
                    converted["value"] = op["value"]
                extra = set(op) - {names[0], "value"}
                converted.update({k: op[k] for k in extra})
                op = converted
        result.append(op)
    return result


def apply_patch(document: dict[str, Any], operations: Any) -> dict[str, Any]:
    """``document`` with the JSON-patch ``operations`` applied (only
    top-level paths, as Glance allows); the result is validated with
    :func:`validate_image`; who may change ``owner`` and
    ``visibility`` is the caller's to check."""
    error = jsonschema.exceptions.best_match(_patch_validator.iter_errors(operations))
    if error is not None:
        raise falcon.HTTPBadRequest(description="Invalid JSON patch: %s" % error.message)
    result = dict(document)
    for op in operations:
        # JSON pointer escapes: ~1 is "/", ~0 is "~".
        key = op["path"][1:].replace("~1", "/").replace("~0", "~")
        if key in READ_ONLY or key == "id":
            raise falcon.HTTPForbidden(description="Attribute '%s' is read-only." % key)
        if op["op"] == "remove":
            if key in CORE_FIELDS:
                raise falcon.HTTPForbidden(
                    description="Attribute '%s' cannot be removed." % key)
            if key not in result:
                raise falcon.HTTPConflict(description="Property %s does not exist." % key)
            del result[key]
            continue
        if "value" not in op:
            raise falcon.HTTPBadRequest(description="Operation %s needs a value." % op["op"])
        if op["op"] == "replace" and key not in result and key not in CORE_FIELDS:
            raise falcon.HTTPConflict(description="Property %s does not exist." % key)
        result[key] = op["value"]
    return validate_image(result)

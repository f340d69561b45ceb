"""JSON schemas of the compute API's request bodies.

Every schema forbids unknown fields. Sizes are bounded (a flavor of 2**31
MiB or 10**6 vCPUs is absurd and refused before reaching the database).
"""

from __future__ import annotations

from api.validation import METADATA, NAME, NON_NEGATIVE, POSITIVE, UUID

# A server's metadata: its size is the project's metadata_items quota's to
# bound (403 overLimit, as Nova), not the schema's.
SERVER_METADATA = {k: v for k, v in METADATA.items() if k != "maxProperties"}

_NETWORKS = {"oneOf": [
    {"type": "string", "enum": ["none", "auto"]},
    {"type": "array", "maxItems": 0},
]}

TAG = {"type": "string", "minLength": 1, "maxLength": 60,
       "pattern": r"^[^,/]*$"}
TAGS = {"type": "array", "items": TAG, "maxItems": 50}
# A device role tag (a BDM's, a volume attachment's); the clients may send null.
DEVICE_TAG = {"anyOf": [TAG, {"type": "null"}]}

_BDM = {"type": "object", "properties": {
    "uuid": UUID, "boot_index": {"type": ["integer", "string", "null"]},
    "source_type": {"type": "string", "enum": ["image", "volume", "snapshot", "blank"]},
    "destination_type": {"type": "string", "enum": ["local", "volume"]},
    "tag": DEVICE_TAG,
    "volume_type": {"type": ["string", "null"], "maxLength": 255},
    "delete_on_termination": {"type": ["boolean", "string"]},
    "device_name": {"type": ["string", "null"], "maxLength": 255},
    "disk_bus": {"type": ["string", "null"], "maxLength": 255},
    "volume_size": {"type": ["integer", "string", "null"]},
    "guest_format": {"type": ["string", "null"], "maxLength": 255},
    "device_type": {"type": ["string", "null"], "maxLength": 255},
}, "required": ["source_type"], "additionalProperties": False}

_UUIDS = {"oneOf": [UUID, {"type": "array", "items": UUID, "maxItems": 100}]}
# Nova lets hints it does not know through (out-of-tree filters read them).
_HINTS = {"type": "object", "properties": {
    "group": UUID, "same_host": _UUIDS, "different_host": _UUIDS},
    "additionalProperties": True, "maxProperties": 32}

IPV4 = {"type": "string", "format": "ipv4"}
IPV6 = {"type": "string", "format": "ipv6"}
DISK_CONFIG = {"type": "string", "enum": ["AUTO", "MANUAL"]}
ADMIN_PASS = {"type": "string", "maxLength": 255}
# RFC 952/1123 host names (Nova 2.90/2.94: one label, or an FQDN at 2.94).
HOSTNAME = {"type": "string", "minLength": 2, "maxLength": 255,
            "pattern": r"^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$"}

SERVER_CREATE = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": NAME,
                "imageRef": {"oneOf": [UUID, {"type": "string", "maxLength": 0}]},
                "flavorRef": {"type": ["string", "integer"], "minLength": 1,
                              "maxLength": 255, "minimum": 0},
                "metadata": SERVER_METADATA,
                "availability_zone": {"type": "string", "minLength": 1,
                                      "maxLength": 255},
                "networks": _NETWORKS,
                "min_count": {"type": ["integer", "string"], "pattern": "^[1-9][0-9]{0,2}$",
                              "minimum": 1, "maximum": 100},
                "max_count": {"type": ["integer", "string"], "pattern": "^[1-9][0-9]{0,2}$",
                              "minimum": 1, "maximum": 100},
                "return_reservation_id": {"type": ["boolean", "string"]},
                "block_device_mapping_v2": {"type": "array", "maxItems": 26,
                                            "items": _BDM},
                "description": {"type": ["string", "null"], "maxLength": 255},
                "key_name": NAME,
                "adminPass": ADMIN_PASS,
                "accessIPv4": IPV4,
                "accessIPv6": IPV6,
                "OS-DCF:diskConfig": DISK_CONFIG,
                "hostname": HOSTNAME,
                "user_data": {"type": "string", "maxLength": 65535,
                              "contentEncoding": "base64"},
                "tags": TAGS,
                "security_groups": {"type": "array", "maxItems": 1, "items": {
                    "type": "object", "properties": {
                        "name": {"type": "string", "enum": ["default"]}},
                    "additionalProperties": False}},
                "config_drive": {"type": ["boolean", "string"],
                                 "enum": [False, "false", "False", ""]},
                "trusted_image_certificates": {"type": "null"},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": _HINTS,
        "OS-SCH-HNT:scheduler_hints": _HINTS,
    },
    "required": ["server"],
    "additionalProperties": False,
}


def _server_update(description: bool, hostname: bool = False) -> dict:
    properties: dict = {"name": NAME, "accessIPv4": IPV4, "accessIPv6": IPV6,
                        "OS-DCF:diskConfig": DISK_CONFIG}
    if description:
        properties["description"] = {"type": ["string", "null"], "maxLength": 255,
                                      "pattern": r"^[^\x00-\x1f\x7f]*$"}
    if hostname:
        properties["hostname"] = HOSTNAME
    return {"type": "object",
            "properties": {"server": {"type": "object", "properties": properties,
                                      "additionalProperties": False}},
            "required": ["server"], "additionalProperties": False}


SERVER_UPDATE = _server_update(description=False)
SERVER_UPDATE_V219 = _server_update(description=True)
SERVER_UPDATE_V290 = _server_update(description=True, hostname=True)

_NULL = {"type": "null"}
# A snapshot's metadata: its size is bounded by [image] image_property_quota,
# checked with the properties the image inherits; keys starting with "_"
# are the image service's own (as its API refuses them too).
IMAGE_METADATA = {"type": "object",
                  "propertyNames": {"minLength": 1, "maxLength": 255, "pattern": "^[^_]"},
                  "additionalProperties": {"type": "string", "maxLength": 255}}

# Nova reads no body for these actions: any value is accepted ({} or null).
_ANY: dict = {}

ACTIONS = {
    "os-start": _ANY, "os-stop": _ANY, "pause": _ANY, "unpause": _ANY,
    "suspend": _ANY, "resume": _ANY,
    "os-resetState": {"type": "object", "properties": {
        "state": {"type": "string", "enum": ["active", "error"]}},
        "required": ["state"], "additionalProperties": False},
    "forceDelete": _ANY, "restore": _ANY,
    "reboot": {"type": "object", "properties": {
        "type": {"type": "string", "enum": ["SOFT", "HARD", "soft", "hard"]}},
        "required": ["type"], "additionalProperties": False},
    "os-getConsoleOutput": {"type": "object", "properties": {
        "length": {"type": ["integer", "string", "null"],
                   "pattern": "^-?[0-9]+$", "minimum": -1, "maximum": 100000}},
        "additionalProperties": False},
    # Any value below 2.73 (as Nova); lock's 2.73 form is checked by
    # api.compute.locks.
    "lock": {}, "unlock": {},
    "createImage": {"type": "object", "properties": {
        "name": NAME, "metadata": IMAGE_METADATA},
        "required": ["name"], "additionalProperties": False},
    "createBackup": {"type": "object", "properties": {
        "name": NAME, "metadata": IMAGE_METADATA,
        "backup_type": {"type": "string", "maxLength": 255},
        # Nova's non-negative integer: a number or a string of digits.
        "rotation": {"type": ["integer", "string"], "pattern": "^[0-9]+$",
                     "minimum": 0, "maximum": 2 ** 31 - 1}},
        "required": ["name", "backup_type", "rotation"], "additionalProperties": False},
    "os-migrateLive": {"type": "object", "properties": {
        "host": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
        "block_migration": {"oneOf": [{"type": "boolean"},
                                      {"type": "string", "enum": ["auto"]}]},
        "force": {"type": "boolean"},
        "disk_over_commit": {"type": ["boolean", "string"]}},
        "additionalProperties": False},
    "rebuild": {"type": "object", "properties": {
        "imageRef": UUID, "name": NAME, "metadata": METADATA,
        "adminPass": {"type": "string", "maxLength": 255},
        "preserve_ephemeral": {"type": "boolean"},
        "description": {"type": ["string", "null"], "maxLength": 255,
                        "pattern": r"^[^\x00-\x1f\x7f]*$"},
        "key_name": {"oneOf": [NAME, {"type": "null"}]},
        "accessIPv4": {"type": ["string", "null"], "maxLength": 64},
        "accessIPv6": {"type": ["string", "null"], "maxLength": 64},
        "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
        # 2.57+: null removes the server's user data.
        "user_data": {"type": ["string", "null"], "maxLength": 65535}},
        "required": ["imageRef"], "additionalProperties": False},
    # Cold migration and resize (api.compute.resize); migrate's host is
    # 2.56+ (checked there).
    "migrate": {"type": ["object", "null"], "properties": {
        "host": {"type": ["string", "null"], "minLength": 1, "maxLength": 255}},
        "additionalProperties": False},
    "resize": {"type": "object", "properties": {
        "flavorRef": {"type": ["string", "integer"], "minLength": 1, "maxLength": 255,
                      "pattern": "^[^\\x00-\\x1f\\x7f]+$"},
        "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]}},
        "required": ["flavorRef"], "additionalProperties": False},
    "confirmResize": _ANY, "revertResize": _ANY,
    # Each microversion's own form: api.compute.evacuate.schema.
    "evacuate": {"type": "object", "properties": {
        "host": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
        "adminPass": {"type": "string", "maxLength": 255},
        "onSharedStorage": {"type": ["boolean", "string"]},
        "force": {"type": "boolean"}}, "additionalProperties": False},
}

SERVER_ACTION = {
    "type": "object",
    "properties": ACTIONS,
    "minProperties": 1, "maxProperties": 1,
    "additionalProperties": False,
}

FLAVOR_CREATE = {
    "type": "object",
    "properties": {"flavor": {
        "type": "object",
        "properties": {
            "name": NAME,
            "id": {"type": ["string", "integer", "null"], "minLength": 1, "maxLength": 255,
                   "pattern": r"^(?! )[a-zA-Z0-9. _-]+(?<! )$"},
            "ram": {"type": ["integer", "string"], "pattern": "^[0-9]+$",
                    "minimum": 1, "maximum": 4 * 1024 * 1024},
            "vcpus": {"type": ["integer", "string"], "pattern": "^[0-9]+$",
                      "minimum": 1, "maximum": 1024},
            "disk": {"type": ["integer", "string"], "pattern": "^[0-9]+$",
                     "minimum": 0, "maximum": 64 * 1024},
            "OS-FLV-EXT-DATA:ephemeral": {"type": ["integer", "string"],
                                          "pattern": "^[0-9]+$",
                                          "minimum": 0, "maximum": 64 * 1024},
            "swap": {"type": ["integer", "string"], "pattern": "^([0-9]+|)$",
                     "minimum": 0, "maximum": 1024 * 1024},
            "rxtx_factor": {"type": ["number", "string"]},
            # Nova's parameter_types.boolean: JSON booleans and their
            # usual string forms.
            "os-flavor-access:is_public": {"type": ["boolean", "string"], "enum": [
                True, False, "True", "False", "true", "false", "TRUE", "FALSE",
                "1", "0", "yes", "no", "on", "off", "y", "n", "t", "f"]},
            "description": {"type": ["string", "null"], "maxLength": 65535},
        },
        "required": ["name", "ram", "vcpus", "disk"],
        "additionalProperties": False,
    }},
    "required": ["flavor"],
    "additionalProperties": False,
}

_TENANT = {"type": "object", "properties": {"tenant": {
    "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^\\s]+$"}},
    "required": ["tenant"], "additionalProperties": False}

FLAVOR_ACTION = {
    "type": "object",
    "properties": {"addTenantAccess": _TENANT, "removeTenantAccess": _TENANT},
    "minProperties": 1, "maxProperties": 1,
    "additionalProperties": False,
}

SERVER_GROUP_CREATE = {
    "type": "object",
    "properties": {"server_group": {
        "type": "object",
        "properties": {
            "name": NAME,
            "policy": {"type": "string", "enum": ["affinity", "anti-affinity"]},
            "policies": {"type": "array", "minItems": 1, "maxItems": 1,
                         "items": {"type": "string",
                                   "enum": ["affinity", "anti-affinity"]}},
            "rules": {"type": "object", "maxProperties": 0},
        },
        "required": ["name"],
        "additionalProperties": False,
    }},
    "required": ["server_group"],
    "additionalProperties": False,
}

SERVICE_HOST_BINARY = {
    "type": "object",
    "properties": {"host": NAME, "binary": NAME,
                   "disabled_reason": {"type": "string", "minLength": 1,
                                       "maxLength": 255}},
    "required": ["host", "binary"],
    "additionalProperties": False,
}

SERVICE_UPDATE = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["enabled", "disabled"]},
                   "disabled_reason": {"type": "string", "minLength": 1,
                                       "maxLength": 255},
                   "forced_down": {"type": "boolean"}},
    "additionalProperties": False,
    "minProperties": 1,
}

# PUT /os-services/force-down (2.11-2.52).
SERVICE_FORCE_DOWN = {
    "type": "object",
    "properties": {"host": NAME, "binary": NAME, "forced_down": {"type": "boolean"}},
    "required": ["host", "binary", "forced_down"],
    "additionalProperties": False,
}

__all__ = ["SERVER_CREATE", "SERVER_ACTION", "FLAVOR_CREATE", "FLAVOR_ACTION",
           "SERVER_GROUP_CREATE",
           "SERVICE_HOST_BINARY", "SERVICE_UPDATE", "SERVICE_FORCE_DOWN", "POSITIVE", "NON_NEGATIVE"]

"""Request body and query validation.

Rules:

* every body is JSON, read with a size bound (``[api]
  max_request_body_size``; larger is 413 before parsing) and checked
  against a JSON schema (Draft 2020-12) before any handler logic runs, so
  an invalid request never reaches the database or the bus;
* a violation is 400 naming the field (``server.flavorRef``) and the rule
  broken; a value is echoed only cut to 64 characters;
* schemas forbid unknown fields (``additionalProperties: false``) unless
  a schema says otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import falcon
import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

from api import errors

_FORMATS = FormatChecker()
_validators: dict[int, Draft202012Validator] = {}

# Reusable schema parts.
NAME = {"type": "string", "minLength": 1, "maxLength": 255,
        "pattern": r"^(?!\s)[\S ]*(?<!\s)$"}
UUID = {"type": "string", "format": "uuid",
        "pattern": "^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$"}
NON_NEGATIVE = {"type": "integer", "minimum": 0, "maximum": 2 ** 31 - 1}
POSITIVE = {"type": "integer", "minimum": 1, "maximum": 2 ** 31 - 1}
METADATA = {"type": "object", "maxProperties": 128,
            "propertyNames": {"minLength": 1, "maxLength": 255},
            "additionalProperties": {"type": "string", "maxLength": 255}}


def read_json(req: falcon.Request, max_size: int) -> Any:
    """The request's JSON body (None when empty); 413 when too large, 400
    when malformed."""
    length = req.content_length
    if length is not None and length > max_size:
        raise errors.APIError(413, "Request body is larger than %d bytes"
                              % max_size)
    raw = req.bounded_stream.read(max_size + 1)
    if len(raw) > max_size:
        raise errors.APIError(413, "Request body is larger than %d bytes"
                              % max_size)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise errors.bad_request("Malformed request body: not JSON") from None


def validate(body: Any, schema: dict) -> Any:
    """Check ``body`` against ``schema``; APIError 400 naming the field."""
    validator = _validators.get(id(schema))
    if validator is None:
        validator = Draft202012Validator(schema, format_checker=_FORMATS)
        _validators[id(schema)] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        raise errors.bad_request(describe(error))
    return body


def describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "body"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if error.schema.get("patternProperties"):
            import re
            extra = [e for e in extra if not any(
                re.search(p, e) for p in error.schema["patternProperties"])]
        names = ", ".join(_cut(str(e)) for e in extra) or "?"
        return "Invalid input for field/attribute %s. Additional properties " \
               "are not allowed (%s)" % (path, names)
    if error.validator == "required":
        return "Invalid input for field/attribute %s. %s" % (path, error.message)
    value = _cut(json.dumps(error.instance, default=str))
    reason = {
        "maxLength": "longer than %s characters" % error.validator_value,
        "minLength": "shorter than %s characters" % error.validator_value,
        "pattern": "not in the expected form",
        "format": "not a valid %s" % error.validator_value,
        "maximum": "greater than the maximum %s" % error.validator_value,
        "minimum": "less than the minimum %s" % error.validator_value,
    }.get(str(error.validator), error.message if len(error.message) < 200
          else "does not match the schema (%s)" % error.validator)
    return "Invalid input for field/attribute %s. Value: %s. %s" % (
        path, value, reason)


def _cut(text: str, size: int = 64) -> str:
    return text if len(text) <= size else text[:size] + "..."


# --- query strings -----------------------------------------------------------

def query_int(req: falcon.Request, name: str, minimum: int = 0,
              maximum: int | None = None) -> int | None:
    value = req.get_param(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise errors.bad_request("Invalid query parameter %s: %r is not an "
                                 "integer" % (name, _cut(value))) from None
    if number < minimum or (maximum is not None and number > maximum):
        raise errors.bad_request("Invalid query parameter %s: out of range"
                                 % name)
    return number


def query_bool(req: falcon.Request, name: str) -> bool | None:
    """Booleans as clients send them: true/false/1/0/yes/no (any case);
    ``None`` or ``all`` (the literal strings) mean no filter."""
    value = req.get_param(name)
    if value is None or value.lower() in ("none", "all", ""):
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "t", "on"):
        return True
    if lowered in ("false", "0", "no", "f", "off"):
        return False
    raise errors.bad_request("Invalid query parameter %s: %r is not a boolean"
                             % (name, _cut(value)))


def only_query_params(req: falcon.Request, allowed: tuple[str, ...]) -> None:
    """400 naming any query parameter not in ``allowed`` (Nova refuses
    unknown ones from 2.75 on the routes that say so)."""
    extra = sorted(set(req.params) - set(allowed))
    if extra:
        raise errors.bad_request("Invalid input for query parameters %s. Additional "
                                 "properties are not allowed" % ", ".join(
                                     _cut(e) for e in extra))


def check_uuid(value: str, what: str) -> str:
    """``value`` if it is a UUID, else 400 naming ``what``."""
    import uuid
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise errors.bad_request("Invalid %s: %r is not a UUID"
                                 % (what, _cut(str(value)))) from None
    return value

"""Request body and query validation.

Rules:

* every body is JSON, read with a size bound (``[api]
  max_request_body_size``; larger is 413 before parsing) and checked
  against a JSON schema (Draft 2020-12) before any handler logic runs, so
  an invalid request never reaches the database or the bus;
* a violation is 400 naming the field (``server.flavorRef``) and the rule
  broken; a value is echoed only cut to 64 characters;
* schemas forbid unknown fields (``additionalProperties: false``) unless
  a schema says otherwise;
* malformed input is a 400 naming the field, never a 500: JSON nested
  deeper than :data:`MAX_DEPTH`, strings holding NUL or a lone surrogate
  (no database stores them; checked in bodies, query strings and path
  fields alike: :func:`check_text`), numbers sent as strings beyond the
  schema's bounds (``minimum``/``maximum`` apply to integer strings too),
  and a value with a trailing newline where a pattern ends in ``$`` (the
  JSON Schema meaning: end of the string, which Python's ``$`` is not).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import falcon
import jsonschema
from jsonschema import Draft202012Validator, FormatChecker, validators

from api import errors

MAX_DEPTH = 32
_FORMATS = FormatChecker()
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_INTEGER_STRING = re.compile(r"-?[0-9]+")
_DOLLAR = re.compile(r"(?<!\\)\$")


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern:
    # ECMA-262's $ (what JSON Schema means) matches only at the very end.
    return re.compile(_DOLLAR.sub(r"\\Z", pattern))


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield jsonschema.ValidationError("%r does not match %r" % (instance[:64], pattern))


def _as_number(instance):
    """An integer string as its value (huge ones as a bound beyond any
    schema's), anything else unchanged."""
    if isinstance(instance, str) and _INTEGER_STRING.fullmatch(instance):
        digits = instance.lstrip("-").lstrip("0")
        if len(digits) > 18:
            return -(10 ** 19) if instance.startswith("-") else 10 ** 19
        return int(instance)
    return instance


def _bound(keyword):
    base = Draft202012Validator.VALIDATORS[keyword]

    def check(validator, bound, instance, schema):
        yield from base(validator, bound, _as_number(instance), schema)
    return check


#: Draft 2020-12 with the rules of the module docstring.
Validator = validators.extend(Draft202012Validator, {
    "pattern": _pattern,
    "minimum": _bound("minimum"), "maximum": _bound("maximum"),
    "exclusiveMinimum": _bound("exclusiveMinimum"),
    "exclusiveMaximum": _bound("exclusiveMaximum")})
_validators: dict[int, Any] = {}


def check_text(value: str, what: str) -> str:
    """``value`` unless it holds NUL or a lone surrogate: 400 naming ``what``."""
    if _BAD_TEXT.search(value):
        raise errors.bad_request(
            "Invalid input for field/attribute %s: NUL characters and lone "
            "surrogates are not allowed" % _cut(what))
    return value


def check_tree(body: Any) -> Any:
    """400 naming the field when ``body`` nests deeper than MAX_DEPTH or a
    key or string in it fails :func:`check_text` (iterative: no recursion)."""
    stack = [(body, "body", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            check_text(value, path)
            continue
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise errors.bad_request("Invalid input for field/attribute %s: "
                                         "nested deeper than %d levels"
                                         % (_cut(path), MAX_DEPTH))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                name = str(key)
                if isinstance(key, str):
                    check_text(key, "%s key" % path)
                stack.append((child, name if path == "body" else "%s.%s" % (path, name),
                              depth + 1))
    return body


def parse_json(raw: bytes) -> Any:
    """Parse a request body: 400 when it is not JSON or fails check_tree."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise errors.bad_request("Malformed request body: not JSON") from None
    except RecursionError:
        raise errors.bad_request("Malformed request body: nested deeper than "
                                 "%d levels" % MAX_DEPTH) from None
    return check_tree(body)

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
    return parse_json(raw)


def validate(body: Any, schema: dict) -> Any:
    """Check ``body`` against ``schema``; APIError 400 naming the field."""
    validator = _validators.get(id(schema))
    if validator is None:
        validator = Validator(schema, format_checker=_FORMATS)
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


def to_bool(value) -> bool:
    """A JSON boolean or one of its string forms ("True", "false", "1",
    "yes", ...), as Nova's parameter_types.boolean takes them (the schema
    has checked the value is one)."""
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1", "yes", "t", "on", "y")


#: Cinder's parameter_types.boolean spellings (a strict enum: no other case
#: nor spacing, and 1 as a number is not one).
TRUE = (True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
        "y", "t")
FALSE = (False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no",
         "n", "f")


def strict_bool(value) -> bool | None:
    """A JSON boolean or one of Cinder's string spellings (:data:`TRUE`,
    :data:`FALSE`) as a bool; None for anything else (the caller answers
    400 naming its field)."""
    if value is True or isinstance(value, str) and value in TRUE:
        return True
    if value is False or isinstance(value, str) and value in FALSE:
        return False
    return None


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

"""What every image responder shares: the caller, its rights, errors.

Rules:

* the API's auth middleware puts the caller's RequestContext on
  ``req.context.ctxt``; only routes :func:`api.image.routes.allows_anonymous`
  names may run without one (each resource declares them to the API's
  policy table in ``policy_rules``: ``public`` or ``optional``);
* reading needs the reader, member or admin role; writing member or admin;
  changing an image needs owning it (or admin); an image the caller may not
  see is a 404, never a 403, so ids of private images do not leak;
* Flotilla exceptions become HTTP errors with their code and message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import falcon

from api import errors, validation
from flotilla import exception
from flotilla.context import RequestContext
from flotilla.db.models import Image

READ_ROLES = frozenset({"reader", "member", "admin"})
WRITE_ROLES = frozenset({"member", "admin"})
MAX_JSON_BODY = 64 * 1024


def authenticated(req: falcon.Request) -> RequestContext | None:
    """The caller's context, or None for an anonymous request (no context,
    or the API middleware's ``anonymous`` mark on an ``optional`` route:
    its context then names nobody)."""
    if getattr(req.context, "anonymous", False):
        return None
    ctxt = getattr(req.context, "ctxt", None)
    if ctxt is None or (ctxt.user_id is None and ctxt.project_id is None and not ctxt.roles):
        return None
    return ctxt


def caller(req: falcon.Request) -> RequestContext:
    """The authenticated caller, or 401."""
    ctxt = authenticated(req)
    if ctxt is None:
        raise falcon.HTTPUnauthorized(description="Authentication required.")
    return ctxt


def require_read(ctxt: RequestContext) -> None:
    if not READ_ROLES.intersection(ctxt.roles):
        raise falcon.HTTPForbidden(description="A reader, member or admin role is required.")


def require_write(ctxt: RequestContext) -> None:
    if not WRITE_ROLES.intersection(ctxt.roles):
        raise falcon.HTTPForbidden(description="A member or admin role is required.")


def require_owner(ctxt: RequestContext, image: Image) -> None:
    """403 unless ``ctxt`` owns ``image`` (or is admin); call after the
    image was found visible, so a foreign public image is a 403."""
    if not ctxt.is_admin and image.owner != ctxt.project_id:
        raise falcon.HTTPForbidden(
            description="Image %s belongs to another project." % image.id)


def http_error(exc: exception.FlotillaException) -> falcon.HTTPError:
    status = falcon.code_to_http_status(exc.code if 400 <= exc.code < 600 else 500)
    return falcon.HTTPError(status, description=str(exc))


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Raise Flotilla exceptions of the block as HTTP errors."""
    try:
        yield
    except exception.FlotillaException as exc:
        raise http_error(exc) from None


def read_json(req: falcon.Request) -> Any:
    """The JSON body (at most MAX_JSON_BODY bytes: 413 beyond, 400 if it is
    not JSON)."""
    length = req.content_length
    if length is not None and length > MAX_JSON_BODY:
        raise falcon.HTTPPayloadTooLarge(description="The request body is too large.")
    raw = req.bounded_stream.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise falcon.HTTPPayloadTooLarge(description="The request body is too large.")
    try:
        return validation.parse_json(raw or b"null")
    except errors.APIError as exc:
        raise falcon.HTTPBadRequest(description=exc.message) from None


def parse_bool(name: str, value: str) -> bool:
    """Query values arrive as literal strings (``True``, ``false``, ``1``)."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise falcon.HTTPBadRequest(description="%s must be true or false, not %r" % (name, value))

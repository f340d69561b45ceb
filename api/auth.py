"""Authentication and the request context, as Falcon middleware.

Rules:

* every request gets a request id (``X-Openstack-Request-Id`` in the
  response) and a :class:`~flotilla.context.RequestContext` pushed for its
  thread, so every log line of the request carries the id;
* after routing, the route's rule (:mod:`api.policy`) decides: ``public``
  routes skip authentication; otherwise ``X-Auth-Token`` must name a live
  token (401 if missing, unknown, expired or revoked) and the rule is
  enforced (403);
* ``[api] auth_strategy = noauth`` ignores any token (clients send
  ``notused``) and makes every request an admin of project ``noauth`` (or
  of the ``X-Project-Id`` header's project): development only;
* a token is never logged.
"""

from __future__ import annotations

import logging

import falcon

from api import errors, policy, validation
from flotilla import context
from flotilla.db import identity as identity_db

LOG = logging.getLogger(__name__)

NOAUTH_ROLES = ["admin", "member", "reader"]


class ContextMiddleware:
    """Request id and thread context, set before routing; query strings and
    path fields checked for text no database stores (400 naming them)."""

    def process_resource(self, req, resp, resource, params) -> None:
        for name, value in params.items():
            if isinstance(value, str):
                validation.check_text(value, name)
        for name, value in req.params.items():
            validation.check_text(name, "query parameter name")
            for item in value if isinstance(value, list) else [value]:
                validation.check_text(item, "query parameter %s" % name[:64])

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctxt = context.RequestContext()
        req.context.ctxt = ctxt
        req.context.request_id = ctxt.request_id
        ctxt.__enter__()
        resp.set_header("X-Openstack-Request-Id", ctxt.request_id)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        ctxt = req.context.get("ctxt")
        if ctxt is not None and context.current() is ctxt:
            ctxt.__exit__(None, None, None)


# Nova's and Cinder's routers match the method with the path: a method a
# path lacks is no route at all (404). Glance and Keystone answer 405.
_ROUTED_BY_METHOD = ("/compute/", "/volume/")


def _no_such_method(req: falcon.Request, resource) -> Exception:
    """What the service Flotilla stands in for answers a method the path
    does not have (not a policy refusal: nothing is there to allow)."""
    if req.path.startswith(_ROUTED_BY_METHOD):
        return errors.not_found("The resource could not be found.")
    allowed = [m for m in falcon.COMBINED_METHODS if hasattr(resource, "on_" + m.lower())]
    return falcon.HTTPMethodNotAllowed(allowed)


class AuthMiddleware:
    """Authenticates and enforces the route's rule after routing."""

    def __init__(self, conf) -> None:
        self.noauth = conf.api.auth_strategy == "noauth"

    def process_resource(self, req: falcon.Request, resp, resource, params) -> None:
        if resource is None:
            return
        rule = policy.rule_for(req.method, req.uri_template, resource)
        if rule is None:
            # Under Nova's and Cinder's paths every route has its method's
            # rule (tests/functional/api/test_auth_matrix.py), so a
            # responder without one is a class shared by two routes (the
            # detail list's on_post): no such route there either.
            if hasattr(resource, "on_" + req.method.lower()) and \
                    not req.path.startswith(_ROUTED_BY_METHOD):
                LOG.error("No policy rule for %s %s: refused", req.method,
                          req.uri_template)
                raise errors.forbidden("Policy doesn't allow this request.")
            LOG.debug("no route for %s %s: a method the path lacks", req.method,
                      req.uri_template)
            raise _no_such_method(req, resource)
        if rule == policy.PUBLIC:
            return
        token = req.get_header("X-Auth-Token")
        ctxt = req.context.ctxt
        if self.noauth:
            ctxt.user_id = "noauth"
            ctxt.project_id = req.get_header("X-Project-Id") or "noauth"
            ctxt.roles = list(NOAUTH_ROLES)
        elif token:
            try:
                row = identity_db.token_validate(token)
            except identity_db.TokenNotFound:
                raise errors.unauthorized("The request you have made requires "
                                          "authentication.") from None
            ctxt.user_id = row.user_id
            ctxt.project_id = row.project_id
            ctxt.roles = list(row.roles or [])
            req.context.token_row = row
        elif rule == policy.OPTIONAL:
            req.context.anonymous = True
            return
        else:
            raise errors.unauthorized()
        policy.enforce(rule, ctxt, "%s %s" % (req.method, req.uri_template))

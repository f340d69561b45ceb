"""Errors as the OpenStack APIs shape them.

Rules:

* compute (and everything outside /identity): Nova's body
  ``{"<fault name>": {"code": N, "message": "..."}}``, the fault name from
  the status (itemNotFound, badRequest, conflictingRequest, ...); quota
  errors are ``overLimit`` with status 403;
* identity: Keystone's ``{"error": {"code": N, "title": "...", "message":
  "..."}}``;
* an unexpected exception is a 500 whose message names no internals (the
  traceback goes to the log, with the request id the client also gets).
"""

from __future__ import annotations

import logging

import falcon

from flotilla import exception

LOG = logging.getLogger(__name__)

FAULT_NAMES = {
    400: "badRequest", 401: "unauthorized", 403: "forbidden",
    404: "itemNotFound", 405: "badMethod", 406: "notAcceptable",
    409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
    429: "overLimit", 501: "notImplemented", 503: "serviceUnavailable",
}


class APIError(Exception):
    """An HTTP error with a message for the client (and optional fault name
    and extra headers)."""

    def __init__(self, status: int, message: str, fault: str | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fault = fault
        self.headers = headers or {}


def bad_request(message: str) -> APIError:
    return APIError(400, message)


def not_found(message: str) -> APIError:
    return APIError(404, message)


def conflict(message: str) -> APIError:
    return APIError(409, message)


def forbidden(message: str) -> APIError:
    return APIError(403, message)


def unauthorized(message: str = "The request you have made requires "
                                "authentication.") -> APIError:
    return APIError(401, message, headers={
        "WWW-Authenticate": 'Keystone uri="/identity"'})


def _body(req: falcon.Request, status: int, message: str,
          fault: str | None) -> dict:
    if req.path == "/identity" or req.path.startswith("/identity/"):
        title = falcon.code_to_http_status(status).split(" ", 1)[1]
        return {"error": {"code": status, "title": title, "message": message}}
    name = fault or FAULT_NAMES.get(status, "computeFault")
    return {name: {"code": status, "message": message}}


def _respond(req, resp, status: int, message: str, fault: str | None = None,
             headers: dict | None = None) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = _body(req, status, message, fault)
    for key, value in (headers or {}).items():
        resp.set_header(key, value)


def handle_api_error(req, resp, ex: APIError, params) -> None:
    _respond(req, resp, ex.status, ex.message, ex.fault, ex.headers)


def handle_flotilla(req, resp, ex: exception.FlotillaException, params) -> None:
    status = ex.code if 400 <= ex.code < 600 else 500
    if isinstance(ex, exception.OverQuota):
        _respond(req, resp, 403, ex.message, "overLimit")
        return
    if status >= 500:
        LOG.error("%s: %s", type(ex).__name__, ex)
        if isinstance(ex, exception.DBError) and not isinstance(ex, exception.DBNotSynced):
            _respond(req, resp, 503, "The database is unavailable; retry later.")
            return
        if isinstance(ex, exception.MessagingException):
            status = 503
            message = "A service needed by this request is unavailable: %s" % ex
        else:
            message = "The server could not complete the request (%s)." \
                % type(ex).__name__
        _respond(req, resp, status, message)
        return
    _respond(req, resp, status, ex.message)


def handle_http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    status = int(str(ex.status).split(" ", 1)[0]) if not isinstance(
        ex.status, int) else ex.status
    message = ex.description or ex.title or falcon.code_to_http_status(status)
    _respond(req, resp, status, message, headers=dict(ex.headers or {}))


def handle_unexpected(req, resp, ex: Exception, params) -> None:
    if isinstance(ex, falcon.HTTPError):
        handle_http_error(req, resp, ex, params)
        return
    if _database_unreachable(ex):
        # A restarting database is a service outage, not a bug: 503, so
        # clients retry; the request changed nothing it could not finish.
        LOG.error("Database unavailable serving %s %s: %s", req.method, req.path,
                  str(ex).splitlines()[0][:200])
        _respond(req, resp, 503, "The database is unavailable; retry later.")
        return
    LOG.exception("Unexpected error serving %s %s", req.method, req.path)
    _respond(req, resp, 500, "Unexpected API error. Report it with the "
             "request id %s." % resp.get_header("X-Openstack-Request-Id"))


def _database_unreachable(ex: Exception) -> bool:
    import sqlalchemy.exc
    return isinstance(ex, (sqlalchemy.exc.OperationalError,
                           sqlalchemy.exc.InterfaceError)) or (
        isinstance(ex, sqlalchemy.exc.DBAPIError) and ex.connection_invalidated)


def register(app: falcon.App) -> None:
    """Install the handlers (most generic first: Falcon picks the most
    specific class registered)."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(exception.FlotillaException, handle_flotilla)
    app.add_error_handler(APIError, handle_api_error)

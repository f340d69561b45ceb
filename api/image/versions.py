"""The image API's version document (GET /image, no token needed).

keystoneauth reads it to find the v2 endpoint: it keeps the href's path
and swaps in the catalog's host, so the path must carry any prefix the API
is mounted under (``req.prefix`` includes the WSGI script name).
"""

from __future__ import annotations

import falcon
from oslo_config import cfg

CURRENT = "v2.16"
# Glance lists every v2 minor it speaks; the clients pick the CURRENT one.
SUPPORTED = ("v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3",
             "v2.2", "v2.1", "v2.0")


def base_url(conf, req: falcon.Request) -> str:
    """Where clients reach the API: ``[api] public_endpoint`` when the
    API defines and sets it, else the request's own scheme, host and
    prefix."""
    try:
        endpoint = conf.api.public_endpoint
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError):
        endpoint = None
    return (endpoint or req.prefix).rstrip("/")


def versions_document(conf, req: falcon.Request) -> dict:
    href = "%s/image/v2/" % base_url(conf, req)
    links = [{"rel": "self", "href": href}]
    values = [{"id": CURRENT, "status": "CURRENT", "links": links}]
    values += [{"id": v, "status": "SUPPORTED", "links": links} for v in SUPPORTED]
    return {"versions": values}


class Versions:
    """GET /image and /image/v2: the version list."""

    # For the API's policy table: discovery comes before authentication.
    policy_rules = {"GET": "public", "HEAD": "public"}

    def __init__(self, conf) -> None:
        self.conf = conf

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Glance answers its root with 300 Multiple Choices.
        if req.env.get("PATH_INFO", req.path).rstrip("/") == "/image":
            resp.status = falcon.HTTP_300
        resp.media = versions_document(self.conf, req)

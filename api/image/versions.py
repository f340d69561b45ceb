"""The image API's version document (GET /image, no token needed).

keystoneauth reads it to find the v2 endpoint: it keeps the href's path
and swaps in the catalog's host, so the path must carry any prefix the API
is mounted under (``req.prefix`` includes the WSGI script name).
"""

from __future__ import annotations

import falcon

CURRENT = "v2.16"
# Glance lists every v2 minor it speaks; the clients pick the CURRENT one.
SUPPORTED = ("v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3",
             "v2.2", "v2.1", "v2.0")


def versions_document(req: falcon.Request) -> dict:
    href = "%s/image/v2/" % req.prefix
    links = [{"rel": "self", "href": href}]
    values = [{"id": CURRENT, "status": "CURRENT", "links": links}]
    values += [{"id": v, "status": "SUPPORTED", "links": links} for v in SUPPORTED]
    return {"versions": values}


class Versions:
    """GET /image and /image/v2: the version list."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = versions_document(req)
